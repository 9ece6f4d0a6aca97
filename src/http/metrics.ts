// GET /metrics: the Prometheus exposition (observability/metrics.ts), for
// scrapers at the addresses of TESSERA_METRICS_ALLOW (loopback and private
// ranges by default): the HTTP port also serves the public JWKS, and metric
// labels name tenants. Anyone else gets the same 404 as an unknown path.
import type { BlockList } from "node:net";
import { isIPv4 } from "node:net";
import type { Database } from "../db/orm.ts";
import type { PoolStats, TesseraMetrics } from "../observability/metrics.ts";
import { json, type HttpRoute } from "./server.ts";

export function metricsRoute(metrics: TesseraMetrics, allow: BlockList): HttpRoute {
  return async (req, res) => {
    const address = (req.socket.remoteAddress ?? "").replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, "");
    if (!address || !allow.check(address, isIPv4(address) ? "ipv4" : "ipv6")) return json(res, 404, { error: "not found" });
    const { contentType, body } = await metrics.exposition();
    res.writeHead(200, { "content-type": contentType, "content-length": Buffer.byteLength(body), "cache-control": "no-store" });
    res.end(req.method === "HEAD" ? undefined : body);
  };
}

/** node-pg's pool counts (MikroORM's PostgreSqlConnection.getNativeClient). */
export async function poolStats(orm: Database): Promise<PoolStats | undefined> {
  const connection = orm.em.getConnection() as unknown as { getNativeClient?: () => Promise<unknown> };
  const pool = (await connection.getNativeClient?.()) as Partial<PoolStats> | undefined;
  if (!pool || typeof pool.totalCount !== "number") return undefined;
  return { totalCount: pool.totalCount, idleCount: pool.idleCount ?? 0, waitingCount: pool.waitingCount ?? 0 };
}
