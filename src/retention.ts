// Retention: what has no use any more is purged in bounded batches on a
// schedule, by one replica at a time, so that the tables stay bounded however
// long Tessera runs:
//   - sessions that ended (expired or revoked) more than a day ago, with their
//     refresh tokens (the foreign key cascades);
//   - refresh tokens past their expiry (spent ones are kept until then: a
//     spent token presented again is reuse, and revokes its session);
//   - revocation-log entries older than TESSERA_REVOCATION_LOG_RETENTION (at
//     least twice the longest access-token lifetime: a revocation matters only
//     while tokens issued before it live);
//   - single-use proof records (service-assertion and ID-token jtis) once
//     their proofs expired (throttling/replay-store.ts).
// Each batch is one short transaction under a transaction-scoped advisory
// lock that the other replicas try and skip: never two purges at once, and
// none holds locks for long. The embedded database purges the same way.
import type { Logger } from "pino";
import type { Database } from "./db/orm.ts";
import { REPLAY_SWEEP_SQL } from "./throttling/replay-store.ts";

/** Any constant the replicas share ("tessera retention"). */
const RETENTION_LOCK = 7_358_202_613;
/** Ended sessions stay listable (and refused by id) this long. */
export const ENDED_SESSION_KEEP_MS = 24 * 3600 * 1000;
/** At most this many batches per table in one run: a backlog is worked off over several runs. */
const MAX_BATCHES = 50;

export interface RetentionOptions {
  intervalMs: number;
  batch: number;
  revocationLogRetentionSeconds: number;
  log: Logger;
}

export interface RetentionRun {
  sessions: number;
  refreshTokens: number;
  revocationEvents: number;
  replayRecords: number;
  /** Another replica held the lock: this run purged nothing. */
  skipped: boolean;
}

const PURGES = {
  sessions: `delete from sessions where id in (
      (select id from sessions where expires_at < ? limit ?)
      union all
      (select id from sessions where revoked_at < ? limit ?))`,
  refreshTokens: `delete from refresh_tokens where hash in (select hash from refresh_tokens where expires_at < ? limit ?)`,
  revocationEvents: `delete from revocation_events where id in (select id from revocation_events where created_at < ? order by id limit ?)`,
  replayRecords: REPLAY_SWEEP_SQL,
};

export class Retention {
  readonly #orm: Database;
  readonly #options: RetentionOptions;
  #timer?: NodeJS.Timeout;
  #running?: Promise<RetentionRun>;

  constructor(orm: Database, options: RetentionOptions) {
    this.#orm = orm;
    this.#options = options;
  }

  start(): void {
    this.#timer = setInterval(() => {
      this.#running ??= this.run()
        .catch((err: unknown) => {
          this.#options.log.warn({ err }, "retention run failed; retrying at the next interval");
          return undefined as never;
        })
        .finally(() => (this.#running = undefined));
    }, this.#options.intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#running?.catch(() => undefined);
  }

  /** One purge of everything due, in batches; returns what it deleted. */
  async run(now = new Date()): Promise<RetentionRun> {
    const { batch, revocationLogRetentionSeconds } = this.#options;
    const endedBefore = new Date(now.getTime() - ENDED_SESSION_KEEP_MS);
    const eventsBefore = new Date(now.getTime() - revocationLogRetentionSeconds * 1000);
    const result: RetentionRun = { sessions: 0, refreshTokens: 0, revocationEvents: 0, replayRecords: 0, skipped: false };
    const purge = async (key: keyof typeof PURGES, params: unknown[]): Promise<void> => {
      for (let i = 0; i < MAX_BATCHES; i++) {
        const deleted = await this.#batch(PURGES[key], params);
        if (deleted === undefined) {
          result.skipped = true;
          return;
        }
        result[key] += deleted;
        if (deleted < batch) return;
      }
    };
    await purge("sessions", [endedBefore, batch, endedBefore, batch]);
    if (!result.skipped) await purge("refreshTokens", [now, batch]);
    if (!result.skipped) await purge("revocationEvents", [eventsBefore, batch]);
    if (!result.skipped) await purge("replayRecords", [batch]);
    const total = result.sessions + result.refreshTokens + result.revocationEvents + result.replayRecords;
    if (total > 0) this.#options.log.info({ ...result }, "retention purged expired rows");
    return result;
  }

  /** One delete in its own transaction under the lock; undefined when another replica holds it. */
  async #batch(sql: string, params: unknown[]): Promise<number | undefined> {
    return this.#orm.em.fork().transactional(async (em) => {
      const connection = em.getConnection();
      const [lock] = await connection.execute<{ locked: boolean }[]>("select pg_try_advisory_xact_lock(?) as locked", [RETENTION_LOCK], "all", em.getTransactionContext());
      if (!lock?.locked) return undefined;
      const res = await connection.execute<{ affectedRows?: number }>(sql, params, "run", em.getTransactionContext());
      return res.affectedRows ?? 0;
    });
  }
}
