// The assertion jti record (src/registry/replay-store.ts) on a real database:
// concurrent verifications share one INSERT, and exactly one holder of a key wins,
// within a batch as across batches; expired records are swept.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ReplayStore } from "../../src/throttling/replay-store.ts";
import { openUnitDatabase, type UnitDatabase } from "../support/unit-db.ts";

let db: UnitDatabase;
let store: ReplayStore;
const soon = () => new Date(Date.now() + 60_000);

beforeAll(async () => {
  db = await openUnitDatabase();
  store = new ReplayStore(db.orm);
});
afterAll(() => db?.close());

describe("ReplayStore", () => {
  it("lets exactly one of many concurrent presentations of a key through", async () => {
    const results = await Promise.all(Array.from({ length: 50 }, () => store.remember("test", ["k-same"], soon())));
    expect(results.filter(Boolean)).toHaveLength(1);
    expect(await store.remember("test", ["k-same"], soon())).toBe(false);
  });

  it("answers each key of a burst for itself", async () => {
    await store.remember("test", ["k-old"], soon());
    const keys = ["k-old", ...Array.from({ length: 600 }, (_, i) => `k-new-${i}`)];
    const results = await Promise.all(keys.map((k) => store.remember("test", [k], soon())));
    expect(results[0]).toBe(false);
    expect(results.slice(1).every(Boolean)).toBe(true);
  });

  it("refuses a record that is not due within a day, for that caller alone (the others of its batch are kept)", async () => {
    const results = await Promise.allSettled([
      store.remember("test", ["k-fine-1"], soon()),
      store.remember("test", ["k-bad-date"], new Date(Number.NaN)),
      store.remember("test", ["k-far"], new Date(Date.now() + 30 * 86_400_000)),
      store.remember("test", ["k-fine-2"], soon()),
    ]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "rejected", "fulfilled"]);
    expect(await store.remember("test", ["k-fine-2"], soon())).toBe(false);
  });

  it("sweeps only records expired a minute ago by the database's clock", async () => {
    await store.remember("test", ["k-expired"], new Date(Date.now() - 61_000));
    await store.remember("test", ["k-live"], soon());
    await store.remember("test", ["k-just-expired"], new Date(Date.now() - 1000));
    expect(await store.sweep()).toBeGreaterThanOrEqual(1);
    expect(await store.remember("test", ["k-expired"], soon())).toBe(true);
    expect(await store.remember("test", ["k-live"], soon())).toBe(false);
    expect(await store.remember("test", ["k-just-expired"], soon())).toBe(false);
  });
});
