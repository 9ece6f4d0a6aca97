// The refresh group commit (src/tokens/refresh-batch.ts): which refreshes share
// a statement, how each gets its own row, and how deadlines and failures
// reach the calls it serves. The statement itself runs on PostgreSQL in
// refresh-rotation.test.ts and the integration tests; here `run` records its
// batches, so that the batching rules are checked exactly.
import { describe, expect, it } from "vitest";
import { withCallSignal } from "../../src/db/call-deadline.ts";
import { RotationBatcher, type RotationRow, type RunBatch } from "../../src/tokens/refresh-batch.ts";

interface Call {
  hashes: string[];
  successors: string[];
  signal: AbortSignal;
  answer(rows: RotationRow[]): void;
  fail(error: unknown): void;
}

/** A `run` whose calls wait until the test answers them. */
function recorder(): { run: RunBatch; calls: Call[] } {
  const calls: Call[] = [];
  const run: RunBatch = (hashes, successors, signal) =>
    new Promise((answer, fail) => calls.push({ hashes, successors, signal, answer, fail }));
  return { run, calls };
}

const tick = () => new Promise((r) => setImmediate(r));
/** Rows claiming the given positions (1-based), as the statement returns them. */
const claimed = (...ords: number[]) => ords.map((ord) => ({ ord: String(ord), session_id: `s${ord}` }));

