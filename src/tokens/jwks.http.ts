// GET /.well-known/jwks.json: the published signing keys, for verifiers that
// speak HTTP. Cacheable for a minute (the SDK's TokenVerifier refetches as often).
import { json, type HttpRoute } from "../http/server.ts";
import type { KeyStore } from "./keys.ts";

export function jwksRoute(keys: KeyStore): HttpRoute {
  return (_req, res) => json(res, 200, { keys: keys.jwks() }, { "cache-control": "public, max-age=60" });
}
