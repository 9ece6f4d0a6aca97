// The Tessera client SDK: typed clients for every service over one channel,
// bearer-token middleware, error reasons, and a local access-token verifier.
//
//   import { createTesseraClient, errorReason } from "tessera/client";
//   const tessera = createTesseraClient({ address: "127.0.0.1:50051" });
//   const { accessToken } = await tessera.issue.issueToken({
//     credential: { $case: "password", value: { tenant: "system", username: "admin", password } },
//   });
//   const admin = tessera.withToken(accessToken);
//   await admin.users.listUsers({});
import { ChannelCredentials, createChannel, createClientFactory, Metadata, type Channel, type ClientMiddleware } from "nice-grpc";
import { ErrorInfo, errorDetailsClientMiddleware, RichClientError } from "nice-grpc-error-details";
import { createLocalJWKSet, jwtVerify, type JWTPayload } from "jose";
import { IssueServiceDefinition } from "../../gen/tessera/identity/v1/issue_service.ts";
import { PermissionServiceDefinition } from "../../gen/tessera/identity/v1/permission_service.ts";
import { RefreshServiceDefinition } from "../../gen/tessera/identity/v1/refresh_service.ts";
import { RegistryServiceDefinition } from "../../gen/tessera/identity/v1/registry_service.ts";
import { TenantServiceDefinition } from "../../gen/tessera/identity/v1/tenant_service.ts";
import { UserServiceDefinition } from "../../gen/tessera/identity/v1/user_service.ts";
import { VerifyServiceDefinition } from "../../gen/tessera/identity/v1/verify_service.ts";

export { ErrorReason } from "../../gen/tessera/identity/v1/error_reason.ts";
export { RichClientError };

/** A static token, or a function returning the current one (e.g. from a refreshing session). */
export type TokenSource = string | (() => string | Promise<string>);

/** Client middleware that sends `authorization: Bearer <token>` on every call. */
export function bearerAuth(token: TokenSource): ClientMiddleware {
  return async function* authorization(call, options) {
    const value = typeof token === "string" ? token : await token();
    const metadata = Metadata(options.metadata).set("authorization", `Bearer ${value}`);
    return yield* call.next(call.request, { ...options, metadata });
  };
}

export interface TesseraClientOptions {
  /** host:port of Tessera's gRPC endpoint. */
  address: string;
  /** TLS (or mTLS) credentials; plaintext when omitted. */
  credentials?: ChannelCredentials;
  /** Bearer token sent on every call. */
  token?: TokenSource;
  /** Reuse an existing channel instead of opening one. */
  channel?: Channel;
}

function buildClients(channel: Channel, token?: TokenSource) {
  let factory = createClientFactory().use(errorDetailsClientMiddleware);
  if (token !== undefined) factory = factory.use(bearerAuth(token));
  return {
    tenants: factory.create(TenantServiceDefinition, channel),
    users: factory.create(UserServiceDefinition, channel),
    permissions: factory.create(PermissionServiceDefinition, channel),
    issue: factory.create(IssueServiceDefinition, channel),
    refresh: factory.create(RefreshServiceDefinition, channel),
    verify: factory.create(VerifyServiceDefinition, channel),
    registry: factory.create(RegistryServiceDefinition, channel),
  };
}

export type TesseraClient = ReturnType<typeof buildClients> & {
  channel: Channel;
  /** The same clients on the same channel, sending `token`. */
  withToken(token: TokenSource): TesseraClient;
  close(): void;
};

export function createTesseraClient(options: TesseraClientOptions): TesseraClient {
  const channel = options.channel ?? createChannel(options.address, options.credentials);
  const make = (token?: TokenSource): TesseraClient => ({
    ...buildClients(channel, token),
    channel,
    withToken: (next) => make(next),
    close: () => channel.close(),
  });
  return make(options.token);
}

/** The ErrorInfo reason of a failed call (e.g. "TOKEN_EXPIRED"), or undefined. */
export function errorReason(error: unknown): string | undefined {
  if (!(error instanceof RichClientError)) return undefined;
  return error.extra.find((d): d is ErrorInfo => d.$type === ErrorInfo.$type)?.reason;
}

export interface VerifiedAccessToken {
  subject: string;
  tenantId: string;
  sessionId: string;
  /** Elected permission patterns from `scope`. */
  scope: string[];
  expiresAt: Date;
  claims: JWTPayload;
}

/** How long a JWKS fetch may take before it counts as failed. */
const JWKS_FETCH_TIMEOUT_MS = 5_000;