describe("RotationBatcher", () => {
  it("puts the refreshes of one turn in one statement and gives each its own row, or none", async () => {
    const batcher = new RotationBatcher();
    const { run, calls } = recorder();
    const results = ["a", "b", "c"].map((h) => batcher.rotate(h, `next-${h}`, run));
    await tick();
    expect(calls).toHaveLength(1);
    expect(calls[0]!.hashes).toEqual(["a", "b", "c"]);
    expect(calls[0]!.successors).toEqual(["next-a", "next-b", "next-c"]);
    calls[0]!.answer(claimed(1, 3)); // b's row claimed nothing
    expect(await Promise.all(results)).toEqual([{ ord: "1", session_id: "s1" }, undefined, { ord: "3", session_id: "s3" }]);
  });

  it("runs at most two statements at once; what arrives meanwhile goes in the next one", async () => {
    const batcher = new RotationBatcher();
    const { run, calls } = recorder();
    const first = batcher.rotate("a", "na", run);
    await tick();
    const second = batcher.rotate("b", "nb", run);
    await tick();
    const waiting = ["c", "d", "e"].map((h) => batcher.rotate(h, `n${h}`, run));
    await tick();
    expect(calls.map((c) => c.hashes)).toEqual([["a"], ["b"]]);
    calls[0]!.answer(claimed(1));
    await first;
    await tick();
    await tick();
    expect(calls.map((c) => c.hashes)).toEqual([["a"], ["b"], ["c", "d", "e"]]);
    calls[1]!.answer(claimed(1));
    calls[2]!.answer(claimed(1, 2, 3));
    expect(await second).toMatchObject({ session_id: "s1" });
    expect(await Promise.all(waiting)).toHaveLength(3);
  });

  it("never puts a token twice in one statement, nor in two at once: a second presentation waits for the next statement", async () => {
    const batcher = new RotationBatcher();
    const { run, calls } = recorder();
    const results = [batcher.rotate("a", "na", run), batcher.rotate("a", "na", run), batcher.rotate("b", "nb", run)];
    await tick();
    // "a" again is held back even though a second statement could start: the first holds its row.
    expect(calls.map((c) => c.hashes)).toEqual([["a", "b"]]);
    calls[0]!.answer(claimed(1, 2));
    expect(await results[0]).toMatchObject({ session_id: "s1" });
    expect(await results[2]).toMatchObject({ session_id: "s2" });
    await tick();
    await tick();
    expect(calls.map((c) => c.hashes)).toEqual([["a", "b"], ["a"]]);
    calls[1]!.answer([]); // spent by the first: no row, the caller takes the grace path
    expect(await results[1]).toBeUndefined();
  });

  it("answers a call that ends at once, and cancels the statement only when every call it serves has ended", async () => {
    const batcher = new RotationBatcher();
    const { run, calls } = recorder();
    const a = new AbortController();
    const b = new AbortController();
    const ra = withCallSignal(a.signal, () => batcher.rotate("a", "na", run));
    const rb = withCallSignal(b.signal, () => batcher.rotate("b", "nb", run));
    await tick();
    expect(calls).toHaveLength(1);
    a.abort(new Error("deadline of a"));
    await expect(ra).rejects.toThrow("deadline of a");
    expect(calls[0]!.signal.aborted).toBe(false); // b still waits for it
    b.abort(new Error("deadline of b"));
    await expect(rb).rejects.toThrow("deadline of b");
    expect(calls[0]!.signal.aborted).toBe(true);
    calls[0]!.fail(new Error("canceling statement due to user request"));
    // A call already ended when it asks is refused without a statement.
    await expect(withCallSignal(a.signal, () => batcher.rotate("c", "nc", run))).rejects.toThrow("deadline of a");
    await tick();
    expect(calls).toHaveLength(1);
  });

  it("a call without a deadline keeps the statement alive", async () => {
    const batcher = new RotationBatcher();
    const { run, calls } = recorder();
    const a = new AbortController();
    const ra = withCallSignal(a.signal, () => batcher.rotate("a", "na", run));
    const rb = batcher.rotate("b", "nb", run);
    await tick();
    a.abort(new Error("gone"));
    await expect(ra).rejects.toThrow("gone");
    expect(calls[0]!.signal.aborted).toBe(false);
    calls[0]!.answer(claimed(2));
    expect(await rb).toMatchObject({ session_id: "s2" });
  });

  it("a call that ends while it waits is answered at once and left out of the next statement", async () => {
    const batcher = new RotationBatcher();
    const { run, calls } = recorder();
    const first = [batcher.rotate("a", "na", run)];
    await tick();
    first.push(batcher.rotate("b", "nb", run));
    await tick(); // the second statement: both slots taken
    const gone = new AbortController();
    const waiting = withCallSignal(gone.signal, () => batcher.rotate("c", "nc", run));
    const staying = batcher.rotate("d", "nd", run);
    await tick();
    gone.abort(new Error("deadline of c"));
    await expect(waiting).rejects.toThrow("deadline of c");
    calls[0]!.answer(claimed(1));
    await tick();
    await tick();
    expect(calls.map((c) => c.hashes)).toEqual([["a"], ["b"], ["d"]]);
    calls[1]!.answer(claimed(1));
    calls[2]!.answer(claimed(1));
    await Promise.all([...first, staying]);
  });

  it("refuses a refresh at once (SERVER_BUSY) when too many wait for a database that does not answer", async () => {
    const batcher = new RotationBatcher();
    const { run, calls } = recorder();
    const held = [batcher.rotate("x", "nx", run)];
    await tick();
    held.push(batcher.rotate("y", "ny", run));
    await tick();
    const waiting = Array.from({ length: 1024 }, (_, i) => batcher.rotate(`w${i}`, `nw${i}`, run));
    await expect(batcher.rotate("one-more", "n", run)).rejects.toMatchObject({ kind: "RESOURCE_EXHAUSTED", reason: "SERVER_BUSY" });
    // Once the database answers, the waiting ones go, 64 to a statement.
    calls[0]!.answer([]);
    calls[1]!.answer([]);
    for (let i = 0; i < 40 && calls.length < 18; i++) {
      await tick();
      for (const c of calls.slice(2)) c.answer([]);
    }
    expect(calls.slice(2).map((c) => c.hashes.length)).toEqual(Array(16).fill(64));
    expect(await Promise.all(waiting)).toEqual(Array(1024).fill(undefined));
    await Promise.all(held);
  });

  it("a lost database (or a timeout) fails every call of the batch; one row's bad data runs each token alone, one after the other", async () => {
    const batcher = new RotationBatcher();
    const { run, calls } = recorder();
    const lost = [batcher.rotate("a", "na", run), batcher.rotate("b", "nb", run)];
    await tick();
    calls[0]!.fail(Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" }));
    for (const r of lost) await expect(r).rejects.toThrow("ECONNREFUSED");

    const timedOut = [batcher.rotate("e", "ne", run), batcher.rotate("f", "nf", run)];
    await tick();
    calls[1]!.fail(Object.assign(new Error("canceling statement due to statement timeout"), { code: "57014" }));
    for (const r of timedOut) await expect(r).rejects.toThrow("statement timeout");
    expect(calls).toHaveLength(2);

    const odd = [batcher.rotate("c", "nc", run), batcher.rotate("d", "nd", run)];
    await tick();
    calls[2]!.fail(Object.assign(new Error("invalid input syntax"), { code: "22P02" }));
    await tick();
    expect(calls.slice(3).map((c) => c.hashes)).toEqual([["c"]]);
    calls[3]!.answer(claimed(1));
    await tick();
    expect(calls.slice(3).map((c) => c.hashes)).toEqual([["c"], ["d"]]);
    calls[4]!.fail(Object.assign(new Error("invalid input syntax"), { code: "22P02" }));
    await expect(odd[0]).resolves.toMatchObject({ session_id: "s1" });
    await expect(odd[1]).rejects.toThrow("invalid input syntax");
  });
});
