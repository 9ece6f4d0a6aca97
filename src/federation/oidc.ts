// Verification of ID tokens from OpenID Connect issuers a tenant trusts
// (OpenID Connect Core 1.0 §3.1.3.7): the issuer's discovery document names
// its JWKS; the signature is checked with an asymmetric key of that set, and
// iss, aud, azp, exp, iat and nonce against the tenant's configuration.
// Discovery documents and key sets are cached; an unknown `kid` refetches the
// key set at most once per cooldown (jose's createRemoteJWKSet), and an
// issuer that failed to answer is not asked again for a few seconds.
import { createRemoteJWKSet, customFetch, errors as joseErrors, jwtVerify, type JWTPayload } from "jose";
import { TesseraError } from "../errors.ts";
import { remoteLoginFailed } from "./minecraft.ts";
import { upstreamUnavailable, type RemoteHttp } from "./remote-http.ts";

/** A tenant's trust in one issuer (Tenant.oidc_issuers). */
export interface OidcIssuerConfig {
  issuer: string;
  clientId: string;
  allowedAudiences: string[];
  /** The claim naming the user; `preferred_username` when empty. */
  usernameClaim: string;
  defaultGroupIds: string[];
}

/** What a verified ID token says about its user. */
export interface OidcIdentity {
  issuer: string;
  subject: string;
  /** The mapped claim's value, or `sub` when the token lacks it. */
  name: string;
  /** The token's `exp` (plus the clock tolerance): until when it must be remembered as used. */
  expiresAt: Date;
  /** The token's `jti`, when it has one. */
  jti?: string;
}

export interface OidcSettings {
  /** How long a discovery document and a key set are used before they are fetched again. */
  cacheSeconds: number;
  /** Lets issuers on loopback addresses be http:// (tests, local development). */
  allowHttpLoopback: boolean;
  /** After a key-set fetch, an unknown `kid` refetches the set only once this long has passed. */
  refetchCooldownMs: number;
  /** Tolerated clock difference for exp and iat. */
  clockToleranceSeconds: number;
  /** Oldest `iat` accepted. */
  maxTokenAgeSeconds: number;
}

/** Signature algorithms accepted in ID tokens: asymmetric only (no `none`, no HMAC with a shared secret). */
const ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519"];
const RETRY_FAILED_ISSUER_MS = 5000;
const MAX_CACHED_ISSUERS = 1000;

interface IssuerEntry {
  jwks?: ReturnType<typeof createRemoteJWKSet>;
  fetchedAt: number;
  failedUntil: number;
  pending?: Promise<ReturnType<typeof createRemoteJWKSet>>;
}

/** Checks an issuer URL as a tenant configures it; returns a problem, or undefined. */
export function issuerUrlProblem(raw: string, allowHttpLoopback: boolean): string | undefined {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return "must be an https URL";
  }
  if (url.username || url.password || url.search || url.hash) return "must be an https URL without credentials, query or fragment";
  if (url.href.replace(/\/$/, "") !== raw.replace(/\/$/, "")) return "must be written in its normal form (lower-case scheme and host)";
  if (url.protocol === "https:") return undefined;
  if (url.protocol === "http:" && allowHttpLoopback && isLoopback(url.hostname)) return undefined;
  return allowHttpLoopback ? "must be an https URL (http only for loopback hosts)" : "must be an https URL";
}

function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}

export class OidcVerifier {
  readonly #http: RemoteHttp;
  readonly #settings: OidcSettings;
  readonly #issuers = new Map<string, IssuerEntry>();

  constructor(http: RemoteHttp, settings: OidcSettings) {
    this.#http = http;
    this.#settings = settings;
  }

