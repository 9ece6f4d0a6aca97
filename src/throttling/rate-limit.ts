// Plain request-rate limits (e.g. self-registrations per address and per
// tenant): every request takes a point before its expensive work. A caller
// that is already over a limit is refused without taking anything.
import type { RateLimiterAbstract } from "rate-limiter-flexible";
import { TesseraError } from "../errors.ts";
import type { LimiterStore } from "./limiter-store.ts";

export class RateLimit {
  readonly #store: LimiterStore;
  readonly #limiter: RateLimiterAbstract;
  readonly points: number;

  constructor(store: LimiterStore, keyPrefix: string, points: number, windowSeconds: number) {
    this.points = points;
    this.#store = store;
    this.#limiter = store.create({ keyPrefix, points, durationSeconds: windowSeconds });
  }

  /** Takes one point from each (limit, key) pair, or none when any is exhausted (RATE_LIMITED with RetryInfo). */
  static async takeAll(entries: [RateLimit | undefined, string][], what: string): Promise<void> {
    const active = entries.filter((e): e is [RateLimit, string] => e[0] !== undefined);
    const store = active.length ? active[0]![0].#store : undefined;
    const current =
      store && active.every(([limit]) => limit.#store === store)
        ? await store.getMany(active.map(([limit, key]) => [limit.#limiter, key] as const))
        : await Promise.all(active.map(([limit, key]) => limit.#limiter.get(key)));
    let waitMs = -1;
    current.forEach((res, i) => {
      if (res && res.consumedPoints >= active[i]![0].points) waitMs = Math.max(waitMs, res.msBeforeNext);
    });
    if (waitMs >= 0) {
      throw new TesseraError("RESOURCE_EXHAUSTED", "RATE_LIMITED", `too many ${what}; retry later`, { retryAfterMs: waitMs });
    }
    // Over-consumption by a concurrent request is possible here and harmless: the next caller is refused.
    await Promise.allSettled(active.map(([limit, key]) => limit.#limiter.consume(key)));
  }
}
