// Tokens: what the rest of the code may use. createTokens wires the flows
// (password and remote logins, refresh rotation, verification, the session store) over
// one key store and session cache, and follows the revocation feed.
import type { Logger } from "pino";
import type { Database } from "../db/orm.ts";
import type { TesseraMetrics } from "../observability/metrics.ts";
import { recordRevocation, type RevocationFeed } from "../events/index.ts";
import { AccessTokenSigner, type TokenSettings } from "./access-token-signer.ts";
import { KeyStore } from "./keys.ts";
import { PasswordLogin, type LoginDeps } from "./password-login.ts";
import { RefreshRotation, type RefreshSettings } from "./refresh-rotation.ts";
import { RemoteLogin, type RemoteLoginDeps } from "./remote-login.ts";
import { ServiceExchange, type AssertionChecker } from "./service-exchange.ts";
import { SessionCache, type SessionFallback } from "./session-cache.ts";
import { SessionStore } from "./session-store.ts";
import { TokenVerification } from "./verification.ts";

export type { Principal } from "./principal.ts";
export type { TokenSet, TokenSettings } from "./access-token-signer.ts";
export type { LoginDeps } from "./password-login.ts";
export type { RemoteLoginDeps } from "./remote-login.ts";
export type { AssertedPrincipal, AssertionChecker } from "./service-exchange.ts";
export type { SessionState, SessionFallback } from "./session-cache.ts";
export { electPermissions } from "./password-login.ts";
export { MAX_JWT_LENGTH } from "./jwt.ts";
export { loadOrCreateMasterKey } from "./master-key.ts";
export { issueServiceImpl, refreshServiceImpl, verifyAnyToken, verifyServiceDefinition, verifyServiceImpl, toPrincipalMessage } from "./token.grpc.ts";
export type { KeyStore, PublicJwk } from "./keys.ts";
export type { SessionStore } from "./session-store.ts";
export { RefreshTokenEntity, SessionEntity, SigningKeyEntity } from "./token.entity.ts";

export interface TokensOptions {
  settings: RefreshSettings;
  masterKey: Buffer;
  publishLeadSeconds: number;
  feed: RevocationFeed;
  login: LoginDeps;
  remote: RemoteLoginDeps;
  /** Service assertions (the registry's verifier), and the state of the sessions that are registry capabilities. */
  assertions: AssertionChecker;
  serviceSessions?: SessionFallback;
  serviceTokenTtlSeconds: number;
  /** How long cached session states are trusted without a successful read of the revocation log (PostgreSQL); undefined: always (the embedded database cannot be lost). */
  revocationStaleLimitMs?: number;
  /** Bounds of the verified-token and session caches (entries); defaults when absent. */
  cacheSizes?: { verifiedTokens: number; sessions: number };
  /** Where refresh outcomes are counted. */
  metrics?: Pick<TesseraMetrics, "refresh">;
  log: Logger;
}

export interface Tokens {
  keys: KeyStore;
  sessions: SessionStore;
  login: PasswordLogin;
  /** Minecraft and OpenID Connect logins. */
  remote: RemoteLogin;
  refresh: RefreshRotation;
  verification: TokenVerification;
  /** Token exchange of service assertions, and their verification. */
  exchange: ServiceExchange;
  /** Rotates the signing key whenever the newest is older than `intervalSeconds`, and otherwise reloads the key set (checked every minute); returns the stop function. */
  scheduleKeyRotation(intervalSeconds: number): () => void;
}

export async function createTokens(orm: Database, options: TokensOptions): Promise<Tokens> {
  const { settings, feed, log } = options;
  const keys = new KeyStore({
    masterKey: options.masterKey,
    accessTokenTtlSeconds: settings.accessTokenTtlSeconds,
    publishLeadSeconds: options.publishLeadSeconds,
    onKeyEvent: async (em, kind, kid) => {
      recordRevocation(em, { kind, keyId: kid });
      await em.flush();
    },
  });
  await keys.init(orm.em.fork());
  // Past the stale limit without a successful read of the revocation log, cached session states are not trusted.
  const staleLimitMs = options.revocationStaleLimitMs;
  const cache = new SessionCache(
    options.serviceSessions,
    staleLimitMs === undefined ? undefined : () => Date.now() - feed.lastPollOkAt < staleLimitMs,
    options.cacheSizes?.sessions,
  );
  // A key event must reach this replica's key set: a failed reload is retried with backoff
  // (a retired key must not stay trusted until some later event), and the periodic check
  // below reloads anyway.
  let reloading: Promise<void> | undefined;
  const reloadKeys = (attempt = 0): void => {
    reloading ??= keys
      .reload(orm.em.fork())
      .catch((error: unknown) => {
        log.warn({ err: error, attempt }, "signing keys reload failed; retrying");
        setTimeout(() => reloadKeys(attempt + 1), Math.min(30_000, 500 * 2 ** attempt)).unref();
      })
      .finally(() => (reloading = undefined));
  };
  // Revocations from this replica and the others: drop cached session states; reload keys on key events.
  feed.onEvent((event) => {
    cache.apply(event);
    if (event.kind === "KEY_ADDED" || event.kind === "KEY_RETIRED") reloadKeys();
  });
  const signer = new AccessTokenSigner(keys, settings);
  const sessions = new SessionStore(settings);
  return {
    keys,
    sessions,
    login: new PasswordLogin(signer, sessions, options.login, settings.audience),
    remote: new RemoteLogin(signer, sessions, options.remote, settings.audience),
    refresh: new RefreshRotation(signer, settings, options.masterKey, (outcome) => options.metrics?.refresh(outcome)),
    verification: new TokenVerification(keys, cache, settings, options.cacheSizes?.verifiedTokens),
    exchange: new ServiceExchange(signer, options.assertions, { ...settings, serviceTokenTtlSeconds: options.serviceTokenTtlSeconds }),
    scheduleKeyRotation(intervalSeconds) {
      const timer = setInterval(() => {
        if (keys.newestKeyAgeSeconds() >= intervalSeconds) {
          // Re-checked in the database under a lock: replicas whose schedules fire together make one key.
          keys.rotateIfDue(orm.em.fork(), intervalSeconds).catch((err: unknown) => log.warn({ err }, "scheduled key rotation failed"));
        } else {
          reloadKeys(); // a backstop for a missed key event
        }
      }, 60_000);
      timer.unref();
      return () => clearInterval(timer);
    },
  };
}
export { jwksMaxAgeSeconds, jwksRoute } from "./jwks.http.ts";
