// A call's deadline bounds its database work. Each RPC handler runs inside
// `withCallSignal` (grpc/server.ts); a PostgreSQL query started on its behalf
// is cancelled on the server (PostgreSQL's CancelRequest, as psql's Ctrl-C)
// when the call's signal aborts: its deadline passed or the client went away.
// A cancelled statement fails its transaction, which rolls back: an abandoned
// call changes nothing and holds no connection or lock beyond its deadline.
// With tracing on, each query is also a span of the call's trace.
// Work outside any call (migrations, the feed, sweeps) is bounded by the
// pool's statement_timeout instead (TESSERA_DATABASE_STATEMENT_TIMEOUT).
//
// The embedded database (PGlite) runs in this process, one statement at a
// time, and cannot be interrupted; there only the statement timeout applies.
import { AsyncLocalStorage } from "node:async_hooks";
import pg from "pg";
import { startChildSpan } from "../observability/tracing.ts";

const callSignal = new AsyncLocalStorage<AbortSignal>();

/** Runs `fn` (an RPC handler) so that the queries it starts end when `signal` aborts. */
export function withCallSignal<T>(signal: AbortSignal, fn: () => T): T {
  return callSignal.run(signal, fn);
}

/** The signal of the RPC whose handler is running (undefined outside any call). */
export function currentCallSignal(): AbortSignal | undefined {
  return callSignal.getStore();
}

type Queryable = { then?: unknown };

/** node-pg's Client internals this file relies on (pg 8: lib/client.js). */
interface ClientInternals {
  _queryQueue: unknown[];
  _getActiveQuery(): unknown;
  processID: number | null;
  secretKey: number | null;
  connectionParameters: { host: string; port: number };
}

/**
 * node-pg's Client with queries bound to the calling RPC's signal; the pool
 * builds its connections from it (`Client` in the pool options).
 */
export class DeadlineClient extends pg.Client {
  override query(...args: unknown[]): never {
    // Only promise-returning queries (the ORM's, through kysely) are traced and bound to the call:
    // they are issued in the calling RPC's own async context. Callback forms (pg-pool's
    // pool.query, whose callback may run in whichever call released the connection) and
    // cursors pass through untouched.
    const query = super.query as (...a: unknown[]) => unknown;
    const submittable = typeof (args[0] as { submit?: unknown })?.submit === "function";
    if (submittable || typeof args.at(-1) === "function") return query.apply(this, args) as never;
    const operation = operationOf(args[0]);
    const span = startChildSpan(`${operation} postgresql`, { "db.system.name": "postgresql", "db.operation.name": operation });
    const result = query.apply(this, args) as Queryable;
    if (span && result && typeof result.then === "function") (result as unknown as Promise<unknown>).then(() => span.end(), (error: unknown) => span.end(error));
    else span?.end();
    const signal = callSignal.getStore();
    if (!signal || !result || typeof result.then !== "function") return result as never;
    const self = this as unknown as ClientInternals;
    // Ours is queued last, or already running.
    const ours = self._queryQueue.at(-1) ?? self._getActiveQuery();
    // (One still queued behind another query of the same call runs; the statement timeout bounds it.)
    const cancel = () => {
      if (self._getActiveQuery() === ours) sendCancel(self);
    };
    if (signal.aborted) {
      cancel();
      return result as never;
    }
    signal.addEventListener("abort", cancel, { once: true });
    // Registered before the caller's own reaction: the listener is gone before the
    // connection can go back to the pool and serve another call.
    const done = () => signal.removeEventListener("abort", cancel);
    (result as unknown as Promise<unknown>).then(done, done);
    return result as never;
  }
}

/** The statement's first keyword (SELECT, INSERT, WITH ...), for span names: never its text or values. */
function operationOf(query: unknown): string {
  const text = typeof query === "string" ? query : ((query as { text?: unknown })?.text ?? "");
  return /^\s*([A-Za-z]+)/.exec(String(text))?.[1]?.toUpperCase() ?? "QUERY";
}

/** PostgreSQL's CancelRequest for what `client`'s backend is running, on a connection of its own. */
function sendCancel(client: ClientInternals): void {
  if (client.processID === null || client.secretKey === null) return;
  const { host, port } = client.connectionParameters;
  const connection = (new pg.Client({ host, port }) as unknown as { connection: CancelConnection }).connection;
  // The server closes the cancel connection; its errors are not the call's.
  connection.on("error", () => undefined);
  connection.on("connect", () => connection.cancel(client.processID!, client.secretKey!));
  if (host.startsWith("/")) connection.connect(`${host}/.s.PGSQL.${port}`);
  else connection.connect(port, host);
}

interface CancelConnection {
  on(event: string, listener: () => void): void;
  connect(portOrPath: number | string, host?: string): void;
  cancel(processID: number, secretKey: number): void;
}
