// Mints access tokens (RFC 9068 claims, signed by the current key) for every
// flow that issues them: password and remote logins, refresh rotation, token
// exchange.
import { randomFillSync, type KeyObject } from "node:crypto";
import { invalidInput } from "../errors.ts";
import { MAX_JWT_LENGTH, signJwt, signJwtOffloaded, type AccessClaims } from "./jwt.ts";
import type { KeyStore } from "./keys.ts";

export interface TokenSettings {
  issuer: string;
  audience: string;
  accessTokenTtlSeconds: number;
  refreshTokenTtlSeconds: number;
  refreshTokenAbsoluteTtlSeconds: number;
}

/** What a login or a refresh returns. */
export interface TokenSet {
  accessToken: string;
  /** The tenant's name (metrics label). */
  tenant: string;
  expiresAt: Date;
  refreshToken: string;
  refreshExpiresAt?: Date;
  sessionId: string;
  /** Elected permission patterns placed in `scope`. */
  granted: string[];
  kind: "user" | "service";
}

export interface AccessTokenSubject {
  sub: string;
  tid: string;
  tenantName: string;
  sid: string;
  elected: string[];
  audience: string;
  kind: "user" | "service";
  username: string;
  /** The subject part of `upn` when it is not `sub` (remote logins: the external id). */
  upnSubject?: string;
  /** A shorter lifetime than the configured one (service tokens end with their capability). */
  ttlSeconds?: number;
  /** Region System facts of an exchanged service token. */
  region?: { id: string; capability: string; registry: string; expiresAt: Date };
}

export interface SignedAccessToken {
  accessToken: string;
  expiresAt: Date;
  tenant: string;
}

const JTI_BYTES = 12;
/** Random bytes for 128 jtis, drawn from the CSPRNG at once (as node's randomUUID caches its entropy): one call per 128 tokens instead of one each. */
const jtiPool = Buffer.alloc(JTI_BYTES * 128);
let jtiOffset = jtiPool.length;

/** A fresh token id: 12 bytes of the CSPRNG, base64url; every byte of the pool is handed out once. */
export function newJti(): string {
  if (jtiOffset === jtiPool.length) {
    randomFillSync(jtiPool);
    jtiOffset = 0;
  }
  const jti = jtiPool.toString("base64url", jtiOffset, jtiOffset + JTI_BYTES);
  jtiOffset += JTI_BYTES;
  return jti;
}

export class AccessTokenSigner {
  readonly #keys: KeyStore;
  readonly #settings: TokenSettings;

  constructor(keys: KeyStore, settings: TokenSettings) {
    this.#keys = keys;
    this.#settings = settings;
  }

  /** Signs on the calling thread (tests, tools); the servers' issuing paths use signOffloaded. */
  sign(c: AccessTokenSubject): SignedAccessToken {
    const { kid, privateKey, claims } = this.#claims(c);
    return this.#checked(signJwt(claims, kid, privateKey), claims, c);
  }

  /** Signs with the Ed25519 signature computed on libuv's thread pool: the event loop serves other calls meanwhile. */
  async signOffloaded(c: AccessTokenSubject): Promise<SignedAccessToken> {
    const { kid, privateKey, claims } = this.#claims(c);
    return this.#checked(await signJwtOffloaded(claims, kid, privateKey), claims, c);
  }

  #claims(c: AccessTokenSubject): { kid: string; privateKey: KeyObject; claims: AccessClaims } {
    const { kid, privateKey } = this.#keys.signer();
    const iat = Math.floor(Date.now() / 1000);
    const exp = iat + Math.min(this.#settings.accessTokenTtlSeconds, c.ttlSeconds ?? Infinity);
    const claims: AccessClaims = {
      iss: this.#settings.issuer,
      sub: c.sub,
      aud: c.audience,
      exp,
      iat,
      jti: newJti(),
      tid: c.tid,
      sid: c.sid,
      scope: c.elected.join(" "),
      upn: `${c.upnSubject ?? c.sub}@${c.tenantName}`,
      knd: c.kind,
      ...(c.username ? { preferred_username: c.username } : {}),
      ...(c.region
        ? { regionmeta: { id: c.region.id, capability: c.region.capability, registry: c.region.registry, expires: Math.floor(c.region.expiresAt.getTime() / 1000) } }
        : {}),
    };
    return { kid, privateKey, claims };
  }

  #checked(accessToken: string, claims: AccessClaims, c: AccessTokenSubject): SignedAccessToken {
    // Verifiers refuse larger tokens unparsed: never issue one that cannot be used.
    if (accessToken.length > MAX_JWT_LENGTH) {
      throw invalidInput([{ field: "requested_permissions", description: `the elected permissions make the access token longer than ${MAX_JWT_LENGTH} characters; elect fewer` }]);
    }
    return { accessToken, expiresAt: new Date(claims.exp * 1000), tenant: c.tenantName };
  }
}
