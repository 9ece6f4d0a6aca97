// TokenVerifier: verifies Tessera access tokens locally with the published
// keys (GetJwks), the signature checked by node:crypto (Ed25519) on libuv's
// thread pool, claims checked here, results cached per token until expiry,
// and, when given a RevocationWatcher, logouts and disables refused within
// moments of the server's answer.
import { createPublicKey, verify as verifySignature, type KeyObject } from "node:crypto";
import type { TesseraClient } from "./client.ts";
import type { JsonWebKey as TesseraJwk } from "./gen/tessera/identity/v1/verify_service.ts";
import type { RevocationWatcher } from "./revocations.ts";

/** Why a token was refused by the local verifier. */
export type TokenRefusal =
  | "TOKEN_MISSING"
  | "TOKEN_INVALID"
  | "TOKEN_EXPIRED"
  | "SESSION_REVOKED"
  /** The revocation stream is down beyond its bound and the verifier fails closed. */
  | "REVOCATIONS_UNAVAILABLE"
  /** No signing keys could be fetched. */
  | "KEYS_UNAVAILABLE";

/** A token the local verifier refused; `reason` uses the server's ErrorReason names where they exist. */
export class TokenVerificationError extends Error {
  readonly reason: TokenRefusal;
  constructor(reason: TokenRefusal, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "TokenVerificationError";
    this.reason = reason;
  }
}

/** What a verified access token says. */
export interface VerifiedAccessToken {
  /** The user's UUID, or the service's region id. */
  subject: string;
  kind: "user" | "service";
  tenantId: string;
  sessionId: string;
  /** Elected permission patterns from `scope` (what the token may be used for; grants changed since are seen by VerifyToken only). */
  scope: string[];
  username: string | undefined;
  /** Region System facts of an exchanged service token. */
  region: { id: string; capability: string; registry: string } | undefined;
  issuedAt: Date;
  expiresAt: Date;
  /** Every claim, as signed. */
  claims: Readonly<Record<string, unknown>>;
}

/** Where the signing keys come from: a Tessera client (VerifyService.GetJwks), or a function (e.g. fetching /.well-known/jwks.json). */
export type JwksSource = TesseraClient | (() => Promise<{ keys: Partial<TesseraJwk>[] }>);

export interface TokenVerifierOptions {
  /** Expected `iss` (default "tessera"). */
  issuer?: string;
  /** Expected `aud`: the token must name one of these (default "tessera"). */
  audience?: string | string[];
  /** Accepted clock difference for iat and nbf, in seconds (default 5); exp has none. */
  clockToleranceSeconds?: number;
  /**
   * The key set is refetched when older than this (default 30 s, the
   * server's JWKS max-age: half the key publish lead), so a key that left
   * the server's JWKS (retired, or pulled after a compromise) stops verifying here too.
   */
  jwksMaxAgeMs?: number;
  /** A token naming an unknown key refetches the key set at most this often (default 10 s): garbage kids cannot make it hammer the server. */
  unknownKidCooldownMs?: number;
  /** While the keys cannot be fetched, the last ones keep verifying for at most this long past their maximum age (default 10 min). */
  jwksStaleLimitMs?: number;
  /** Verified tokens remembered (default 10 000); a repeated token costs a map lookup and the expiry and revocation checks. 0 = no cache. */
  cacheSize?: number;
  /** Check signatures on libuv's thread pool (default true): the event loop stays free and verification uses every core. */
  offload?: boolean;
  /** Revocations to enforce (logouts, disabled users and tenants, retired keys); without it a token is trusted until it expires. */
  revocations?: RevocationWatcher;
}

interface Key {
  kid: string;
  key: KeyObject;
}

interface Cached {
  result: VerifiedAccessToken;
  kid: string;
  exp: number;
  /** The ambiguous revocations (their revokedAt) the server settled in this token's favour, and when (ms). */
  confirmed: number[];
  confirmedAt: number;
}

const B64URL = /^[A-Za-z0-9_-]+$/;
/** Longest token accepted (the server's own limit on VerifyToken). */
const MAX_TOKEN_CHARS = 8192;
const JWKS_FETCH_TIMEOUT_MS = 5_000;
/** How long the server's answer about a token issued within moments of a revoke-all is trusted before it is asked again. */
const CONFIRMATION_MS = 5_000;

