// The HTTP side: JWKS, health, and (later) the registry document, Gate-Keeper and metrics.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Logger } from "pino";

export type HttpRoute = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void> | void;

export function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(payload), ...headers });
  res.end(payload);
}

export function buildHttpServer(routes: Record<string, HttpRoute>, log: Logger): Server {
  return createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    const route = routes[url.pathname];
    if (!route) return json(res, 404, { error: "not found" });
    if (req.method !== "GET" && req.method !== "HEAD") return json(res, 405, { error: "method not allowed" }, { allow: "GET, HEAD" });
    try {
      await route(req, res, url);
    } catch (error) {
      log.error({ err: error, path: url.pathname }, "http route failed");
      if (!res.headersSent) json(res, 500, { error: "internal error" });
      else res.destroy();
    }
  });
}
