// Where throttling counters live: in the database every replica shares (the
// default, embedded or PostgreSQL), or in Redis when TESSERA_REDIS_URL is set.
// Either way they are rate-limiter-flexible limiters, so counters are shared
// by all replicas and survive a restart. Keys are always fixed-size hashes.
import type { Logger } from "pino";
import { RateLimiterMemory, RateLimiterPostgres, RateLimiterRedis, type RateLimiterAbstract } from "rate-limiter-flexible";
import type { Database } from "../db/orm.ts";

export const THROTTLE_TABLE = "throttle_counters";

export interface LimiterOptions {
  /** Distinguishes the limiters sharing one store. */
  keyPrefix: string;
  points: number;
  durationSeconds: number;
  /** When set, exceeding `points` blocks the key this long. */
  blockSeconds?: number;
}

/** A counter as read: the two fields of rate-limiter-flexible's RateLimiterRes that Tessera reads. */
export interface CounterState {
  consumedPoints: number;
  /** Milliseconds until the counter (or its block) ends; -1 when it has no expiry. */
  msBeforeNext: number;
}

export interface LimiterStore {
  readonly kind: "database" | "redis";
  create(options: LimiterOptions): RateLimiterAbstract;
  /**
   * The counters of several (limiter, key) pairs, null where a key has none
   * (or it ran out), as each limiter's get() would give them: in one
   * statement on the database, where every get() was a round trip of its own
   * (a password login reads three counters before it hashes anything).
   */
  getMany(reads: readonly (readonly [RateLimiterAbstract, string])[]): Promise<(CounterState | null)[]>;
  close(): Promise<void>;
}

/**
 * rate-limiter-flexible speaks node-postgres (`query({text, values})` with
 * $n placeholders); MikroORM's connection takes `?`. The table itself is
 * created by a migration (ThrottleCounterEntity), never by the library.
 */
function mikroOrmQueryClient(orm: Database) {
  return {
    async query(q: { text: string; values?: unknown[] }): Promise<{ rows: Record<string, unknown>[]; rowCount: number }> {
      const params: unknown[] = [];
      const sql = q.text.replace(/\$(\d+)/g, (_, n: string) => {
        params.push(q.values?.[Number(n) - 1]);
        return "?";
      });
      const connection = orm.em.fork().getConnection();
      if (/^\s*delete\b/i.test(sql)) {
        const result = await connection.execute<{ affectedRows: number }>(sql, params, "run");
        return { rows: [], rowCount: result.affectedRows };
      }
      const rows = await connection.execute<Record<string, unknown>[]>(sql, params, "all");
      // `expire` is a bigint column: drivers return it as a string or a BigInt.
      return { rows: rows.map((row: Record<string, unknown>) => ({ ...row, expire: row.expire == null ? null : Number(row.expire) })), rowCount: rows.length };
    },
  };
}

function options(o: LimiterOptions) {
  return { keyPrefix: o.keyPrefix, points: o.points, duration: o.durationSeconds, blockDuration: o.blockSeconds ?? 0 };
}

export async function openLimiterStore(settings: { redisUrl?: string; orm: Database; log: Logger }): Promise<LimiterStore> {
  if (settings.redisUrl) {
    const { Redis } = await import("ioredis");
    // No offline queue: a command while Redis is away fails at once and the
    // in-memory insurance limiter answers instead of the call hanging.
    const client = new Redis(settings.redisUrl, { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: true });
    client.on("error", (err) => settings.log.warn({ err }, "redis (throttling counters) error"));
    await client.connect();
    return {
      kind: "redis",
      create: (o) => new RateLimiterRedis({ storeClient: client, ...options(o), insuranceLimiter: new RateLimiterMemory(options(o)) }),
      // Concurrent commands on one connection: one round trip's wait, and each limiter keeps its insurance.
      getMany: (reads) => Promise.all(reads.map(([limiter, key]) => limiter.get(key))),
      async close() {
        await client.quit().catch(() => client.disconnect());
      },
    };
  }
  const storeClient = mikroOrmQueryClient(settings.orm);
  // getMany reads this store's table: a limiter made elsewhere would read as "no failures".
  const made = new WeakSet<RateLimiterAbstract>();
  return {
    kind: "database",
    create(o) {
      const limiter = new RateLimiterPostgres({ storeClient, storeType: "pool", tableName: THROTTLE_TABLE, tableCreated: true, ...options(o) });
      made.add(limiter);
      return limiter;
    },
    async getMany(reads) {
      if (reads.length === 0) return [];
      if (!reads.every(([limiter]) => made.has(limiter))) throw new Error("getMany: a limiter this store did not create");
      // The rows RateLimiterPostgres's get() selects (its key is "<keyPrefix>:<key>"), all at once.
      const keys = reads.map(([limiter, key]) => limiter.getKey(key));
      const { rows } = await storeClient.query({
        text: `select key, points, expire from ${THROTTLE_TABLE} where key in (${keys.map((_, i) => `$${i + 1}`).join(", ")}) and (expire > $${keys.length + 1} or expire is null)`,
        values: [...keys, Date.now()],
      });
      const byKey = new Map(rows.map((row) => [String(row.key), row]));
      const now = Date.now();
      return keys.map((key) => {
        const row = byKey.get(key);
        if (!row) return null;
        return { consumedPoints: Number(row.points), msBeforeNext: row.expire == null ? -1 : Math.max(Number(row.expire) - now, 0) };
      });
    },
    async close() {},
  };
}