function decodeJson(part: string, what: string): Record<string, unknown> {
  if (!B64URL.test(part)) throw new TokenVerificationError("TOKEN_INVALID", `malformed token ${what}`);
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
  } catch {
    throw new TokenVerificationError("TOKEN_INVALID", `malformed token ${what}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new TokenVerificationError("TOKEN_INVALID", `malformed token ${what}`);
  return value as Record<string, unknown>;
}

function stringClaim(claims: Record<string, unknown>, name: string): string {
  const value = claims[name];
  if (typeof value !== "string" || value === "") throw new TokenVerificationError("TOKEN_INVALID", `token claim ${name} missing`);
  return value;
}

function numericClaim(claims: Record<string, unknown>, name: string, required: boolean): number | undefined {
  const value = claims[name];
  if (value === undefined && !required) return undefined;
  if (typeof value !== "number" || !Number.isFinite(value)) throw new TokenVerificationError("TOKEN_INVALID", `token claim ${name} missing or not a number`);
  return value;
}

/**
 * Verifies Tessera access tokens (JWT, typ at+jwt, EdDSA) without a call per
 * token: algorithm pinned to EdDSA, issuer, audience, exp, iat and nbf
 * checked, keys from the server's JWKS. Service assertions are not access
 * tokens: verify those with VerifyService.VerifyToken (their jti is used up).
 */
export class TokenVerifier {
  readonly #source: () => Promise<{ keys: Partial<TesseraJwk>[] }>;
  /** Asks the server about a token local facts cannot settle (see RevocationWatcher.check). */
  readonly #remote?: (token: string) => Promise<void>;
  readonly #issuer: string;
  readonly #audiences: ReadonlySet<string>;
  readonly #tolerance: number;
  readonly #maxAgeMs: number;
  readonly #cooldownMs: number;
  readonly #staleLimitMs: number;
  readonly #cacheSize: number;
  readonly #offload: boolean;
  readonly #revocations?: RevocationWatcher;
  #keys = new Map<string, Key>();
  /** Kids withdrawn by a KEY_RETIRED event: never taken back from a fetch (an in-flight one, or a replica that has not reloaded). */
  readonly #retired = new Set<string>();
  /** Bumped by every key event: a fetch that started before it is not used. */
  #generation = 0;
  #fetchedAt = -Infinity;
  /** Whether any fetch of the key set has succeeded (an empty set after one is "unknown key", not "unavailable"). */
  #everFetched = false;
  #attemptedAt = -Infinity;
  #failedAt = -Infinity;
  #inFlight?: Promise<void>;
  readonly #cache = new Map<string, Cached>();

  constructor(source: JwksSource, options: TokenVerifierOptions = {}) {
    this.#source = typeof source === "function" ? source : () => source.verify.getJwks({}, { signal: AbortSignal.timeout(JWKS_FETCH_TIMEOUT_MS) });
    if (typeof source !== "function") {
      this.#remote = async (token) => {
        await source.verify.verifyToken({ token, audience: [...this.#audiences][0] ?? "" }, { signal: AbortSignal.timeout(JWKS_FETCH_TIMEOUT_MS) });
      };
    }
    this.#issuer = options.issuer ?? "tessera";
    const audience = options.audience ?? "tessera";
    this.#audiences = new Set(Array.isArray(audience) ? audience : [audience]);
    this.#tolerance = options.clockToleranceSeconds ?? 5;
    this.#maxAgeMs = options.jwksMaxAgeMs ?? 30_000;
    this.#cooldownMs = options.unknownKidCooldownMs ?? 10_000;
    this.#staleLimitMs = options.jwksStaleLimitMs ?? 600_000;
    this.#cacheSize = options.cacheSize ?? 10_000;
    this.#offload = options.offload ?? true;
    this.#revocations = options.revocations;
    this.#revocations?.onKeysChanged((retiredKid) => {
      this.#generation++;
      if (retiredKid) {
        this.#keys.delete(retiredKid);
        if (this.#retired.size >= 1_000) this.#retired.delete(this.#retired.values().next().value!);
        this.#retired.add(retiredKid);
      }
      // A new or withdrawn key: the next verification fetches the set again.
      this.#fetchedAt = -Infinity;
      this.#attemptedAt = -Infinity;
    });
  }

  /** Verifies `token`, a compact JWT (for an `Authorization` header value, use verifyAuthorization). */
  async verify(token: string): Promise<VerifiedAccessToken> {
    if (typeof token !== "string" || token === "") throw new TokenVerificationError("TOKEN_MISSING", "no token");
    if (token.length > MAX_TOKEN_CHARS) throw new TokenVerificationError("TOKEN_INVALID", "token too long");
    const now = Date.now();
    const hit = this.#cache.get(token);
    if (hit) {
      // A hit needs its key still in a key set that may be used now: otherwise the full path refetches the set.
      if (hit.exp * 1000 > now && this.#keys.has(hit.kid) && this.#setUsable(now)) {
        await this.#checkRevocation(token, hit.result, hit);
        return hit.result;
      }
      if (hit.exp * 1000 <= now) this.#cache.delete(token);
    }
    const first = token.indexOf(".");
    const last = token.lastIndexOf(".");
    if (first <= 0 || last === first || token.indexOf(".", first + 1) !== last || last === token.length - 1) {
      throw new TokenVerificationError("TOKEN_INVALID", "not a compact JWS (three parts)");
    }
    const header = decodeJson(token.slice(0, first), "header");
    if (header.alg !== "EdDSA") throw new TokenVerificationError("TOKEN_INVALID", "token algorithm must be EdDSA");
    if (header.typ !== "at+jwt") throw new TokenVerificationError("TOKEN_INVALID", "not an access token (typ must be at+jwt)");
    if (header.crit !== undefined) throw new TokenVerificationError("TOKEN_INVALID", "unsupported critical header");
    const kid = header.kid;
    if (typeof kid !== "string" || kid === "" || kid.length > 128) throw new TokenVerificationError("TOKEN_INVALID", "token key id missing");
    const claims = decodeJson(token.slice(first + 1, last), "claims");
    const result = Object.freeze(this.#checkClaims(claims, now));
    Object.freeze(result.scope);
    const entry: Cached = { result, kid, exp: result.expiresAt.getTime() / 1000, confirmed: [], confirmedAt: 0 };
    if (this.#revocations?.check(result)?.reason === "SESSION_REVOKED") await this.#checkRevocation(token, result, entry);
    const signaturePart = token.slice(last + 1);
    if (!B64URL.test(signaturePart)) throw new TokenVerificationError("TOKEN_INVALID", "malformed token signature");
    const signature = Buffer.from(signaturePart, "base64url");
    // 64 bytes, spelled canonically (a decoder ignores a last character's spare bits: one token, one spelling).
    if (signature.length !== 64 || signature.toString("base64url") !== signaturePart) throw new TokenVerificationError("TOKEN_INVALID", "bad signature");
    const key = await this.#key(kid);
    const data = Buffer.from(token.slice(0, last), "latin1");
    const valid = this.#offload
      ? await new Promise<boolean>((resolve, reject) => verifySignature(null, data, key.key, signature, (error, ok) => (error ? reject(error) : resolve(ok))))
      : verifySignature(null, data, key.key, signature);
    if (!valid) throw new TokenVerificationError("TOKEN_INVALID", "bad signature");
    // The key may have been withdrawn, or the session revoked, while the signature was being checked.
    if (!this.#keys.has(kid)) throw new TokenVerificationError("TOKEN_INVALID", "signing key withdrawn");
    await this.#checkRevocation(token, result, entry);
    if (this.#cacheSize > 0) {
      if (this.#cache.size >= this.#cacheSize) this.#cache.delete(this.#cache.keys().next().value!);
      this.#cache.set(token, entry);
    }
    return result;
  }

  /** Verifies the value of an `Authorization` header (`Bearer <token>`). */
  verifyAuthorization(header: string | undefined | null): Promise<VerifiedAccessToken> {
    const match = typeof header === "string" ? /^Bearer[ ]+([^ ]+)[ ]*$/i.exec(header) : null;
    if (!match) return Promise.reject(new TokenVerificationError("TOKEN_MISSING", "no Bearer token"));
    return this.verify(match[1]!);
  }

  #checkClaims(claims: Record<string, unknown>, now: number): VerifiedAccessToken {
    if (claims.iss !== this.#issuer) throw new TokenVerificationError("TOKEN_INVALID", "token issuer not accepted");
    const aud = claims.aud;
    const audiences = typeof aud === "string" ? [aud] : Array.isArray(aud) ? aud : [];
    if (!audiences.some((a) => typeof a === "string" && this.#audiences.has(a))) throw new TokenVerificationError("TOKEN_INVALID", "token audience not accepted");
    const exp = numericClaim(claims, "exp", true)!;
    const iat = numericClaim(claims, "iat", true)!;
    const nbf = numericClaim(claims, "nbf", false);
    const seconds = now / 1000;
    // No leeway on exp: a token stops working exactly when it says (as on the server); iat and nbf get the tolerance.
    if (exp <= seconds) throw new TokenVerificationError("TOKEN_EXPIRED", "token expired");
    if (iat - this.#tolerance > seconds || (nbf !== undefined && nbf - this.#tolerance > seconds)) throw new TokenVerificationError("TOKEN_INVALID", "token not valid yet");
    const subject = stringClaim(claims, "sub");
    const tenantId = stringClaim(claims, "tid");
    const sessionId = stringClaim(claims, "sid");
    const scope = typeof claims.scope === "string" && claims.scope !== "" ? claims.scope.split(" ") : [];
    const meta = claims.regionmeta as Record<string, unknown> | undefined;
    const region =
      meta && typeof meta === "object" && typeof meta.id === "string"
        ? { id: meta.id, capability: String(meta.capability ?? ""), registry: String(meta.registry ?? "") }
        : undefined;
    return {
      subject,
      kind: claims.knd === "service" ? "service" : "user",
      tenantId,
      sessionId,
      scope,
      username: typeof claims.preferred_username === "string" ? claims.preferred_username : undefined,
      region,
      issuedAt: new Date(iat * 1000),
      expiresAt: new Date(exp * 1000),
      claims: Object.freeze(claims),
    };
  }


  /** Throws when revocations refuse the token; a token only the server can settle is asked about once (then `entry` remembers the answer). */
  async #checkRevocation(token: string, result: VerifiedAccessToken, entry: Cached): Promise<void> {
    const revocations = this.#revocations;
    if (!revocations) return;
    // A confirmation holds a few seconds only: the replica that answered may not have seen the revocation yet.
    if (entry.confirmed.length && Date.now() - entry.confirmedAt > CONFIRMATION_MS) entry.confirmed = [];
    const outcome = revocations.check(result, entry.confirmed);
    if (!outcome) return;
    if (outcome.reason !== "AMBIGUOUS") throw new TokenVerificationError(outcome.reason, outcome.message);
    if (!this.#remote) throw new TokenVerificationError("SESSION_REVOKED", "issued within moments of a revocation of all its sessions, and no server to ask");
    try {
      await this.#remote(token);
    } catch (error) {
      const reason = (error as { reason?: string }).reason;
      if (reason === "SESSION_REVOKED" || reason === "USER_DISABLED" || reason === "TENANT_DISABLED") throw new TokenVerificationError("SESSION_REVOKED", "revoked (the server says)", { cause: error });
      if (reason === "TOKEN_EXPIRED") throw new TokenVerificationError("TOKEN_EXPIRED", "token expired", { cause: error });
      if (reason) throw new TokenVerificationError("TOKEN_INVALID", `refused by the server: ${reason}`, { cause: error });
      throw new TokenVerificationError("REVOCATIONS_UNAVAILABLE", "the server could not be asked about a token issued within moments of a revocation", { cause: error });
    }
    // Asked after the watcher knew this revocation, so the server's answer already reflects it.
    if (entry.confirmed.length === 0) entry.confirmedAt = Date.now();
    entry.confirmed.push(outcome.revokedAt);
    // Another revocation may be ambiguous too (user and tenant): settle it the same way.
    await this.#checkRevocation(token, result, entry);
  }

  /**
   * Whether the key set in hand may verify now without a fetch first: younger
   * than its maximum age, or (an outage: the last fetch failed within the
   * cooldown) within the stale limit. Past four fifths of the maximum age a
   * refetch starts in the background, so that steady traffic never waits for one.
   */
  #setUsable(now: number): boolean {
    const age = now - this.#fetchedAt;
    const recentlyFailed = now - this.#failedAt < this.#cooldownMs;
    if (age >= this.#maxAgeMs * 0.8 && !this.#inFlight && !recentlyFailed && now - this.#attemptedAt >= Math.min(1_000, this.#cooldownMs)) {
      this.#refresh().catch(() => undefined);
    }
    return age < this.#maxAgeMs || (recentlyFailed && age < this.#maxAgeMs + this.#staleLimitMs);
  }

  /** The key `kid`: from the set in hand, or after a fetch when the set is too old or (rate-limited) lacks it. */
  async #key(kid: string): Promise<Key> {
    const now = Date.now();
    const known = this.#keys.get(kid);
    if (known && this.#setUsable(now)) return known;
    const fresh = now - this.#fetchedAt < this.#maxAgeMs;
    let key = this.#keys.get(kid);
    if (key && fresh) return key;
    const cooledDown = now - this.#attemptedAt >= this.#cooldownMs;
    const recentlyFailed = now - this.#failedAt < this.#cooldownMs;
    const beyondStale = now - this.#fetchedAt >= this.#maxAgeMs + this.#staleLimitMs;
    // Fetch when the set is too old (within the stale limit, retrying a failed fetch at most once
    // per cooldown; beyond it nothing verifies, so every verification may try, one fetch at a time),
    // or when the token names a key we lack (at most once per cooldown).
    if ((!fresh && (!recentlyFailed || beyondStale)) || (!key && cooledDown)) {
      try {
        await this.#refresh();
      } catch (error) {
        key = this.#keys.get(kid);
        // An outage: known keys keep serving up to the stale limit.
        if (key && now - this.#fetchedAt < this.#maxAgeMs + this.#staleLimitMs) return key;
        if (this.#keys.size === 0 || now - this.#fetchedAt >= this.#maxAgeMs + this.#staleLimitMs) {
          throw new TokenVerificationError("KEYS_UNAVAILABLE", "the signing keys cannot be fetched", { cause: error });
        }
      }
      key = this.#keys.get(kid);
    } else if (key && now - this.#fetchedAt >= this.#maxAgeMs + this.#staleLimitMs) {
      throw new TokenVerificationError("KEYS_UNAVAILABLE", "the signing keys are too old and cannot be refetched");
    }
    if (!key && !this.#everFetched) throw new TokenVerificationError("KEYS_UNAVAILABLE", "no signing keys fetched yet");
    if (!key) throw new TokenVerificationError("TOKEN_INVALID", "unknown signing key");
    return key;
  }

  /** One fetch at a time; the new set replaces the old one (a key that left the server's JWKS no longer verifies). */
  #refresh(): Promise<void> {
    this.#inFlight ??= (async () => {
      this.#attemptedAt = Date.now();
      const generation = this.#generation;
      try {
        const { keys } = await this.#source();
        // A key event came while this fetch was on its way: its answer may predate it; keep the set in hand
        // (the event already removed a withdrawn key) and let the next verification fetch again.
        if (generation !== this.#generation) return;
        const next = new Map<string, Key>();
        for (const jwk of keys) {
          if (jwk.kty !== "OKP" || jwk.crv !== "Ed25519" || !jwk.kid || !jwk.x || (jwk.alg && jwk.alg !== "EdDSA") || (jwk.use && jwk.use !== "sig")) continue;
          if (this.#retired.has(jwk.kid)) continue;
          try {
            next.set(jwk.kid, { kid: jwk.kid, key: createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: jwk.x }, format: "jwk" }) });
          } catch {
            // A key this runtime cannot read verifies nothing.
          }
        }
        this.#keys = next;
        this.#fetchedAt = Date.now();
        this.#everFetched = true;
      } catch (error) {
        this.#failedAt = Date.now();
        throw error;
      }
    })().finally(() => (this.#inFlight = undefined));
    return this.#inFlight;
  }
}
