// Group commit for the common refresh: the refreshes that arrive while
// earlier ones are at the database rotate together, in one statement (one
// round trip, one plan execution, one commit and one WAL flush for all of
// them) instead of one statement each. Each row of the statement is the
// single-token work (ROTATE_FAST_BATCH in refresh-rotation.ts), so a refresh
// rotates exactly as it would alone: a token claimed by its row, or not
// claimed (and then answered by the two-statement path, as before).
//
// At most MAX_IN_FLIGHT statements run at once; what arrives meanwhile waits
// for the next one (at most MAX_BATCH tokens each, no token twice, and none
// that a running statement holds: two statements never lock the same rows).
// Under light load a batch is one refresh and nothing waits. At most
// MAX_QUEUED wait; beyond that a refresh is refused at once (SERVER_BUSY).
//
// A batch serves several calls, so no single call's deadline may cancel it:
// its statement is cancelled (PostgreSQL CancelRequest, db/call-deadline.ts)
// when every call it serves has ended. A call that ends, waiting or in a
// running statement, is answered at once with its own abort reason; a row of
// a running statement may still rotate its token, exactly like a refresh
// whose response was lost (the client's retry within the grace window gets
// the same successor). The statement's trace span belongs to the call that
// started the batch.
import { currentCallSignal, withCallSignal } from "../db/call-deadline.ts";
import { TesseraError } from "../errors.ts";

/** At most this many batch statements at the database at once (each holds one pool connection). */
const MAX_IN_FLIGHT = 2;
/** At most this many tokens per statement. */
const MAX_BATCH = 64;
/**
 * At most this many refreshes waiting for a statement; beyond it a refresh is
 * refused at once (RESOURCE_EXHAUSTED / SERVER_BUSY) instead of joining a
 * backlog behind a database that does not answer.
 */
const MAX_QUEUED = 16 * MAX_BATCH;
/**
 * SQLSTATE classes that one row's data can cause (22 data exception, 23
 * integrity violation): then each token of the batch runs again on its own,
 * so that one bad row fails only its own call. Anything else (the database
 * lost, a timeout, a lock not granted) fails every call of the batch.
 */
const ROW_ERROR_CLASSES = new Set(["22", "23"]);

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
  /** Hashes in a statement now: a presentation of one of them waits for the next statement (no two statements lock the same rows). */
  readonly #busy = new Set<string>();
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
      if (this.#queue.length >= MAX_QUEUED) {
        return reject(new TesseraError("RESOURCE_EXHAUSTED", "SERVER_BUSY", "too many refreshes waiting for the database; retry shortly", { retryAfterMs: 1000 }));
      }
      const member: Member = { hash, successorHash, run, signal, done: false, resolve, reject };
      // A call that ends while it waits is answered at once (and left out of its batch).
      const onAbort = () => member.reject(signal!.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      member.resolve = (row) => {
        if (member.done) return;
        member.done = true;
        signal?.removeEventListener("abort", onAbort);
        resolve(row);
      };
      member.reject = (error) => {
        if (member.done) return;
        member.done = true;
        signal?.removeEventListener("abort", onAbort);
        reject(error);
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
      while (this.#inFlight < MAX_IN_FLIGHT) {
        const batch = this.#take();
        if (!batch.length) return;
        this.#inFlight++;
        for (const m of batch) this.#busy.add(m.hash);
        void this.#execute(batch).finally(() => {
          for (const m of batch) this.#busy.delete(m.hash);
          this.#inFlight--;
          this.#schedule();
        });
      }
    });
  }

  /**
   * Up to MAX_BATCH waiting members with distinct hashes, none in a statement
   * now; the others keep their place. Ended calls are dropped.
   */
  #take(): Member[] {
    const batch: Member[] = [];
    const hashes = new Set<string>();
    const kept: Member[] = [];
    for (const m of this.#queue) {
      if (m.done) continue;
      if (batch.length < MAX_BATCH && !hashes.has(m.hash) && !this.#busy.has(m.hash)) {
        hashes.add(m.hash);
        batch.push(m);
      } else {
        kept.push(m);
      }
    }
    this.#queue = kept;
    return batch;
  }

  async #execute(batch: Member[]): Promise<void> {
    // The statement ends when every call it serves has ended (a call without a deadline keeps it).
    const controller = new AbortController();
    const cleanups: (() => void)[] = [];
    let live = 0;
    for (const m of batch) {
      if (!m.signal) {
        live = Infinity;
        continue;
      }
      live++;
      const onAbort = () => {
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
    } catch (error) {
      if (batch.length === 1 || controller.signal.aborted || !ROW_ERROR_CLASSES.has(sqlStateClass(error))) {
        for (const m of batch) m.reject(error);
        return;
      }
      // One row's data: each token again on its own, one after the other.
      for (const m of batch) if (!m.done) await this.#execute([m]);
    } finally {
      for (const cleanup of cleanups) cleanup();
    }
  }
}

/** The first two characters of the error's SQLSTATE (here or in its causes), or "". */
function sqlStateClass(error: unknown): string {
  for (let e: unknown = error, depth = 0; e && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) return code.slice(0, 2);
  }
  return "";
}