export interface TokenVerifierOptions {
  /** Expected `iss` (default "tessera"). */
  issuer?: string;
  /** Expected `aud` (default "tessera"). */
  audience?: string;
  /**
   * The JWKS is refetched when it is older than this (default 60 s, the
   * server's Cache-Control max-age), so keys that left the server's JWKS
   * (retired, or pulled after a compromise) stop verifying here too.
   */
  jwksMaxAgeMs?: number;
  /** An unknown `kid` refetches the JWKS at most this often (default 10 s), so garbage kids cannot make it hammer the server. */
  unknownKidCooldownMs?: number;
  /**
   * While the server cannot be reached, the keys fetched last keep verifying
   * for at most this long past their maximum age (default 10 min); after
   * that, verification fails until a fetch succeeds.
   */
  jwksStaleLimitMs?: number;
}

/**
 * Verifies Tessera access tokens locally with the published keys (GetJwks):
 * EdDSA only, typ at+jwt, issuer and audience checked, exp required. It does
 * not see revocations: use VerifyService.VerifyToken where a logout must take
 * effect at once; local checks suit high-volume paths that accept the access
 * token's short lifetime as the revocation delay.
 */
export class TokenVerifier {
  readonly #client: TesseraClient;
  readonly #issuer: string;
  readonly #audience: string;
  readonly #maxAgeMs: number;
  readonly #cooldownMs: number;
  readonly #staleLimitMs: number;
  #jwks?: ReturnType<typeof createLocalJWKSet>;
  /** When the current key set was fetched, and when a fetch was last tried. */
  #fetchedAt = 0;
  #attemptedAt = 0;
  #failedAt = -Infinity;
  #inFlight?: Promise<ReturnType<typeof createLocalJWKSet>>;

  constructor(client: TesseraClient, options: TokenVerifierOptions = {}) {
    this.#client = client;
    this.#issuer = options.issuer ?? "tessera";
    this.#audience = options.audience ?? "tessera";
    this.#maxAgeMs = options.jwksMaxAgeMs ?? 60_000;
    this.#cooldownMs = options.unknownKidCooldownMs ?? 10_000;
    this.#staleLimitMs = options.jwksStaleLimitMs ?? 600_000;
  }

  /** The key set to verify with: fetched when missing or too old, or (`unknownKid`) when a token names a key it lacks. */
  async #keys(unknownKid: boolean): Promise<ReturnType<typeof createLocalJWKSet>> {
    const now = Date.now();
    const stale = !this.#jwks || now - this.#fetchedAt >= this.#maxAgeMs;
    const cooledDown = now - this.#attemptedAt >= this.#cooldownMs;
    const wanted = unknownKid ? cooledDown || stale : stale;
    if (!wanted) return this.#jwks!;
    // A stale set whose refetch failed moments ago is retried at most once per cooldown,
    // so an outage does not turn every verification into a request to the server.
    if (this.#jwks && !this.#inFlight && now - this.#failedAt < this.#cooldownMs && now - this.#fetchedAt < this.#maxAgeMs + this.#staleLimitMs) return this.#jwks;
    this.#inFlight ??= this.#fetch()
      .catch((error: unknown) => {
        this.#failedAt = Date.now();
        throw error;
      })
      .finally(() => (this.#inFlight = undefined));
    try {
      return await this.#inFlight;
    } catch (error) {
      // The server is unreachable: known keys keep serving up to the stale limit.
      if (this.#jwks && Date.now() - this.#fetchedAt < this.#maxAgeMs + this.#staleLimitMs) return this.#jwks;
      throw error;
    }
  }

  async #fetch(): Promise<ReturnType<typeof createLocalJWKSet>> {
    this.#attemptedAt = Date.now();
    // Bounded: a black-holed server must not hang every verification behind this fetch.
    const { keys } = await this.#client.verify.getJwks({}, { signal: AbortSignal.timeout(JWKS_FETCH_TIMEOUT_MS) });
    // The new set replaces the old one: a key that left the server's JWKS no longer verifies.
    this.#jwks = createLocalJWKSet({ keys: keys.map((k) => ({ ...k })) });
    this.#fetchedAt = Date.now();
    return this.#jwks;
  }

  async verify(token: string): Promise<VerifiedAccessToken> {
    const options = { algorithms: ["EdDSA"], typ: "at+jwt", issuer: this.#issuer, audience: this.#audience, requiredClaims: ["exp", "iat", "sub", "tid", "sid"] };
    let result;
    try {
      result = await jwtVerify(token, await this.#keys(false), options);
    } catch (error) {
      // A key rotated since the JWKS was fetched: refetch (at most once per cooldown) and try again.
      if ((error as { code?: string }).code !== "ERR_JWKS_NO_MATCHING_KEY") throw error;
      result = await jwtVerify(token, await this.#keys(true), options);
    }
    const claims = result.payload;
    return {
      subject: String(claims.sub),
      tenantId: String(claims.tid),
      sessionId: String(claims.sid),
      scope: typeof claims.scope === "string" && claims.scope ? claims.scope.split(" ") : [],
      expiresAt: new Date((claims.exp ?? 0) * 1000),
      claims,
    };
  }
}