  /**
   * Verifies `idToken` against the tenant's trusted issuers. INVALID_CREDENTIALS
   * for any token that does not verify (or whose issuer the tenant does not
   * trust); UPSTREAM_UNAVAILABLE when the issuer cannot be asked.
   */
  async verify(idToken: string, trusted: readonly OidcIssuerConfig[], nonce: string): Promise<{ identity: OidcIdentity; config: OidcIssuerConfig }> {
    const claimedIssuer = unverifiedJwtPart(idToken, 1).iss;
    const config = trusted.find((c) => c.issuer === claimedIssuer);
    if (!config) throw remoteLoginFailed("the ID token's issuer is not trusted by this tenant");
    const jwks = await this.#keySet(config.issuer);
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(idToken, jwks, {
        issuer: config.issuer,
        algorithms: ALGORITHMS,
        clockTolerance: this.#settings.clockToleranceSeconds,
        requiredClaims: ["iss", "sub", "aud", "exp", "iat"],
        // An ID token is for logging in now, not a long-lived bearer credential.
        maxTokenAge: this.#settings.maxTokenAgeSeconds,
      }));
    } catch (error) {
      if (error instanceof TesseraError) throw error;
      if (error instanceof joseErrors.JWKSTimeout) throw upstreamUnavailable("the OpenID Connect issuer", 1000, error);
      throw remoteLoginFailed(`the ID token does not verify (${error instanceof joseErrors.JOSEError ? error.code : "malformed"})`);
    }
    checkAudience(payload, config);
    // Access tokens and other JWTs of the issuer are not ID tokens.
    if ((typeof payload.typ === "string" && payload.typ !== "ID") || /at\+jwt$/i.test(String(unverifiedJwtPart(idToken, 0).typ))) {
      throw remoteLoginFailed("the token is not an ID token");
    }
    if (typeof payload.sub !== "string" || !payload.sub) throw remoteLoginFailed("the ID token's sub is not a string");
    const now = Math.floor(Date.now() / 1000);
    if (typeof payload.iat !== "number" || payload.iat > now + this.#settings.clockToleranceSeconds) {
      throw remoteLoginFailed("the ID token was issued in the future");
    }
    if (nonce ? payload.nonce !== nonce : payload.nonce !== undefined) {
      throw remoteLoginFailed(nonce ? "the ID token's nonce does not match" : "the ID token carries a nonce; send it");
    }
    const subject = payload.sub!;
    if (subject.length > 255) throw remoteLoginFailed("the ID token's sub is too long");
    const claim = payload[config.usernameClaim || "preferred_username"];
    const name = typeof claim === "string" && claim.trim() ? claim.trim() : subject;
    // Remembered (single use) no longer than the token can be accepted: jose refuses it past iat + maxTokenAge,
    // so a far-off or absurd exp cannot make a record that outlives everything (or is no date at all).
    const until = Math.min(payload.exp as number, (payload.iat as number) + this.#settings.maxTokenAgeSeconds) + this.#settings.clockToleranceSeconds;
    const expiresAt = new Date(until * 1000);
    const jti = typeof payload.jti === "string" && payload.jti.length <= 255 ? payload.jti : undefined;
    return { identity: { issuer: config.issuer, subject, name, expiresAt, ...(jti ? { jti } : {}) }, config };
  }

  async #keySet(issuer: string): Promise<ReturnType<typeof createRemoteJWKSet>> {
    let entry = this.#issuers.get(issuer);
    const now = Date.now();
    if (entry?.jwks && now - entry.fetchedAt < this.#settings.cacheSeconds * 1000) return entry.jwks;
    if (entry && entry.failedUntil > now) throw upstreamUnavailable("the OpenID Connect issuer", entry.failedUntil - now);
    if (!entry) {
      if (this.#issuers.size >= MAX_CACHED_ISSUERS) this.#issuers.clear();
      this.#issuers.set(issuer, (entry = { fetchedAt: 0, failedUntil: 0 }));
    }
    const e = entry;
    e.pending ??= this.#discover(issuer)
      .then((jwks) => {
        e.jwks = jwks;
        e.fetchedAt = Date.now();
        return jwks;
      })
      .catch((error: unknown) => {
        // An unreachable issuer is not asked again for a moment; a stale key set is better than none.
        if (e.jwks && error instanceof TesseraError && error.reason === "UPSTREAM_UNAVAILABLE") return e.jwks;
        e.failedUntil = Date.now() + RETRY_FAILED_ISSUER_MS;
        throw error;
      })
      .finally(() => (e.pending = undefined));
    return e.pending;
  }

  async #discover(issuer: string): Promise<ReturnType<typeof createRemoteJWKSet>> {
    const response = await this.#http.get(`${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`, "the OpenID Connect issuer");
    if (response.status >= 500 || response.status === 429) throw upstreamUnavailable("the OpenID Connect issuer", 1000);
    let document: { issuer?: unknown; jwks_uri?: unknown };
    try {
      document = response.status === 200 ? (JSON.parse(response.body) as typeof document) : {};
    } catch {
      document = {};
    }
    // The document must be the issuer's own (OpenID Connect Discovery §4.3).
    if (document.issuer !== issuer || typeof document.jwks_uri !== "string" || issuerUrlProblem(document.jwks_uri.split("?")[0]!, this.#settings.allowHttpLoopback)) {
      throw remoteLoginFailed("the issuer's discovery document is missing or does not name this issuer and an https jwks_uri");
    }
    return createRemoteJWKSet(new URL(document.jwks_uri), {
      cacheMaxAge: this.#settings.cacheSeconds * 1000,
      cooldownDuration: this.#settings.refetchCooldownMs,
      [customFetch]: this.#http.fetchForJose,
    });
  }
}

/**
 * A compact JWS's header (0) or payload (1) as it claims to be, before any
 * verification: only to choose the issuer and key the throttle. Empty when
 * it is not a JSON object.
 */
export function unverifiedJwtPart(token: string, part: 0 | 1): Record<string, unknown> {
  const segment = token.split(".", 2)[part];
  if (!segment || segment.length > 16384) return {};
  try {
    const value: unknown = JSON.parse(Buffer.from(segment, "base64url").toString("utf8"));
    return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** aud must contain the client id and nothing the tenant did not allow; with several audiences, azp must be the client id. */
function checkAudience(payload: JWTPayload, config: OidcIssuerConfig): void {
  const audiences = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
  const allowed = new Set([config.clientId, ...config.allowedAudiences]);
  if (!audiences.includes(config.clientId) || audiences.some((a) => typeof a !== "string" || !allowed.has(a))) {
    throw remoteLoginFailed("the ID token is not meant for this client (aud)");
  }
  if ((audiences.length > 1 || payload.azp !== undefined) && payload.azp !== config.clientId) {
    throw remoteLoginFailed("the ID token's authorized party (azp) is not this client");
  }
}
