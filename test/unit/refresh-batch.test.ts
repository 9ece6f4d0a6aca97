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

  it("sends a token presented twice in one batch once; the other presentation gets no row (it takes the grace path after)", async () => {
    const batcher = new RotationBatcher();
    const { run, calls } = recorder();
    const results = [batcher.rotate("a", "na", run), batcher.rotate("a", "na", run), batcher.rotate("b", "nb", run)];
    await tick();
    expect(calls[0]!.hashes).toEqual(["a", "b"]);
    calls[0]!.answer(claimed(1, 2));
    const [one, two, three] = await Promise.all(results);
    expect(one).toMatchObject({ session_id: "s1" });
    expect(two).toBeUndefined();
    expect(three).toMatchObject({ session_id: "s2" });
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

  it("a lost database fails every call of the batch; any other failure runs each token alone", async () => {
    const batcher = new RotationBatcher();
    const { run, calls } = recorder();
    const lost = [batcher.rotate("a", "na", run), batcher.rotate("b", "nb", run)];
    await tick();
    calls[0]!.fail(Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" }));
    for (const r of lost) await expect(r).rejects.toThrow("ECONNREFUSED");

    const odd = [batcher.rotate("c", "nc", run), batcher.rotate("d", "nd", run)];
    await tick();
    calls[1]!.fail(new Error("invalid input syntax"));
    await tick();
    expect(calls.slice(2).map((c) => c.hashes)).toEqual([["c"], ["d"]]);
    calls[2]!.answer(claimed(1));
    calls[3]!.fail(new Error("invalid input syntax"));
    await expect(odd[0]).resolves.toMatchObject({ session_id: "s1" });
    await expect(odd[1]).rejects.toThrow("invalid input syntax");
  });
});
