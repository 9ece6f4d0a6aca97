// GET /registry.json: the signed registry document (HTTPS registry and
// local-store format), with an ETag and a short Cache-Control so that a
// revocation reaches outside verifiers within max-age.
import type { EntityManager } from "@mikro-orm/core";
import type { HttpRoute } from "../http/server.ts";
import type { RegistryService } from "./registry.service.ts";

export function registryDocumentRoute(registry: RegistryService, em: () => EntityManager): HttpRoute {
  return async (req, res) => {
    const built = await registry.document(em());
    const headers = {
      etag: built.etag,
      "cache-control": `public, max-age=${registry.maxAgeSeconds}`,
      "content-type": "application/json",
    };
    if (req.headers["if-none-match"] === built.etag) {
      res.writeHead(304, headers);
      res.end();
      return;
    }
    res.writeHead(200, { ...headers, "content-length": Buffer.byteLength(built.body) });
    res.end(req.method === "HEAD" ? undefined : built.body);
  };
}
