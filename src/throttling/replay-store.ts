// Single-use proofs (service assertions' jti, OpenID Connect ID tokens),
// recorded in the database so that every replica refuses a replay. Concurrent verifications share one INSERT … ON
// CONFLICT DO NOTHING RETURNING (a group commit): one round trip for a burst
// of assertions instead of one each. Within a batch the first holder of a key
// wins; expired rows are deleted in bounded batches by the sweeper.
import { hash } from "node:crypto";
import type { Database } from "../db/orm.ts";

interface Pending {
  key: string;
  expiresAt: Date;
  resolve: (fresh: boolean) => void;
  reject: (error: unknown) => void;
}

const MAX_BATCH = 500;
const MAX_RECORD_MS = 86_400_000;

export class ReplayStore {
  readonly #orm: Database;
  #pending: Pending[] = [];
  #scheduled = false;

  constructor(orm: Database) {
    this.#orm = orm;
  }

  /** Records `kind` + `parts` until `expiresAt`; false when it is already recorded (a replay). */
  remember(kind: string, parts: readonly string[], expiresAt: Date): Promise<boolean> {
    const key = hash("sha256", [kind, ...parts].join("\u0000"), "hex");
    // Every proof remembered here lives minutes: a date that is not one, or days away, is the caller's bug
    // (or an attacker's token), refused for that caller alone rather than failing a whole batch.
    const at = expiresAt.getTime();
    if (!Number.isFinite(at) || at > Date.now() + MAX_RECORD_MS) return Promise.reject(new Error("a single-use record must expire within a day"));
    return new Promise((resolve, reject) => {
      this.#pending.push({ key, expiresAt, resolve, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  #flush(): void {
    this.#scheduled = false;
    while (this.#pending.length) {
      const batch = this.#pending.splice(0, MAX_BATCH);
      void this.#insert(batch);
    }
  }

  async #insert(batch: Pending[]): Promise<void> {
    const first = new Map<string, Pending>();
    const duplicates: Pending[] = [];
    for (const p of batch) {
      if (first.has(p.key)) duplicates.push(p);
      else first.set(p.key, p);
    }
    for (const p of duplicates) p.resolve(false);
    const rows = [...first.values()];
    try {
      const values = rows.map(() => "(?, ?)").join(", ");
      const params = rows.flatMap((p) => [p.key, p.expiresAt]);
      const inserted = await this.#orm.em.getConnection().execute<{ key: string }[]>(
        `insert into replay_records (key, expires_at) values ${values} on conflict (key) do nothing returning key`,
        params,
        "all",
      );
      const fresh = new Set(inserted.map((r: { key: string }) => r.key));
      for (const p of rows) p.resolve(fresh.has(p.key));
    } catch (error) {
      // One bad row must not fail the others: a failed batch is tried again a row at a time.
      if (rows.length === 1) {
        rows[0]!.reject(error);
        return;
      }
      for (const p of rows) void this.#insert([p]);
    }
  }

  /** Deletes expired records, a bounded batch at a time; returns how many. */
  async sweep(limit = 10_000): Promise<number> {
    const result = await this.#orm.em.getConnection().execute<{ affectedRows?: number }>(REPLAY_SWEEP_SQL, [limit], "run");
    return result.affectedRows ?? 0;
  }
}

/**
 * Deletes up to `?` expired records. By the database's clock, a minute behind:
 * a replica whose clock runs ahead must not open a replay window. (Retention
 * runs it on its schedule, retention.ts.)
 */
export const REPLAY_SWEEP_SQL = "delete from replay_records where key in (select key from replay_records where expires_at < now() - interval '1 minute' limit ?)";
