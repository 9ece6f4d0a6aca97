// RevocationWatcher: follows VerifyService.WatchRevocations so that local
// verification (TokenVerifier) refuses a revoked session, a disabled or
// deleted user, a disabled tenant and a withdrawn key moments after the
// server revoked it. Reconnects with its cursor after a drop (nothing is
// missed); when the stream has been down longer than a bound, verification
// fails closed or open, as the caller chose.
import { Metadata } from "nice-grpc-common";
import type { TesseraClient } from "./client.ts";
import { RevocationKind, type WatchRevocationsResponse } from "./gen/tessera/identity/v1/verify_service.ts";

/** The response header that names the last event the server holds when the stream opens (see VerifyService.WatchRevocations). */
export const BACKLOG_END_HEADER = "tessera-backlog-end";

export interface RevocationWatcherOptions {
  /**
   * What verification does while the stream has been down (or not caught up)
   * for longer than `maxStaleMs`: "closed" refuses every token
   * (REVOCATIONS_UNAVAILABLE), "open" trusts tokens until they expire. No
   * default: it is a security decision.
   */
  failMode: "closed" | "open";
  /** How long the stream may be down before `failMode` applies (default 5 s). Until the first catch-up, "closed" refuses at once: await ready(). */
  maxStaleMs?: number;
  /**
   * How long a revocation is remembered: at least the longest access-token
   * lifetime of the server (TESSERA_ACCESS_TOKEN_TTL, default 5 min), since
   * a token older than that has expired anyway (default 1 h).
   */
  retainMs?: number;
  /** Resume after this cursor (from `cursor` of an earlier watcher); from the oldest retained event when omitted. */
  cursor?: string;
  /** Delay before reconnecting, doubled per failure up to the maximum (default 100 ms … 5 s). */
  reconnectDelayMs?: { min?: number; max?: number };
  /** Called with every event, after it took effect. */
  onEvent?: (event: WatchRevocationsResponse) => void;
  /** Called when the stream goes up (caught up with the backlog) or down. */
  onStateChange?: (state: { connected: boolean; error?: unknown }) => void;
}

/** A refusal from revocations (see TokenVerifier). */
export interface RevocationRefusal {
  reason: "SESSION_REVOKED" | "REVOCATIONS_UNAVAILABLE";
  message: string;
}

/**
 * A token issued so close to a revocation of all its user's (or tenant's)
 * sessions that its `iat` (whole seconds, another machine's clock) cannot
 * tell whether it came before or after: the server must answer.
 */
export interface RevocationAmbiguity {
  reason: "AMBIGUOUS";
  /** The revocation's time (ms), which names it: the server's answer about the token, asked now, settles this one. */
  revokedAt: number;
}

/** How far apart `iat` and a revocation's time must be to be ordered without asking the server (ms): clock skew between replicas. */
const ORDERING_MARGIN_MS = 2_000;

/** The subject of a token, as revocations are checked. */
export interface RevocableToken {
  subject: string;
  tenantId: string;
  sessionId: string;
  issuedAt: Date;
}

/**
 * Follows the server's revocation feed. The client must carry a token with
 * `identity.revocations.watch` (system tenant), e.g. a TesseraSession's client.
 * Call `start()`, then `ready()` before trusting verifications.
 */
export class RevocationWatcher {
  readonly #client: TesseraClient;
  readonly #failMode: "closed" | "open";
  readonly #maxStaleMs: number;
  readonly #retainMs: number;
  readonly #minDelay: number;
  readonly #maxDelay: number;
  readonly #options: RevocationWatcherOptions;
  #cursor: string;
  /** Session id → when it was revoked. */
  readonly #sessions = new Map<string, number>();
  /** `tenant/user` → when all of the user's earlier tokens were revoked. */
  readonly #users = new Map<string, number>();
  /** Tenant id → when all of its earlier tokens were revoked. */
  readonly #tenants = new Map<string, number>();
  readonly #keyListeners: ((retiredKid: string | undefined) => void)[] = [];
  #connected = false;
  /** Since when the watcher has not been caught up; never caught up counts as down for ever (fail closed refuses at once). */
  #downSince = -Infinity;
  #abort?: AbortController;
  #loop?: Promise<void>;
  #readyWaiters: (() => void)[] = [];
  #lastPrune = Date.now();

