// The revocation feed. Revocations are appended to the revocation_events table
// in the transaction that makes them; one poller per process follows the table
// (right after a local commit, on a NOTIFY from another replica's commit, and
// every poll interval as the fallback), invalidates the local verification
// cache and feeds WatchRevocations streams.
import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import type { Database } from "../db/orm.ts";
import { RevocationEventEntity, type RevocationEvent } from "./revocation-event.entity.ts";

/**
 * How long an id below the newest event may stay invisible before it is taken
 * for a rolled-back insert. Ids come from a sequence when a transaction inserts,
 * but transactions commit in any order: a revocation can become visible after
 * a later id has already been read. Such ids are tracked as gaps and delivered
 * when they appear instead of being skipped. Revocation transactions are short.
 */
export const GAP_WAIT_MS = 15_000;
const MAX_GAPS = 10_000;
/** Live events a WatchRevocations subscriber may have unread before it is switched to catching up from the log. */
const MAX_QUEUED_PER_SUBSCRIBER = 1000;
const PAGE = 500;

export class RevocationFeed {
  readonly #orm: Database;
  readonly #log: Logger;
  readonly #gapWaitMs: number;
  /** Settled events, emitted in id order (WatchRevocations). */
  readonly #settled = new EventEmitter();
  readonly #listeners: ((event: RevocationEvent) => void)[] = [];
  /** Every id up to the watermark has been delivered or has expired as a gap. */
  #watermark = 0;
  /** The highest id delivered. */
  #maxSeen = 0;
  /** Delivered events above the watermark, waiting for lower ids to settle. */
  readonly #pending = new Map<number, RevocationEvent>();
  /** Ids below maxSeen not visible yet, with when they were first noticed. */
  readonly #gaps = new Map<number, number>();
  #timer?: NodeJS.Timeout;
  /** The poll reading the log now, and the one that starts after it (callers that arrive meanwhile share it). */
  #running?: Promise<boolean>;
  #queued?: Promise<boolean>;

  constructor(orm: Database, log: Logger, options: { gapWaitMs?: number } = {}) {
    this.#orm = orm;
    this.#log = log;
    this.#gapWaitMs = options.gapWaitMs ?? GAP_WAIT_MS;
    this.#settled.setMaxListeners(0);
  }

  /** Called once for every event as soon as it is seen, local or from another replica, in any order. */
  onEvent(listener: (event: RevocationEvent) => void): void {
    this.#listeners.push(listener);
  }

  /** Every event with an id up to this one has been delivered (or was never committed). */
  get watermark(): number {
    return this.#watermark;
  }

