// Service keys and assertions as a service would make them (Region System):
// a key pair of one of the accepted kinds, its public half as a JWK or PEM
// to publish, and assertions signed with node:crypto (the SDK's proveMyself
// does the same).
import { generateKeyPairSync, randomBytes, sign, type KeyObject } from "node:crypto";

export type KeyKind = "Ed25519" | "P-256" | "P-384" | "P-521";
const ALG: Record<KeyKind, "EdDSA" | "ES256" | "ES384" | "ES512"> = { Ed25519: "EdDSA", "P-256": "ES256", "P-384": "ES384", "P-521": "ES512" };
const HASH: Record<KeyKind, string | null> = { Ed25519: null, "P-256": "sha256", "P-384": "sha384", "P-521": "sha512" };

export interface ServiceKey {
  kind: KeyKind;
  alg: string;
  privateKey: KeyObject;
  publicJwk: string;
  publicPem: string;
}

export function serviceKey(kind: KeyKind = "Ed25519"): ServiceKey {
  const pair = kind === "Ed25519" ? generateKeyPairSync("ed25519") : generateKeyPairSync("ec", { namedCurve: kind });
  return {
    kind,
    alg: ALG[kind],
    privateKey: pair.privateKey,
    publicJwk: JSON.stringify(pair.publicKey.export({ format: "jwk" })),
    publicPem: pair.publicKey.export({ format: "pem", type: "spki" }).toString(),
  };
}

export interface AssertionInput {
  region: string;
  capability: string;
  registry: string;
  /** regionmeta.expires (NumericDate seconds); an hour ahead by default. */
  expires?: number;
  aud: string | string[];
  lifetimeSeconds?: number;
  iat?: number;
  jti?: string;
  header?: Record<string, unknown>;
  data?: unknown;
}

const b64 = (v: object) => Buffer.from(JSON.stringify(v)).toString("base64url");

export function signAssertion(key: ServiceKey, input: AssertionInput): string {
  const now = Math.floor(Date.now() / 1000);
  const iat = input.iat ?? now;
  const claims = {
    regionmeta: { id: input.region, capability: input.capability, registry: input.registry, expires: input.expires ?? now + 3600 },
    data: input.data ?? {},
    iat,
    exp: iat + (input.lifetimeSeconds ?? 60),
    jti: input.jti ?? randomBytes(16).toString("base64url"),
    aud: input.aud,
  };
  const signingInput = `${b64({ alg: key.alg, typ: "JWT", ...input.header })}.${b64(claims)}`;
  const hash = HASH[key.kind];
  const signature = hash === null ? sign(null, Buffer.from(signingInput), key.privateKey) : sign(hash, Buffer.from(signingInput), { key: key.privateKey, dsaEncoding: "ieee-p1363" });
  return `${signingInput}.${signature.toString("base64url")}`;
}
