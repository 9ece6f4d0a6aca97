// The revocation feed. Revocations are appended to the revocation_events table
// in the transaction that makes them; one poller per process follows the table
// (so every replica sharing the database sees every event within a poll
// interval), invalidates the local verification cache and feeds
// WatchRevocations streams.
import { EventEmitter, on } from "node:events";
import type { EntityManager } from "@mikro-orm/core";
import type { Logger } from "pino";
import type { Database } from "../db/orm.ts";
import { RevocationEventEntity, type RevocationEvent } from "./token.entity.ts";

export type RevocationKind =
  | "SESSION_REVOKED"
  | "USER_REVOKED"
  | "TENANT_REVOKED"
  | "KEY_ADDED"
  | "KEY_RETIRED"
  | "GRANTS_CHANGED";

export interface RevocationRecord {
  kind: RevocationKind;
  tenantId?: string;
  userId?: string;
  sessionId?: string;
  keyId?: string;
}

let recordedLocally = 0;
/** How many revocations this process has recorded; a change means a poll is due. */
export function localRevocationCount(): number {
  return recordedLocally;
}

export function recordRevocation(em: EntityManager, record: RevocationRecord): void {
  recordedLocally++;
  em.create(RevocationEventEntity, {
    kind: record.kind,
    tenantId: record.tenantId ?? null,
    userId: record.userId ?? null,
    sessionId: record.sessionId ?? null,
    keyId: record.keyId ?? null,
  } as never);
}

export class RevocationFeed {
  readonly #orm: Database;
  readonly #log: Logger;
  readonly #events = new EventEmitter();
  readonly #listeners: ((event: RevocationEvent) => void)[] = [];
  #lastId = 0;
  #timer?: NodeJS.Timeout;
  #polling?: Promise<void>;

  constructor(orm: Database, log: Logger) {
    this.#orm = orm;
    this.#log = log;
    this.#events.setMaxListeners(0);
  }

  /** Called for every event seen, local or from another replica. */
  onEvent(listener: (event: RevocationEvent) => void): void {
    this.#listeners.push(listener);
  }

  async start(intervalMs = 500): Promise<void> {
    const latest = await this.#orm.em.fork().findOne(RevocationEventEntity, { id: { $gt: 0 } }, { orderBy: { id: "desc" } });
    this.#lastId = latest?.id ?? 0;
    this.#timer = setInterval(() => void this.poll(), intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#polling;
    this.#events.emit("close");
  }

  /**
   * Fetches new events now (also right after a local commit, so that this
   * process never answers from a cache the commit made stale). A poll that is
   * already running may have missed the caller's commit, so another one is
   * chained after it.
   */
  poll(): Promise<void> {
    const next = (this.#polling ?? Promise.resolve()).then(() => this.#pollOnce());
    const tracked: Promise<void> = next.finally(() => {
      if (this.#polling === tracked) this.#polling = undefined;
    });
    this.#polling = tracked;
    return tracked;
  }

  async #pollOnce(): Promise<void> {
    try {
      for (;;) {
        const rows = await this.#orm.em.fork().find(RevocationEventEntity, { id: { $gt: this.#lastId } }, { orderBy: { id: "asc" }, limit: 500 });
        for (const row of rows) {
          this.#lastId = row.id;
          for (const listener of this.#listeners) listener(row);
          this.#events.emit("event", row);
        }
        if (rows.length < 500) return;
      }
    } catch (error) {
      this.#log.warn({ err: error }, "revocation feed poll failed; retrying");
    }
  }

  /** Events after `cursor` from the log, then live ones, until `signal` aborts. */
  async *watch(cursor: number, signal: AbortSignal): AsyncGenerator<RevocationEvent> {
    const live = on(this.#events, "event", { signal, close: ["close"] });
    let last = cursor;
    for (;;) {
      const rows = await this.#orm.em.fork().find(RevocationEventEntity, { id: { $gt: last } }, { orderBy: { id: "asc" }, limit: 500 });
      for (const row of rows) {
        last = row.id;
        yield row;
      }
      if (rows.length < 500) break;
    }
    try {
      for await (const [row] of live as AsyncIterable<[RevocationEvent]>) {
        if (row.id <= last) continue;
        last = row.id;
        yield row;
      }
    } catch (error) {
      if ((error as { name?: string }).name !== "AbortError") throw error;
    }
  }
}