  async start(intervalMs = 500): Promise<void> {
    // Start below the events of the last gap-wait period: one of them might
    // still be committing. Re-reading recent events only invalidates an empty cache.
    const em = this.#orm.em.fork();
    const settled = await em.findOne(
      RevocationEventEntity,
      { createdAt: { $lt: new Date(Date.now() - this.#gapWaitMs) } },
      { orderBy: { id: "desc" }, fields: ["id"] },
    );
    this.#watermark = this.#maxSeen = settled?.id ?? 0;
    await this.#pollOnce();
    this.#timer = setInterval(() => void this.poll(), intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#queued;
    await this.#running;
    this.#settled.emit("close");
  }

  /**
   * Fetches new events now (also right after a local commit, so that this
   * process never answers from a cache the commit made stale). A poll that is
   * already running may have missed the caller's commit, so one more is
   * queued after it; callers that arrive while that one waits join it (it
   * starts after their commits too), so at most two polls are ever pending
   * however many revoking calls arrive at once. Resolves false when the log
   * could not be read: a caller that knows of a revocation this process has
   * not applied then calls distrust().
   */
  poll(): Promise<boolean> {
    if (this.#queued) return this.#queued;
    const running = this.#running;
    if (!running) return this.#start();
    const queued = running.then(() => {
      this.#queued = undefined;
      return this.#start();
    });
    this.#queued = queued;
    return queued;
  }

  #start(): Promise<boolean> {
    const run: Promise<boolean> = this.#pollOnce().finally(() => {
      if (this.#running === run) this.#running = undefined;
    });
    this.#running = run;
    return run;
  }

  /**
   * A revocation committed (here, or announced by NOTIFY) could not be read
   * back: until a poll succeeds, which will deliver it, no cached session
   * state is trusted (verifications read the database, and fail UNAVAILABLE
   * while it is gone) instead of answering from a cache that may predate it
   * for up to the stale limit.
   */
  distrust(): void {
    this.#lastPollOkAt = 0;
  }

  /** When a poll of the log last succeeded (ms): how current this process's view of revocations is. */
  get lastPollOkAt(): number {
    return this.#lastPollOkAt;
  }

  #lastPollOkAt = Date.now();

  async #pollOnce(): Promise<boolean> {
    try {
      for (;;) {
        const gaps = [...this.#gaps.keys()];
        const newer = { id: { $gt: this.#maxSeen } };
        const rows = await this.#orm.em
          .fork()
          .find(RevocationEventEntity, gaps.length ? { $or: [newer, { id: { $in: gaps } }] } : newer, { orderBy: { id: "asc" }, limit: PAGE });
        const now = Date.now();
        for (const row of rows) this.#deliver(row, now);
        this.#settle(now);
        if (rows.length < PAGE) {
          this.#lastPollOkAt = now;
          return true;
        }
      }
    } catch (error) {
      this.#log.warn({ err: error }, "revocation feed poll failed; retrying");
      return false;
    }
  }

  #deliver(row: RevocationEvent, now: number): void {
    if (row.id <= this.#watermark || this.#pending.has(row.id)) return;
    if (row.id > this.#maxSeen) {
      if (row.id - this.#maxSeen - 1 > MAX_GAPS) {
        this.#log.warn({ from: this.#maxSeen + 1, to: row.id - 1 }, "revocation ids skipped by the sequence; not waiting for them");
        // Give up on every gap below the jump: stream what is pending, in order.
        for (const id of [...this.#pending.keys()].sort((a, b) => a - b)) this.#settled.emit("event", this.#pending.get(id));
        this.#pending.clear();
        this.#gaps.clear();
        this.#watermark = row.id - 1;
      } else {
        for (let id = this.#maxSeen + 1; id < row.id; id++) this.#gaps.set(id, now);
      }
      this.#maxSeen = row.id;
    }
    this.#gaps.delete(row.id);
    this.#pending.set(row.id, row);
    for (const listener of this.#listeners) listener(row);
  }

  /** Advances the watermark over delivered ids and expired gaps, emitting settled events in order. */
  #settle(now: number): void {
    for (;;) {
      const next = this.#watermark + 1;
      const row = this.#pending.get(next);
      if (row) {
        this.#pending.delete(next);
        this.#watermark = next;
        this.#settled.emit("event", row);
        continue;
      }
      const since = this.#gaps.get(next);
      if (since !== undefined && now - since >= this.#gapWaitMs) {
        this.#gaps.delete(next);
        this.#watermark = next;
        continue;
      }
      return;
    }
  }

  /** The id of the newest event at or below the watermark (0 when there is none): what a new subscriber's backlog ends with. */
  async lastSettledId(): Promise<number> {
    const upTo = this.#watermark;
    if (upTo === 0) return 0;
    const row = await this.#orm.em.fork().findOne(RevocationEventEntity, { id: { $lte: upTo } }, { orderBy: { id: "desc" }, fields: ["id"] });
    return row?.id ?? 0;
  }

  /**
   * Settled events after `cursor`, from the log and then live, in id order,
   * until `signal` aborts. An event's id is its cursor: resuming after it
   * misses nothing, because an event is only streamed once every lower id has
   * been streamed or has expired as a gap.
   *
   * A subscriber that does not keep up (a stalled client: the gRPC stream
   * waits for it to read) holds at most `maxQueued` live events in memory;
   * past that its queue is dropped and it catches up from the log, by its
   * cursor, once it reads again: slow subscribers cost bounded memory and
   * still miss nothing.
   */
  async *watch(cursor: number, signal: AbortSignal, options: { maxQueued?: number } = {}): AsyncGenerator<RevocationEvent> {
    const maxQueued = options.maxQueued ?? MAX_QUEUED_PER_SUBSCRIBER;
    const queue: RevocationEvent[] = [];
    let overflowed = false;
    let closed = false;
    let wake: (() => void) | undefined;
    const onEvent = (row: RevocationEvent) => {
      if (queue.length >= maxQueued) {
        overflowed = true;
        queue.length = 0;
      } else if (!overflowed) {
        queue.push(row);
      }
      wake?.();
    };
    const onClose = () => {
      closed = true;
      wake?.();
    };
    const onAbort = () => wake?.();
    // Subscribed before the catch-up reads: what settles meanwhile is queued, and skipped by id if the log had it.
    this.#settled.on("event", onEvent);
    this.#settled.on("close", onClose);
    signal.addEventListener("abort", onAbort);
    let last = cursor;
    try {
      for (;;) {
        // From the log, up to the watermark.
        for (;;) {
          const upTo = this.#watermark;
          if (last >= upTo) break;
          const rows = await this.#orm.em
            .fork()
            .find(RevocationEventEntity, { id: { $gt: last, $lte: upTo } }, { orderBy: { id: "asc" }, limit: PAGE });
          for (const row of rows) {
            last = row.id;
            yield row;
          }
          // Everything up to upTo is read (ids without a row were gaps that expired). The watermark
          // may have moved during the read: look again, and only stop when nothing is left, with no
          // await between that check and taking live events again below.
          if (rows.length < PAGE) last = Math.max(last, upTo);
        }
        overflowed = false;
        // Live, until the subscriber falls too far behind (then from the log again).
        for (;;) {
          if (signal.aborted || closed) return;
          if (overflowed) break;
          const row = queue.shift();
          if (!row) {
            await new Promise<void>((resolve) => (wake = resolve));
            wake = undefined;
            continue;
          }
          if (row.id <= last) continue;
          last = row.id;
          yield row;
        }
      }
    } finally {
      this.#settled.off("event", onEvent);
      this.#settled.off("close", onClose);
      signal.removeEventListener("abort", onAbort);
    }
  }
}
