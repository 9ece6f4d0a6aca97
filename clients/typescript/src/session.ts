// A logged-in session: attaches the current access token to every call and
// rotates it before it expires, with exactly one Refresh in flight however
// many calls are waiting.
import { Metadata, Status, type ClientMiddleware } from "nice-grpc-common";
import type { TesseraClient } from "./client.ts";
import { TesseraClientError, toTesseraClientError } from "./errors.ts";
import type { IssueTokenRequest, IssueTokenResponse } from "./gen/tessera/identity/v1/issue_service.ts";
import type { RefreshResponse } from "./gen/tessera/identity/v1/refresh_service.ts";

/** The tokens of a session after a login or a rotation. */
export interface SessionTokens {
  accessToken: string;
  /** When the access token expires. */
  expiresAt: Date;
  /** The current refresh token (empty for service principals, which log in again instead). */
  refreshToken: string;
  refreshExpiresAt: Date | undefined;
  sessionId: string;
  grantedPermissions: string[];
}

/** How a session starts: a credential to log in with, a login to repeat (services), or a refresh token kept from earlier. */
export type SessionStart =
  | { credential: NonNullable<IssueTokenRequest["credential"]>; requestedPermissions?: string[]; audience?: string }
  | { login: () => Partial<IssueTokenRequest> | Promise<Partial<IssueTokenRequest>> }
  | { refreshToken: string; requestedPermissions?: string[] };

export interface SessionOptions {
  /**
   * Rotate when less than this is left of the access token's lifetime
   * (default: 30 s, or a quarter of the lifetime when that is shorter).
   */
  refreshBeforeMs?: number;
  /** Called after the login and every rotation, e.g. to persist the refresh token. */
  onTokens?: (tokens: SessionTokens) => void;
  /**
   * Retry a Refresh that failed with UNAVAILABLE once (default true). Safe
   * while the server keeps its refresh grace window (TESSERA_REFRESH_GRACE,
   * 10 s by default): a token re-presented after a lost response gets the same
   * successor. Set false against a server running strict rotation (grace 0).
   */
  retryRefresh?: boolean;
}

/** Refusals after which the refresh token will never work again. */
const ENDED_REASONS = new Set(["REFRESH_TOKEN_INVALID", "SESSION_REVOKED", "USER_DISABLED", "TENANT_DISABLED"]);

function tokensOf(response: IssueTokenResponse | RefreshResponse): SessionTokens {
  return {
    accessToken: response.accessToken,
    expiresAt: response.expireTime ?? new Date(0),
    refreshToken: response.refreshToken,
    refreshExpiresAt: response.refreshExpireTime,
    sessionId: response.sessionId,
    grantedPermissions: response.grantedPermissions,
  };
}

/**
 * A session of a user (password, Minecraft, OpenID Connect login, or a kept
 * refresh token) or of a service (a login repeated with a fresh assertion).
 * `session.client` sends its access token; a token close to expiry is
 * rotated first, by one Refresh shared by every waiting call; a call answered
 * TOKEN_EXPIRED is retried once with a fresh token.
 */
export class TesseraSession {
  readonly #base: TesseraClient;
  readonly #start: SessionStart;
  readonly #options: SessionOptions;
  #tokens?: SessionTokens;
  /** The refresh (or login) in flight; every caller waits on the same one. */
  #renewing?: Promise<SessionTokens>;
  /** Why the session ended (refresh token refused, logged out); calls fail with it. */
  #ended?: unknown;
  /** The authenticated clients. */
  readonly client: TesseraClient;
  /** When the current tokens arrived. */  /** Rotations performed (logins not counted). */
  refreshes = 0;

