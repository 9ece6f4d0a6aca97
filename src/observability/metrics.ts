// Prometheus metrics (prom-client), one registry per server: per-RPC counts,
// latencies and status codes (nice-grpc-prometheus, with its metric names),
// what the identity flows do (tokens issued, login failures and throttles,
// refresh outcomes), the revocation feed's lag, the database pool and the
// process (event-loop lag, memory: prom-client's default metrics).
//
// Label sets are bounded: methods, codes, credential kinds and reasons are
// the contract's own; tenants are named for the first `maxTenantLabels`
// tenants seen and counted as "_other" after that, so a tenant signup flood
// cannot grow the exposition without bound.
import { labelNames, labelNamesWithCode, prometheusServerMiddleware } from "nice-grpc-prometheus";
import type { ServerMiddleware } from "nice-grpc-common";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";

/** 1 ms … ~16 s: identity calls are short; a slow one is the interesting one. */
const RPC_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 16];

export type RefreshOutcome = "rotated" | "grace" | "reuse_detected" | "refused";

/** What the pool of PostgreSQL connections reports (node-pg's Pool). */
export interface PoolStats {
  totalCount: number;
  idleCount: number;
  waitingCount: number;
}

export interface MetricsOptions {
  /** Distinct tenant label values before further tenants are counted as "_other". */
  maxTenantLabels: number;
}

export class TesseraMetrics {
  readonly registry = new Registry();
  readonly #tenants = new Set<string>();
  readonly #maxTenants: number;
  readonly #issued: Counter<"tenant" | "credential">;
  readonly #loginFailures: Counter<"credential" | "reason">;
  readonly #throttled: Counter<"credential">;
  readonly #refresh: Counter<"outcome">;
  readonly #delivery: Histogram;
  #collect: () => Promise<string> = () => this.registry.metrics();

  constructor(options: MetricsOptions) {
    this.#maxTenants = options.maxTenantLabels;
    const registers = [this.registry];
    this.#issued = new Counter({
      name: "tessera_tokens_issued_total",
      help: "Access tokens issued, by tenant (the first tenants seen; the rest as _other) and credential kind (password, minecraft, oidc, service_assertion, refresh).",
      labelNames: ["tenant", "credential"],
      registers,
    });
    this.#loginFailures = new Counter({
      name: "tessera_login_failures_total",
      help: "IssueToken calls refused, by credential kind and the ErrorInfo reason (INVALID_CREDENTIALS, USER_DISABLED, ...).",
      labelNames: ["credential", "reason"],
      registers,
    });
    this.#throttled = new Counter({
      name: "tessera_login_throttled_total",
      help: "IssueToken calls refused by the failed-login throttle or the password-hash queue (RESOURCE_EXHAUSTED), by credential kind.",
      labelNames: ["credential"],
      registers,
    });
    this.#refresh = new Counter({
      name: "tessera_refresh_total",
      help: "Refresh presentations by outcome: rotated (a new successor), grace (the same successor again within TESSERA_REFRESH_GRACE), reuse_detected (the session revoked), refused (invalid, expired, revoked session, disabled user or tenant).",
      labelNames: ["outcome"],
      registers,
    });
    this.#delivery = new Histogram({
      name: "tessera_revocation_delivery_seconds",
      help: "From a revocation's commit (its created_at, on whichever replica) to this process applying it to its verification cache.",
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60],
      registers,
    });
  }

  /** The RPC metrics (grpc_server_started_total, _handled_total, _handling_seconds, ...); first in the chain. */
  grpcMiddleware(): ServerMiddleware {
    const registers = [this.registry];
    return prometheusServerMiddleware({
      serverStartedMetric: new Counter({ name: "grpc_server_started_total", help: "Total number of RPCs started on the server.", labelNames, registers }),
      serverHandledMetric: new Counter({
        name: "grpc_server_handled_total",
        help: "Total number of RPCs completed on the server, regardless of success or failure.",
        labelNames: labelNamesWithCode,
        registers,
      }),
      serverStreamMsgReceivedMetric: new Counter({ name: "grpc_server_msg_received_total", help: "Total number of RPC stream messages received by the server.", labelNames, registers }),
      serverStreamMsgSentMetric: new Counter({ name: "grpc_server_msg_sent_total", help: "Total number of gRPC stream messages sent by the server.", labelNames, registers }),
      serverHandlingSecondsMetric: new Histogram({
        name: "grpc_server_handling_seconds",
        help: "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
        labelNames: labelNamesWithCode,
        buckets: RPC_BUCKETS,
        registers,
      }),
    }) as ServerMiddleware;
  }

  tokenIssued(tenant: string, credential: string): void {
    this.#issued.inc({ tenant: this.#tenantLabel(tenant), credential });
  }

  loginRefused(credential: string, reason: string, throttled: boolean): void {
    if (throttled) this.#throttled.inc({ credential });
    else this.#loginFailures.inc({ credential, reason });
  }

  refresh(outcome: RefreshOutcome): void {
    this.#refresh.inc({ outcome });
  }

  revocationDelivered(createdAt: Date, now = Date.now()): void {
    this.#delivery.observe(Math.max(0, now - createdAt.getTime()) / 1000);
  }

  /** How long ago this process last read the revocation log successfully. */
  watchFeed(lastPollOkAt: () => number): void {
    new Gauge({
      name: "tessera_revocation_feed_staleness_seconds",
      help: "Seconds since this process last read the revocation log successfully (VerifyToken fails closed past TESSERA_REVOCATION_STALE_LIMIT on PostgreSQL).",
      registers: [this.registry],
      collect() {
        this.set(Math.max(0, Date.now() - lastPollOkAt()) / 1000);
      },
    });
  }

  /** The PostgreSQL connection pool (absent with the embedded database). */
  watchPool(stats: () => Promise<PoolStats | undefined>): void {
    const registers = [this.registry];
    let last: Promise<PoolStats | undefined> | undefined;
    // One read of the pool per scrape, shared by the three gauges.
    const read = () => (last ??= stats().finally(() => setImmediate(() => (last = undefined))));
    const gauge = (name: string, help: string, pick: (s: PoolStats) => number) =>
      new Gauge({
        name,
        help,
        registers,
        async collect() {
          const s = await read().catch(() => undefined);
          if (s) this.set(pick(s));
        },
      });
    gauge("tessera_db_pool_connections", "Open connections of the PostgreSQL pool.", (s) => s.totalCount);
    gauge("tessera_db_pool_idle_connections", "Idle connections of the PostgreSQL pool.", (s) => s.idleCount);
    gauge("tessera_db_pool_waiting_requests", "Queries waiting for a connection of the PostgreSQL pool.", (s) => s.waitingCount);
  }

  /** Process metrics: event-loop lag, heap, RSS, GC, handles (prom-client's defaults, prefixed as usual). */
  collectProcessMetrics(): void {
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 20 });
  }

  /**
   * /metrics answers with `collect()` instead of this registry alone: a worker
   * of TESSERA_WORKERS gives every worker's series, labelled by worker (cluster.ts).
   */
  exposeThrough(collect: () => Promise<string>): void {
    this.#collect = collect;
  }

  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.#collect() };
  }

  close(): void {
    this.registry.clear();
  }

  #tenantLabel(tenant: string): string {
    if (this.#tenants.has(tenant)) return tenant;
    if (this.#tenants.size >= this.#maxTenants) return "_other";
    this.#tenants.add(tenant);
    return tenant;
  }
}
