// Access-token verification: the signature and claims once per token (kept in
// the verified-token cache: immutable facts), then on every call what can
// change: time, the audience asked for, the key's publication, and the
// session's state (revoked, disabled, grants now), from the session cache.
import type { EntityManager } from "@mikro-orm/core";
import { entityManagerOf, type EntityManagerSource } from "../db/entity-manager-source.ts";
import { unauthenticated } from "../errors.ts";
import { intersectPatterns } from "../permissions/index.ts";
import { UUID } from "../shared/validation.ts";
import { checkAudienceAndExpiry, parseAccessToken, verifyAccessTokenOffloaded, type AccessClaims } from "./jwt.ts";
import type { KeyStore } from "./keys.ts";
import type { Principal } from "./principal.ts";
import type { SessionCache, SessionState } from "./session-cache.ts";

interface VerifiedEntry {
  claims: AccessClaims;
  kid: string;
  /** The session state the principal was computed from, and the principal. */
  state?: SessionState | null;
  principal?: Principal;
}

/** Default bound of the verified-token cache (TESSERA_VERIFIED_TOKEN_CACHE): ~2.7 kB of heap per token. */
export const VERIFIED_CACHE_DEFAULT = 2000;

export class TokenVerification {
  readonly #keys: KeyStore;
  readonly #sessions: SessionCache;
  readonly #settings: { issuer: string; audience: string };
  /** Signature-verified tokens (immutable facts); revocation is checked separately on every call. */
  readonly #verified = new Map<string, VerifiedEntry>();
  readonly #max: number;

  /** `cacheSize`: how many verified tokens are kept (oldest out first); 0 = none. */
  constructor(keys: KeyStore, sessions: SessionCache, settings: { issuer: string; audience: string }, cacheSize = VERIFIED_CACHE_DEFAULT) {
    this.#keys = keys;
    this.#sessions = sessions;
    this.#settings = settings;
    this.#max = cacheSize;
  }

  /** How many verified tokens are kept now. */
  get cachedTokens(): number {
    return this.#verified.size;
  }

  /**
   * Keeps a verified token. The map iterates in insertion order, so its front
   * holds the oldest: expired tokens are dropped from there, then the oldest
   * while full (one at a time, so the tokens in use do not all pay a signature
   * check again at the same moment, as a clear() would make them).
   */
  #remember(token: string, entry: VerifiedEntry, nowSeconds: number): void {
    if (this.#max <= 0) return;
    for (const [oldest, kept] of this.#verified) {
      if (this.#verified.size < this.#max && kept.claims.exp > nowSeconds) break;
      this.#verified.delete(oldest);
    }
    this.#verified.set(token, entry);
  }

  /** Verifies an access token and returns its principal with permissions granted now ∩ elected. */
  async verify(em: EntityManagerSource, token: string, audience = ""): Promise<Principal> {
    const nowSeconds = Math.floor(Date.now() / 1000);
    const expected = { issuer: this.#settings.issuer, audience: audience || this.#settings.audience, nowSeconds };
    let entry = this.#verified.get(token);
    if (!entry) {
      const parsed = parseAccessToken(token);
      const key = this.#keys.cachedPublicKey(parsed.kid) ?? (await this.#keys.publicKey(entityManagerOf(em), parsed.kid));
      if (!key) throw unauthenticated("TOKEN_INVALID", "token signing key is unknown");
      // On the thread pool: the event loop serves other calls meanwhile.
      const claims = await verifyAccessTokenOffloaded(parsed, key, expected);
      // The key may have been retired, and the token may have expired, while its signature was being checked.
      if (!this.#keys.cachedPublicKey(parsed.kid)) throw unauthenticated("TOKEN_INVALID", "token signing key is retired");
      checkAudienceAndExpiry(claims, { ...expected, nowSeconds: Math.floor(Date.now() / 1000) });
      entry = { claims, kid: parsed.kid };
      this.#remember(token, entry, nowSeconds);
    } else {
      // The signature was checked before; what can change is time, the audience asked for, and the key's publication.
      if (entry.claims.exp <= nowSeconds) this.#verified.delete(token);
      checkAudienceAndExpiry(entry.claims, expected);
      if (!this.#keys.cachedPublicKey(entry.kid)) throw unauthenticated("TOKEN_INVALID", "token signing key is retired");
    }
    const sid = entry.claims.sid;
    let state = UUID.test(sid) ? this.#sessions.peek(sid) : null;
    if (state === undefined) state = await this.#sessions.get(entityManagerOf(em), sid);
    // The principal is recomputed only when the session's state object changed (a revocation or grant change).
    if (entry.state !== state || !entry.principal) {
      entry.principal = principalFrom(entry.claims, token, checkSessionState(state, entry.claims));
      entry.state = state;
    } else {
      checkSessionState(state, entry.claims);
    }
    return entry.principal;
  }
}

function checkSessionState(state: SessionState | null, claims: AccessClaims): SessionState {
  if (!state || state.tenantId !== claims.tid || state.subject !== claims.sub) {
    throw unauthenticated("SESSION_REVOKED", "the session no longer exists");
  }
  if (state.revoked) throw unauthenticated("SESSION_REVOKED", "the session is revoked");
  if (state.tenantDisabled) throw unauthenticated("TENANT_DISABLED", "the tenant is disabled");
  if (state.userDisabled) throw unauthenticated("USER_DISABLED", "the user is disabled");
  return state;
}

function principalFrom(claims: AccessClaims, token: string, state: SessionState): Principal {
  const elected = claims.scope ? claims.scope.split(" ") : [];
  return {
    kind: state.kind,
    subject: claims.sub,
    tenantId: claims.tid,
    tenantName: state.tenantName,
    sessionId: claims.sid,
    username: state.username,
    upn: claims.upn,
    permissions: intersectPatterns(state.granted, elected),
    elected,
    expiresAt: new Date(claims.exp * 1000),
    audience: Array.isArray(claims.aud) ? claims.aud : [claims.aud],
    token,
    ...(claims.regionmeta ? { region: regionOf(claims.regionmeta) } : {}),
  };
}

function regionOf(meta: NonNullable<AccessClaims["regionmeta"]>): NonNullable<Principal["region"]> {
  return { id: String(meta.id), capability: String(meta.capability), registry: String(meta.registry), expiresAt: new Date(Number(meta.expires) * 1000) };
}
