// Access-token verification: the signature and claims once per token (kept in
// the verified-token cache: immutable facts), then on every call what can
// change: time, the audience asked for, the key's publication, and the
// session's state (revoked, disabled, grants now), from the session cache.
import type { EntityManager } from "@mikro-orm/core";
import { unauthenticated } from "../errors.ts";
import { intersectPatterns } from "../permissions/index.ts";
import { UUID } from "../shared/validation.ts";
import { checkAudienceAndExpiry, parseAccessToken, verifyAccessToken, type AccessClaims } from "./jwt.ts";
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

const VERIFIED_CACHE_MAX = 50_000;

export class TokenVerification {
  readonly #keys: KeyStore;
  readonly #sessions: SessionCache;
  readonly #settings: { issuer: string; audience: string };
  /** Signature-verified tokens (immutable facts); revocation is checked separately on every call. */
  readonly #verified = new Map<string, VerifiedEntry>();

  constructor(keys: KeyStore, sessions: SessionCache, settings: { issuer: string; audience: string }) {
    this.#keys = keys;
    this.#sessions = sessions;
    this.#settings = settings;
  }

  /** Verifies an access token and returns its principal with permissions granted now ∩ elected. */
  async verify(em: EntityManager, token: string, audience = ""): Promise<Principal> {
    const nowSeconds = Math.floor(Date.now() / 1000);
    const expected = { issuer: this.#settings.issuer, audience: audience || this.#settings.audience, nowSeconds };
    let entry = this.#verified.get(token);
    if (!entry) {
      const parsed = parseAccessToken(token);
      const key = this.#keys.cachedPublicKey(parsed.kid) ?? (await this.#keys.publicKey(em, parsed.kid));
      if (!key) throw unauthenticated("TOKEN_INVALID", "token signing key is unknown");
      const claims = verifyAccessToken(parsed, key, expected);
      entry = { claims, kid: parsed.kid };
      if (this.#verified.size >= VERIFIED_CACHE_MAX) this.#verified.clear();
      this.#verified.set(token, entry);
    } else {
      // The signature was checked before; what can change is time, the audience asked for, and the key's publication.
      if (entry.claims.exp <= nowSeconds) this.#verified.delete(token);
      checkAudienceAndExpiry(entry.claims, expected);
      if (!this.#keys.cachedPublicKey(entry.kid)) throw unauthenticated("TOKEN_INVALID", "token signing key is retired");
    }
    const sid = entry.claims.sid;
    let state = UUID.test(sid) ? this.#sessions.peek(sid) : null;
    if (state === undefined) state = await this.#sessions.get(em, sid);
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