  private constructor(base: TesseraClient, start: SessionStart, options: SessionOptions) {
    this.#base = base;
    this.#start = start;
    this.#options = options;
    this.client = base.withAuth(this.#middleware());
  }

  /** Logs in (or takes the refresh token) and returns the session. */
  static async start(client: TesseraClient, start: SessionStart, options: SessionOptions = {}): Promise<TesseraSession> {
    const session = new TesseraSession(client, start, options);
    if ("refreshToken" in start) {
      if (!start.refreshToken) throw new TypeError("refreshToken is empty");
      await session.#renew(start.refreshToken);
    } else {
      await session.#renew();
    }
    return session;
  }

  /** The tokens now (after `start`, always set). */
  get tokens(): SessionTokens {
    if (!this.#tokens) throw new Error("the session has not started");
    return this.#tokens;
  }

  get sessionId(): string {
    return this.tokens.sessionId;
  }

  /** A valid access token: the current one, or a fresh one when it is close to expiry. */
  async accessToken(): Promise<string> {
    if (this.#ended !== undefined) throw this.#ended;
    const tokens = this.tokens;
    const left = tokens.expiresAt.getTime() - Date.now();
    if (left > this.#margin(tokens)) return tokens.accessToken;
    try {
      return (await this.#renewShared(tokens)).accessToken;
    } catch (error) {
      // A transient failure with the current token still valid: use it, rotate on a later call.
      if (this.#ended === undefined && tokens.expiresAt.getTime() - Date.now() > 1_000) return tokens.accessToken;
      throw error;
    }
  }

  /** Rotates now (one rotation however many callers ask at once). */
  async refresh(): Promise<SessionTokens> {
    if (this.#ended !== undefined) throw this.#ended;
    return this.#renewShared(this.tokens);
  }

  /**
   * Revokes the session at the server; later calls fail. An idle session is
   * rotated first (RevokeSession needs a live access token). A failed attempt
   * (UNAVAILABLE) leaves the session as it was: call logout() again.
   */
  async logout(): Promise<void> {
    if (this.#loggedOut) return;
    try {
      const token = await this.accessToken();
      await this.#base.withToken(token).issue.revokeSession({ sessionId: "" });
    } catch (error) {
      // A session the server already ended is as logged out as it gets; anything else is the caller's to retry.
      const reason = (toTesseraClientError(error) as TesseraClientError).reason;
      if (!(error instanceof Error && reason !== undefined && ENDED_REASONS.has(reason))) throw error;
    }
    this.#loggedOut = true;
    this.#ended = new Error("the session was logged out");
  }

  #loggedOut = false;

  #margin(tokens: SessionTokens): number {
    if (this.#options.refreshBeforeMs !== undefined) return this.#options.refreshBeforeMs;
    const lifetime = tokens.expiresAt.getTime() - (tokens === this.#tokens ? this.#issuedAt : Date.now());
    return Math.min(30_000, Math.max(0, lifetime) / 4);
  }

  #issuedAt = Date.now();

  /** Renews unless `seen` is already outdated (another caller rotated meanwhile). */
  #renewShared(seen: SessionTokens): Promise<SessionTokens> {
    if (this.#tokens !== seen) return Promise.resolve(this.#tokens!);
    this.#renewing ??= this.#renew(this.#tokens.refreshToken || undefined).finally(() => (this.#renewing = undefined));
    return this.#renewing;
  }

  async #renew(refreshToken?: string): Promise<SessionTokens> {
    let response: IssueTokenResponse | RefreshResponse;
    try {
      if (refreshToken) {
        const requestedPermissions = "refreshToken" in this.#start ? (this.#start.requestedPermissions ?? []) : [];
        const retry = this.#options.retryRefresh ?? true;
        response = await this.#base.refresh.refresh(
          { refreshToken, requestedPermissions },
          retry ? { retry: true, retryMaxAttempts: 1, retryableStatuses: [Status.UNAVAILABLE], retryBaseDelayMs: 100, retryMaxDelayMs: 1_000 } : { retry: false },
        );
      } else if ("credential" in this.#start) {
        const { credential, requestedPermissions = [], audience = "" } = this.#start;
        response = await this.#base.issue.issueToken({ credential, requestedPermissions, audience });
      } else if ("login" in this.#start) {
        response = await this.#base.issue.issueToken(await this.#start.login());
      } else {
        throw new TypeError("nothing to renew the session with");
      }
    } catch (error) {
      const wrapped = toTesseraClientError(error);
      if (wrapped instanceof TesseraClientError && wrapped.reason && ENDED_REASONS.has(wrapped.reason) && !("login" in this.#start)) this.#ended = wrapped;
      throw wrapped;
    }
    if (refreshToken) this.refreshes++;
    this.#issuedAt = Date.now();
    this.#tokens = tokensOf(response);
    this.#options.onTokens?.(this.#tokens);
    return this.#tokens;
  }

  #middleware(): ClientMiddleware {
    const session = this;
    return async function* sessionAuth(call, options) {
      const send = (token: string) => ({ ...options, metadata: Metadata(options.metadata).set("authorization", `Bearer ${token}`) });
      const token = await session.accessToken();
      if (call.requestStream || call.responseStream) return yield* call.next(call.request, send(token));
      try {
        return yield* call.next(call.request, send(token));
      } catch (error) {
        // Refused as expired (clock skew, a long queue): the call did not run; once more with a fresh token.
        if (!(error instanceof Error && "code" in error && error.code === Status.UNAUTHENTICATED && (toTesseraClientError(error) as TesseraClientError).reason === "TOKEN_EXPIRED")) throw error;
        const current = session.tokens;
        const fresh = current.accessToken === token ? await session.#renewShared(current) : current;
        return yield* call.next(call.request, send(fresh.accessToken));
      }
    };
  }
}

/** Shorthand: `TesseraSession.start(client, start, options)`. */
export function startSession(client: TesseraClient, start: SessionStart, options?: SessionOptions): Promise<TesseraSession> {
  return TesseraSession.start(client, start, options);
}
