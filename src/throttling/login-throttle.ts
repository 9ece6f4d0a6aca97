// Failed-credential throttling for password logins and password changes.
//
// Policy (README "Login throttling"): only failures count, in three counters
// shared by every replica through the limiter store:
//  - per account AND caller address: after `failuresPerAccountAndAddress`
//    failures that address is blocked from that account for `blockSeconds`.
//    A stranger's guesses lock out the stranger, not the owner;
//  - per account across addresses: a much higher ceiling
//    (`failuresPerAccount`) against guessing spread over many addresses;
//  - per caller address across accounts (`failuresPerAddress`, 0 = off):
//    password spraying.
// A blocked caller is refused before any password work, and nothing is
// recorded for it. Correct passwords are never refused while no counter is
// exhausted, however many arrive at once: attempts whose outcome is not known
// yet are limited (per account and address, in this process) to the failures
// still allowed, and the others wait for them instead of being refused; a
// burst of wrong guesses thus gets exactly the allowed number of checks.
import { createHash } from "node:crypto";
import type { RateLimiterAbstract } from "rate-limiter-flexible";
import { tooManyAttempts } from "../errors.ts";
import type { CounterState, LimiterStore } from "./limiter-store.ts";

export interface LoginThrottleSettings {
  failuresPerAccountAndAddress: number;
  failuresPerAccount: number;
  /** 0 turns the per-address limit off (e.g. behind a proxy that hides callers). */
  failuresPerAddress: number;
  /** Counting window and block length. */
  blockSeconds: number;
}

/** Attempts waiting for an earlier attempt's outcome, per account and address. */
const MAX_WAITING = 64;

/** A fixed-size key however long the parts are (tenant names, usernames, addresses). */
export function throttleKey(...parts: string[]): string {
  return createHash("sha256").update(parts.join("\u0000")).digest("base64url");
}

interface Budget {
  /** Failures still allowed before a block. */
  remaining: number;
  pairHasFailures: boolean;
  addressHasFailures: boolean;
}

interface Slot {
  /** Attempts whose credential check is running. */
  inFlight: number;
  /** Attempts reading the counters or waiting for a turn (they keep the slot alive). */
  waiting: number;
  /** Failures of this process, counted once recorded in the store. */
  failures: number;
  waiters: Set<() => void>;
}

export class LoginThrottle {
  readonly #store: LimiterStore;
  readonly #pair: RateLimiterAbstract;
  readonly #account: RateLimiterAbstract;
  readonly #address?: RateLimiterAbstract;
  readonly #limits: LoginThrottleSettings;
  readonly #slots = new Map<string, Slot>();

  constructor(store: LimiterStore, settings: LoginThrottleSettings) {
    const window = { durationSeconds: settings.blockSeconds, blockSeconds: settings.blockSeconds };
    this.#limits = settings;
    this.#store = store;
    this.#pair = store.create({ keyPrefix: "login-pair", points: settings.failuresPerAccountAndAddress, ...window });
    this.#account = store.create({ keyPrefix: "login-account", points: settings.failuresPerAccount, ...window });
    if (settings.failuresPerAddress > 0) this.#address = store.create({ keyPrefix: "login-address", points: settings.failuresPerAddress, ...window });
  }

  /**
   * Runs one credential check of `account` (a stable id: see throttleKey) by a
   * caller at `address`. `check` resolves true for a correct credential.
   * Throws TOO_MANY_ATTEMPTS (with the wait) when a counter is exhausted.
   */
  async attempt(account: string, address: string, check: () => Promise<boolean>): Promise<boolean> {
    const keys = { pair: throttleKey(account, address), account, address: throttleKey(address) };
    let slot = this.#slots.get(keys.pair);
    if (!slot) this.#slots.set(keys.pair, (slot = { inFlight: 0, waiting: 0, failures: 0, waiters: new Set() }));
    slot.waiting++;
    let running = false;
    try {
      // Local failures are counted only once they are in the shared store, so
      // a budget read after `seen` changed always includes them.
      let seen = slot.failures;
      let budget = await this.#budget(keys);
      for (;;) {
        if (slot.failures !== seen) {
          seen = slot.failures;
          budget = await this.#budget(keys);
          continue;
        }
        if (slot.inFlight < budget.remaining) break;
        if (slot.waiters.size >= MAX_WAITING) throw tooManyAttempts(1000);
        await new Promise<void>((resolve) => slot!.waiters.add(resolve));
      }
      slot.waiting--;
      slot.inFlight++;
      running = true;
      const ok = await check();
      if (ok) await this.#succeeded(keys, budget);
      else {
        await this.#failed(keys);
        slot.failures++;
      }
      return ok;
    } finally {
      if (running) slot.inFlight--;
      else slot.waiting--;
      this.#wake(keys.pair, slot);
    }
  }

  #wake(pairKey: string, slot: Slot): void {
    for (const wake of slot.waiters) wake();
    slot.waiters.clear();
    if (slot.inFlight === 0 && slot.waiting === 0) this.#slots.delete(pairKey);
  }

  /** Reads the counters without recording anything; throws when one is exhausted. */
  async #budget(keys: { pair: string; account: string; address: string }): Promise<Budget> {
    const reads: [RateLimiterAbstract, string][] = [
      [this.#pair, keys.pair],
      [this.#account, keys.account],
    ];
    if (this.#address) reads.push([this.#address, keys.address]);
    const [pair, account, address] = await this.#store.getMany(reads);
    const limited: [CounterState | null | undefined, number][] = [
      [pair, this.#limits.failuresPerAccountAndAddress],
      [account, this.#limits.failuresPerAccount],
      ...(this.#address ? [[address, this.#limits.failuresPerAddress] as [CounterState | null | undefined, number]] : []),
    ];
    let remaining = Infinity;
    let waitMs = 0;
    for (const [res, points] of limited) {
      const left = points - (res?.consumedPoints ?? 0);
      if (left <= 0) waitMs = Math.max(waitMs, res!.msBeforeNext);
      remaining = Math.min(remaining, left);
    }
    if (remaining <= 0) throw tooManyAttempts(waitMs);
    return { remaining, pairHasFailures: (pair?.consumedPoints ?? 0) > 0, addressHasFailures: (address?.consumedPoints ?? 0) > 0 };
  }

  async #failed(keys: { pair: string; account: string; address: string }): Promise<void> {
    // consume() rejects once a counter is exhausted (and starts its block): that is the point, not an error here.
    const outcomes = await Promise.allSettled([this.#pair.consume(keys.pair), this.#account.consume(keys.account), this.#address?.consume(keys.address)]);
    for (const outcome of outcomes) {
      if (outcome.status === "rejected" && outcome.reason instanceof Error) throw outcome.reason;
    }
  }

  /** The owner got in from here: this address's failures on the account are forgiven, and one of its spray points. */
  async #succeeded(keys: { pair: string; address: string }, budget: Budget): Promise<void> {
    await Promise.all([
      budget.pairHasFailures ? this.#pair.delete(keys.pair) : undefined,
      budget.addressHasFailures ? this.#address?.reward(keys.address, 1) : undefined,
    ]);
  }
}