  constructor(client: TesseraClient, options: RevocationWatcherOptions) {
    if (options?.failMode !== "closed" && options?.failMode !== "open") throw new TypeError('RevocationWatcher needs failMode "closed" or "open"');
    this.#client = client;
    this.#options = options;
    this.#failMode = options.failMode;
    this.#maxStaleMs = options.maxStaleMs ?? 5_000;
    this.#retainMs = options.retainMs ?? 3_600_000;
    this.#minDelay = options.reconnectDelayMs?.min ?? 100;
    this.#maxDelay = options.reconnectDelayMs?.max ?? 5_000;
    this.#cursor = options.cursor ?? "";
  }

  /** The cursor of the last event applied (pass it to a later watcher to resume). */
  get cursor(): string {
    return this.#cursor;
  }

  /** Whether the stream is open and caught up with the server's backlog. */
  get connected(): boolean {
    return this.#connected;
  }

  /** Starts following the feed (idempotent). */
  start(): this {
    if (this.#loop) return this;
    this.#abort = new AbortController();
    this.#loop = this.#run(this.#abort.signal);
    return this;
  }

  /** Resolves once the stream is caught up; rejects after `timeoutMs` (default 10 s). */
  ready(timeoutMs = 10_000): Promise<void> {
    this.start();
    if (this.#connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#readyWaiters = this.#readyWaiters.filter((w) => w !== waiter);
        reject(new Error(`revocation stream not caught up within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#readyWaiters.push(waiter);
    });
  }

  /** Stops following; verification then treats the stream as down. */
  async stop(): Promise<void> {
    this.#abort?.abort();
    await this.#loop?.catch(() => undefined);
    this.#loop = undefined;
    this.#setDown(undefined);
  }

  /** Called when a signing key is published or withdrawn (the verifier refetches its key set). */
  onKeysChanged(listener: (retiredKid: string | undefined) => void): void {
    this.#keyListeners.push(listener);
  }

  /**
   * Why a token must be refused now, or undefined; or AMBIGUOUS when only the
   * server can tell (a token issued within moments of a revoke-all), unless
   * the server confirmed the token while that revocation was known
   * (`confirmed`: the `revokedAt` values of the ambiguities it settled).
   * Revocations are compared by identity, never by clocks.
   */
  check(token: RevocableToken, confirmed: readonly number[] = []): RevocationRefusal | RevocationAmbiguity | undefined {
    if (!this.#connected && this.#failMode === "closed" && Date.now() - this.#downSince >= this.#maxStaleMs) {
      return { reason: "REVOCATIONS_UNAVAILABLE", message: "the revocation stream is down; failing closed" };
    }
    if (this.#sessions.has(token.sessionId)) return { reason: "SESSION_REVOKED", message: "session revoked" };
    // iat has whole seconds: the token was issued in [iat, iat + 1 s), on a clock that may differ from the one that dated the revocation.
    const issued = token.issuedAt.getTime();
    for (const [revokedAt, whose] of [
      [this.#users.get(`${token.tenantId}/${token.subject}`), "user"],
      [this.#tenants.get(token.tenantId), "tenant"],
    ] as const) {
      if (revokedAt === undefined || issued > revokedAt + ORDERING_MARGIN_MS) continue;
      if (issued + 1_000 <= revokedAt - ORDERING_MARGIN_MS) return { reason: "SESSION_REVOKED", message: `the ${whose}'s sessions were revoked` };
      if (!confirmed.includes(revokedAt)) return { reason: "AMBIGUOUS", revokedAt };
    }
    return undefined;
  }

  /** Applies one event (exported for tests and for callers feeding events from elsewhere). */
  apply(event: WatchRevocationsResponse): void {
    const at = event.eventTime?.getTime() ?? Date.now();
    // Older than every token it could concern (a replay of the whole log at start): nothing to remember.
    const old = at < Date.now() - this.#retainMs;
    switch (old ? RevocationKind.REVOCATION_KIND_UNSPECIFIED : event.kind) {
      case RevocationKind.REVOCATION_KIND_SESSION_REVOKED:
        if (event.sessionId) this.#sessions.set(event.sessionId, at);
        break;
      case RevocationKind.REVOCATION_KIND_USER_REVOKED:
        if (event.userId) this.#users.set(`${event.tenantId}/${event.userId}`, Math.max(at, this.#users.get(`${event.tenantId}/${event.userId}`) ?? 0));
        break;
      case RevocationKind.REVOCATION_KIND_TENANT_REVOKED:
        if (event.tenantId) this.#tenants.set(event.tenantId, Math.max(at, this.#tenants.get(event.tenantId) ?? 0));
        break;
      case RevocationKind.REVOCATION_KIND_KEY_ADDED:
        for (const listener of this.#keyListeners) listener(undefined);
        break;
      case RevocationKind.REVOCATION_KIND_KEY_RETIRED:
        for (const listener of this.#keyListeners) listener(event.keyId || undefined);
        break;
      default:
        // Grant and registry changes do not invalidate access tokens locally (their scope is what the login elected).
        break;
    }
    if (event.cursor) this.#cursor = event.cursor;
    this.#options.onEvent?.(event);
    if (Date.now() - this.#lastPrune > 60_000) this.#prune();
  }

  /** Forgets revocations older than every token they could concern. */
  #prune(): void {
    const before = Date.now() - this.#retainMs;
    for (const map of [this.#sessions, this.#users, this.#tenants]) {
      for (const [id, at] of map) if (at < before) map.delete(id);
    }
    this.#lastPrune = Date.now();
  }

  #setUp(): void {
    if (this.#connected) return;
    this.#connected = true;
    for (const waiter of this.#readyWaiters.splice(0)) waiter();
    this.#options.onStateChange?.({ connected: true });
  }

  #setDown(error: unknown): void {
    if (!this.#connected) return;
    this.#connected = false;
    this.#downSince = Date.now();
    this.#options.onStateChange?.({ connected: false, error });
  }

  async #run(signal: AbortSignal): Promise<void> {
    let delay = this.#minDelay;
    while (!signal.aborted) {
      let backlogEnd: number | undefined;
      try {
        const stream = this.#client.verify.watchRevocations(
          { cursor: this.#cursor },
          {
            signal,
            onHeader: (header: Metadata) => {
              // Connected: the next drop starts again from the shortest delay.
              delay = this.#minDelay;
              // Without the header (a proxy dropped it) the end of the backlog is unknown: never taken as caught up.
              const end = header.get(BACKLOG_END_HEADER);
              backlogEnd = end !== undefined && /^\d{1,15}$/.test(end) ? Number(end) : Infinity;
              if (Number(this.#cursor || "0") >= backlogEnd) this.#setUp();
            },
          },
        );
        for await (const event of stream) {
          this.apply(event);
          delay = this.#minDelay;
          if (!this.#connected && backlogEnd !== undefined && Number(event.cursor) >= backlogEnd) this.#setUp();
        }
        // The server ended the stream (shutting down): reconnect.
        this.#setDown(undefined);
      } catch (error) {
        if (signal.aborted) break;
        this.#setDown(error);
      }
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          signal.removeEventListener("abort", done);
          resolve();
        };
        const timer = setTimeout(done, delay);
        signal.addEventListener("abort", done, { once: true });
      });
      delay = Math.min(this.#maxDelay, delay * 2);
    }
  }
}
