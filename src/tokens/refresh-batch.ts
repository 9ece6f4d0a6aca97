// Group commit for the common refresh (PostgreSQL): the refreshes that arrive
// while earlier ones are at the database rotate together, in one statement
// (one round trip, one plan execution, one commit and one WAL flush for all
// of them) instead of one statement each. Each row of the statement is the
// single-token statement's work (ROTATE_FAST in refresh-rotation.ts), so a
// refresh rotates exactly as it would alone: a token claimed by its row, or
// not claimed (and then answered by the two-statement path, as before).
//
// At most MAX_IN_FLIGHT statements run at once; what arrives meanwhile waits
// for the next one (at most MAX_BATCH tokens each). Under light load a batch
// is one refresh and nothing waits.
//
// A batch serves several calls, so no single call's deadline may cancel it:
// its statement is cancelled (PostgreSQL CancelRequest, db/call-deadline.ts)
// when every call it serves has ended. A call that ends before the batch
// answers is answered at once with its own abort reason; its row may still
// rotate, exactly like a refresh whose response was lost (the client's retry
// within the grace window gets the same successor).
import { currentCallSignal, withCallSignal } from "../db/call-deadline.ts";
import { isDatabaseUnavailable } from "../db/errors.ts";

/** At most this many batch statements at the database at once (each holds one pool connection). */
const MAX_IN_FLIGHT = 2;
/** At most this many tokens per statement. */
const MAX_BATCH = 64;

export type RotationRow = Record<string, unknown>;

/** Runs the batch statement: token hashes, successor hashes (same order); rows carry `ord` (1-based). */
export type RunBatch = (hashes: string[], successorHashes: string[], signal: AbortSignal) => Promise<RotationRow[]>;

interface Member {
  hash: string;
  successorHash: string;
  run: RunBatch;
  signal: AbortSignal | undefined;
  done: boolean;
  resolve(row: RotationRow | undefined): void;
  reject(error: unknown): void;
}

export class RotationBatcher {
  #queue: Member[] = [];
  #inFlight = 0;
  #scheduled = false;

  /**
   * The statement's row for this token, or undefined when its row claimed
   * nothing. `run` executes a batch (the first member's is used for the
   * whole batch: every member's runs on the same pool).
   */
  rotate(hash: string, successorHash: string, run: RunBatch): Promise<RotationRow | undefined> {
    return new Promise((resolve, reject) => {
      const signal = currentCallSignal();
      if (signal?.aborted) return reject(signal.reason);
      const member: Member = { hash, successorHash, run, signal, done: false, resolve, reject };
      member.resolve = (row) => {
        if (!member.done) (member.done = true), resolve(row);
      };
      member.reject = (error) => {
        if (!member.done) (member.done = true), reject(error);
      };
      this.#queue.push(member);
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#scheduled || this.#inFlight >= MAX_IN_FLIGHT || !this.#queue.length) return;
    this.#scheduled = true;
    // After the I/O callbacks of this turn: requests decoded from one read join one batch.
    setImmediate(() => {
      this.#scheduled = false;
      while (this.#inFlight < MAX_IN_FLIGHT && this.#queue.length) {
        const batch = this.#queue.splice(0, MAX_BATCH).filter((m) => !m.done);
        if (!batch.length) continue;
        this.#inFlight++;
        void this.#execute(batch).finally(() => {
          this.#inFlight--;
          this.#schedule();
        });
      }
    });
  }

  async #execute(members: Member[]): Promise<void> {
    // One row per token: a token presented twice in one batch is claimed by its first row; the
    // other presentation takes the two-statement path after this batch (grace, or reuse).
    const seen = new Set<string>();
    const batch: Member[] = [];
    const again: Member[] = [];
    for (const m of members) {
      if (seen.has(m.hash)) again.push(m);
      else (seen.add(m.hash), batch.push(m));
    }
    const controller = new AbortController();
    const cleanups: (() => void)[] = [];
    let live = batch.length;
    for (const m of batch) {
      if (!m.signal) {
        live = Infinity;
        continue;
      }
      const onAbort = () => {
        m.reject(m.signal!.reason);
        if (--live === 0) controller.abort();
      };
      m.signal.addEventListener("abort", onAbort, { once: true });
      cleanups.push(() => m.signal!.removeEventListener("abort", onAbort));
    }
    try {
      const rows = await withCallSignal(controller.signal, () =>
        batch[0]!.run(
          batch.map((m) => m.hash),
          batch.map((m) => m.successorHash),
          controller.signal,
        ),
      );
      const byOrd = new Map<number, RotationRow>();
      for (const row of rows) byOrd.set(Number(row.ord), row);
      batch.forEach((m, i) => m.resolve(byOrd.get(i + 1)));
      for (const m of again) m.resolve(undefined);
    } catch (error) {
      if (batch.length === 1 || controller.signal.aborted || isDatabaseUnavailable(error)) {
        for (const m of members) m.reject(error);
        return;
      }
      // Not the database's availability (one row's data?): each token again on its own.
      await Promise.all(batch.filter((m) => !m.done).map((m) => this.#execute([m])));
      for (const m of again) m.resolve(undefined);
    } finally {
      for (const cleanup of cleanups) cleanup();
    }
  }
}
