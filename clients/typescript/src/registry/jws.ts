// Compact JWS for the Region System (shared by Tessera's server and this SDK): the public keys services sign their
// assertions with (Ed25519, P-256, P-384, P-521, given as a JWK or an SPKI
// PEM block), and the signatures of assertions and of the registry's own
// records. node:crypto directly (about twice as fast as WebCrypto on the
// verify path); every RFC 8725 check: the algorithm is the key's one
// algorithm, no key-carrying headers, canonical signature encoding, a size
// limit before anything is decoded.
import { createHash, createPublicKey, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from "node:crypto";

export type SignatureAlgorithm = "EdDSA" | "ES256" | "ES384" | "ES512";

const CURVES: Record<string, { crv: string; alg: SignatureAlgorithm }> = {
  ed25519: { crv: "Ed25519", alg: "EdDSA" },
  prime256v1: { crv: "P-256", alg: "ES256" },
  secp384r1: { crv: "P-384", alg: "ES384" },
  secp521r1: { crv: "P-521", alg: "ES512" },
};
const HASH: Record<SignatureAlgorithm, string | null> = { EdDSA: null, ES256: "sha256", ES384: "sha384", ES512: "sha512" };
const SIGNATURE_BYTES: Record<SignatureAlgorithm, number> = { EdDSA: 64, ES256: 64, ES384: 96, ES512: 132 };

/** A public key ready to verify, with its published form. */
export interface VerifyKey {
  key: KeyObject;
  alg: SignatureAlgorithm;
  /** RFC 7638 thumbprint, base64url. */
  kid: string;
  /** kty, crv, x[, y], kid, alg. */
  jwk: Record<string, string>;
}

/**
 * Reads a public key given as a JWK JSON object (or object) or an SPKI PEM
 * block; undefined with a reason when it is not one Tessera accepts (a
 * private key, RSA, another curve, garbage).
 */
export function readPublicKey(input: string | Record<string, unknown>): { key: VerifyKey } | { problem: string } {
  let key: KeyObject;
  try {
    if (typeof input === "string" && input.trimStart().startsWith("-----")) {
      if (/PRIVATE KEY/.test(input)) return { problem: "is a private key: publish only the public half" };
      key = createPublicKey({ key: input, format: "pem" });
    } else {
      const jwk = typeof input === "string" ? (JSON.parse(input) as unknown) : input;
      if (!jwk || typeof jwk !== "object" || Array.isArray(jwk)) return { problem: "must be a JWK JSON object or an SPKI PEM block" };
      if ("d" in jwk) return { problem: "is a private key: publish only the public half" };
      key = createPublicKey({ key: jwk as import("node:crypto").JsonWebKey, format: "jwk" });
    }
  } catch {
    return { problem: "is not a readable public key (JWK JSON object or SPKI PEM block)" };
  }
  if (key.type !== "public") return { problem: "is not a public key" };
  const curve = key.asymmetricKeyType === "ed25519" ? "ed25519" : key.asymmetricKeyType === "ec" ? key.asymmetricKeyDetails?.namedCurve : undefined;
  const kind = curve ? CURVES[curve] : undefined;
  if (!kind) return { problem: "must be an Ed25519, P-256, P-384 or P-521 key" };
  const exported = key.export({ format: "jwk" }) as Record<string, string>;
  const members: Record<string, string> = kind.alg === "EdDSA"
    ? { crv: kind.crv, kty: "OKP", x: exported.x! }
    : { crv: kind.crv, kty: "EC", x: exported.x!, y: exported.y! };
  // RFC 7638: the required members in lexicographic order, no whitespace.
  const kid = createHash("sha256").update(JSON.stringify(members)).digest("base64url");
  return { key: { key, alg: kind.alg, kid, jwk: { ...members, kid, alg: kind.alg } } };
}

export interface ParsedJws {
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
  input: string;
  signature: string;
}

const B64URL = /^[A-Za-z0-9_-]+$/;

function segment(part: string, what: string, invalid: (m: string) => Error): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
    if (value && typeof value === "object" && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // fall through
  }
  throw invalid(`${what} is not a JSON object`);
}

/** A JWS that is malformed or not acceptable (the default error of parseJws). */
export class JwsError extends Error {
  override readonly name = "JwsError";
}

const malformed = (message: string) => new JwsError(message);

/** Splits a compact JWS and decodes header and payload (nothing is trusted yet). */
export function parseJws(token: string, maxLength: number, what = "token", invalid: (m: string) => Error = malformed): ParsedJws {
  if (token.length > maxLength) throw invalid(`${what} is too large`);
  const parts = token.split(".");
  if (parts.length !== 3 || !parts.every((part) => B64URL.test(part))) throw invalid(`${what} is not a compact JWS`);
  const [h, payload, signature] = parts as [string, string, string];
  const header = segment(h, `${what} header`, invalid);
  for (const forbidden of ["jku", "jwk", "x5u", "x5c", "crit"]) {
    if (forbidden in header) throw invalid(`${what} header "${forbidden}" is not allowed`);
  }
  return { header, payload: segment(payload, `${what} payload`, invalid), input: `${h}.${payload}`, signature };
}

/** Does `parsed` carry a valid signature by `key` (with the key's own algorithm)? */
export function signatureValid(parsed: ParsedJws, key: Pick<VerifyKey, "key" | "alg">): boolean {
  if (parsed.header.alg !== key.alg) return false;
  const signature = Buffer.from(parsed.signature, "base64url");
  // Canonical spelling only: the decoder ignores a last character's spare bits.
  if (signature.length !== SIGNATURE_BYTES[key.alg] || signature.toString("base64url") !== parsed.signature) return false;
  const data = Buffer.from(parsed.input);
  return key.alg === "EdDSA"
    ? cryptoVerify(null, data, key.key, signature)
    : cryptoVerify(HASH[key.alg], data, { key: key.key, dsaEncoding: "ieee-p1363" }, signature);
}

/** signatureValid with the signature checked on libuv's thread pool (the event loop goes on meanwhile). */
export function signatureValidOffloaded(parsed: ParsedJws, key: Pick<VerifyKey, "key" | "alg">): Promise<boolean> {
  if (parsed.header.alg !== key.alg) return Promise.resolve(false);
  const signature = Buffer.from(parsed.signature, "base64url");
  if (signature.length !== SIGNATURE_BYTES[key.alg] || signature.toString("base64url") !== parsed.signature) return Promise.resolve(false);
  const data = Buffer.from(parsed.input);
  return new Promise((resolve, reject) => {
    const done = (error: Error | null, ok: boolean) => (error ? reject(error) : resolve(ok));
    if (key.alg === "EdDSA") cryptoVerify(null, data, key.key, signature, done);
    else cryptoVerify(HASH[key.alg], data, { key: key.key, dsaEncoding: "ieee-p1363" }, signature, done);
  });
}

const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");

/** Signs claims as a compact JWS with an Ed25519 or EC private key. */
export function signJws(header: Record<string, unknown> & { alg: SignatureAlgorithm }, claims: object, privateKey: KeyObject): string {
  const input = `${b64(header)}.${b64(claims)}`;
  const data = Buffer.from(input);
  const signature = header.alg === "EdDSA"
    ? cryptoSign(null, data, privateKey)
    : cryptoSign(HASH[header.alg], data, { key: privateKey, dsaEncoding: "ieee-p1363" });
  return `${input}.${signature.toString("base64url")}`;
}
