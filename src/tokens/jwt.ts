// Compact JWS for Tessera's own access tokens (EdDSA, typ at+jwt, RFC 9068).
// Signing and verification use node:crypto directly: on the verify hot path
// it is about twice as fast as going through WebCrypto. Every check that
// RFC 8725 asks for is here: pinned algorithm, typ, no key-carrying headers,
// known kid, required exp/iat, size limit.
import { sign as edSign, verify as edVerify, type KeyObject } from "node:crypto";
import { unauthenticated } from "../errors.ts";

export const ACCESS_TOKEN_TYP = "at+jwt";
export const MAX_JWT_LENGTH = 8192;
/** Tolerated clock difference between Tessera replicas and verifiers. */
export const CLOCK_SKEW_SECONDS = 30;
// Expiry gets no leeway: Tessera issues and verifies its own tokens, and a
// logged-out or expired token must stop working exactly when it says.

export interface AccessClaims {
  iss: string;
  sub: string;
  aud: string | string[];
  exp: number;
  iat: number;
  jti: string;
  tid: string;
  sid: string;
  scope: string;
  upn: string;
  /** Principal kind: "user" or "service". */
  knd: "user" | "service";
  /** Username (users) for display; not used for authorization. */
  preferred_username?: string;
  /** Service principals (token exchange): the Region System facts, for routing and audit. */
  regionmeta?: { id: string; capability: string; registry: string; expires: number };
}

const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");

export function signJwt(claims: AccessClaims, kid: string, privateKey: KeyObject): string {
  const input = `${b64({ alg: "EdDSA", kid, typ: ACCESS_TOKEN_TYP })}.${b64(claims)}`;
  return `${input}.${edSign(null, Buffer.from(input), privateKey).toString("base64url")}`;
}

/**
 * signJwt with the Ed25519 signature computed on libuv's thread pool: the
 * event loop goes on serving other calls meanwhile, and a second core, when
 * there is one, signs. What the servers' issuing paths use.
 */
export function signJwtOffloaded(claims: AccessClaims, kid: string, privateKey: KeyObject): Promise<string> {
  const input = `${b64({ alg: "EdDSA", kid, typ: ACCESS_TOKEN_TYP })}.${b64(claims)}`;
  return new Promise((resolve, reject) =>
    edSign(null, Buffer.from(input), privateKey, (error, signature) => (error ? reject(error) : resolve(`${input}.${signature.toString("base64url")}`))),
  );
}

const invalid = (message: string) => unauthenticated("TOKEN_INVALID", message);

function parseSegment(segment: string, what: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(Buffer.from(segment, "base64url").toString("utf8"));
    if (value && typeof value === "object" && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // fall through
  }
  throw invalid(`token ${what} is not a JSON object`);
}

/** A base64url segment of a compact JWS (no padding). */
export const B64URL = /^[A-Za-z0-9_-]+$/;

/** Splits and checks the header; returns the parts and the kid. */
export function parseAccessToken(token: string): { kid: string; input: string; payload: string; signature: string } {
  if (token.length > MAX_JWT_LENGTH) throw invalid("token is too large");
  const parts = token.split(".");
  if (parts.length !== 3 || !parts.every((p) => B64URL.test(p))) throw invalid("token is not a compact JWS");
  const [h, payload, signature] = parts as [string, string, string];
  const header = parseSegment(h, "header");
  if (header.alg !== "EdDSA") throw invalid("token algorithm is not allowed");
  if (header.typ !== ACCESS_TOKEN_TYP) throw invalid("token is not an access token (typ)");
  for (const forbidden of ["jku", "jwk", "x5u", "x5c", "crit"]) {
    if (forbidden in header) throw invalid(`token header "${forbidden}" is not allowed`);
  }
  if (typeof header.kid !== "string" || header.kid.length === 0 || header.kid.length > 64) throw invalid("token has no valid kid");
  return { kid: header.kid, input: `${h}.${payload}`, payload, signature };
}

/** Verifies the signature and the registered claims; returns the claims. */
export function verifyAccessToken(
  parsed: ReturnType<typeof parseAccessToken>,
  publicKey: KeyObject,
  expected: { issuer: string; audience: string; nowSeconds: number },
): AccessClaims {
  if (!edVerify(null, Buffer.from(parsed.input), publicKey, canonicalSignature(parsed))) throw invalid("token signature is invalid");
  return checkClaims(parsed, expected);
}

/**
 * verifyAccessToken with the Ed25519 check on libuv's thread pool (see
 * signJwtOffloaded): VerifyToken's path for a token not verified before.
 */
export async function verifyAccessTokenOffloaded(
  parsed: ReturnType<typeof parseAccessToken>,
  publicKey: KeyObject,
  expected: { issuer: string; audience: string; nowSeconds: number },
): Promise<AccessClaims> {
  const signature = canonicalSignature(parsed);
  const valid = await new Promise<boolean>((resolve, reject) =>
    edVerify(null, Buffer.from(parsed.input), publicKey, signature, (error, ok) => (error ? reject(error) : resolve(ok))),
  );
  if (!valid) throw invalid("token signature is invalid");
  return checkClaims(parsed, expected);
}

/** The signature's 64 bytes, refused unless spelled canonically. */
function canonicalSignature(parsed: ReturnType<typeof parseAccessToken>): Buffer {
  const signature = Buffer.from(parsed.signature, "base64url");
  // The signature must be spelled canonically: 64 bytes' base64url leaves 4 spare bits in its last
  // character, which the decoder ignores; sixteen spellings of one token would all verify.
  if (signature.length !== 64 || signature.toString("base64url") !== parsed.signature) throw invalid("token signature is invalid");
  return signature;
}

function checkClaims(parsed: ReturnType<typeof parseAccessToken>, expected: { issuer: string; audience: string; nowSeconds: number }): AccessClaims {
  const claims = parseSegment(parsed.payload, "payload");
  for (const name of ["exp", "iat"] as const) {
    if (typeof claims[name] !== "number" || !Number.isFinite(claims[name])) throw invalid(`token has no valid ${name}`);
  }
  for (const name of ["iss", "sub", "jti", "tid", "sid", "scope", "knd"] as const) {
    if (typeof claims[name] !== "string") throw invalid(`token has no valid ${name}`);
  }
  if (claims.iss !== expected.issuer) throw invalid("token issuer is not accepted");
  if ((claims.iat as number) > expected.nowSeconds + CLOCK_SKEW_SECONDS) throw invalid("token is issued in the future");
  checkAudienceAndExpiry(claims as Pick<AccessClaims, "aud" | "exp">, expected);
  return claims as unknown as AccessClaims;
}

/**
 * The checks that depend on the caller's audience and on the moment: part of
 * every verification, and all that is repeated for a token whose signature
 * and other claims were verified before (the verified-token cache).
 */
export function checkAudienceAndExpiry(claims: Pick<AccessClaims, "aud" | "exp">, expected: { audience: string; nowSeconds: number }): void {
  const aud: unknown = claims.aud;
  const audiences = typeof aud === "string" ? [aud] : Array.isArray(aud) ? aud : [];
  if (!audiences.includes(expected.audience)) throw invalid("token audience is not accepted");
  if (claims.exp <= expected.nowSeconds) throw unauthenticated("TOKEN_EXPIRED", "token has expired");
}
