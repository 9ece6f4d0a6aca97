// GET /healthz: 200 while the database answers, 503 (so that a load balancer
// takes the replica out) while it does not.
import type { Logger } from "pino";
import type { Database } from "../db/orm.ts";
import { json, type HttpRoute } from "./server.ts";

export function healthRoute(orm: Database, log: Logger): HttpRoute {
  return async (_req, res) => {
    try {
      await orm.em.fork().getConnection().execute("select 1");
    } catch (error) {
      log.warn({ err: error }, "health check: database unavailable");
      return json(res, 503, { status: "NOT_SERVING", reason: "DATABASE_UNAVAILABLE" }, { "retry-after": "1", "cache-control": "no-store" });
    }
    json(res, 200, { status: "SERVING" }, { "cache-control": "no-store" });
  };
}
