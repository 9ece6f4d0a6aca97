// Service identity (Region System) for callers: a service's key pair, the
// assertions it signs to prove who it is (the seed's prove_myself), and the
// verification of such assertions against a registry without asking Tessera
// (resolvers for HTTPS, DNS and local-store registries).
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from "node:crypto";
import { readPublicKey, signJws, type SignatureAlgorithm } from "./jws.ts";

/** The key kinds Tessera's registry accepts. */
export type ServiceKeyKind = "Ed25519" | "P-256" | "P-384" | "P-521";

const ALGORITHMS: Record<ServiceKeyKind, SignatureAlgorithm> = { Ed25519: "EdDSA", "P-256": "ES256", "P-384": "ES384", "P-521": "ES512" };

/** A service's key pair: keep `privateKeyPem` secret, publish `publicJwk` (RegistryService.PublishCapability). */
export interface ServiceKey {
  kind: ServiceKeyKind;
  algorithm: SignatureAlgorithm;
  /** PKCS#8 PEM. */
  privateKeyPem: string;
  /** The public JWK (kty, crv, x[, y], kid, alg); `kid` is its RFC 7638 thumbprint, as the registry computes it. */
  publicJwk: Record<string, string>;
  kid: string;
}

/** Makes a key pair for a service (Ed25519 unless another kind is asked for). */
export function generateServiceKey(kind: ServiceKeyKind = "Ed25519"): ServiceKey {
  if (!(kind in ALGORITHMS)) throw new TypeError(`key kind must be one of ${Object.keys(ALGORITHMS).join(", ")}`);
  const pair = kind === "Ed25519" ? generateKeyPairSync("ed25519") : generateKeyPairSync("ec", { namedCurve: kind });
  return serviceKeyOf(pair.privateKey);
}

/** The ServiceKey of a private key (a PEM string or a KeyObject), e.g. one read from a file. */
export function serviceKeyOf(privateKey: string | KeyObject): ServiceKey {
  const key = typeof privateKey === "string" ? createPrivateKey(privateKey) : privateKey;
  const read = readPublicKey(createPublicKey(key).export({ format: "jwk" }) as Record<string, unknown>);
  if ("problem" in read) throw new TypeError(`the private key's public half ${read.problem}`);
  const kind = (Object.keys(ALGORITHMS) as ServiceKeyKind[]).find((k) => ALGORITHMS[k] === read.key.alg)!;
  return {
    kind,
    algorithm: read.key.alg,
    privateKeyPem: key.export({ format: "pem", type: "pkcs8" }).toString(),
    publicJwk: read.key.jwk,
    kid: read.key.kid,
  };
}

export interface ProveMyselfOptions {
  /** The service's private key (PEM, KeyObject or ServiceKey). */
  privateKey: string | KeyObject | ServiceKey;
  /** The service's region id. */
  region: string;
  /** The capability its key was published for. */
  capability: string;
  /** The registry that holds the key: an HTTPS URL, a DNS host or a local store's name, as the verifier's allow-list names it. */
  registry: string;
  /** Who the assertion is for: the receiving service's name, or Tessera's issuer to exchange it for an access token. */
  audience: string | string[];
  /** Lifetime in seconds (default 60; verifiers refuse more than their maximum, 5 min on Tessera by default). */
  lifetimeSeconds?: number;
  /** `regionmeta.expires`: when the registry entry expires, NumericDate seconds (default: the assertion's own expiry). */
  regionExpires?: number;
  /** Application data carried in the `data` claim (default {}). */
  data?: Record<string, unknown>;
}

/**
 * Signs a single-use service assertion (the seed's `prove_myself`): a JWT
 * with `regionmeta` {id, capability, registry, expires}, `iat`, `exp`, a
 * random `jti` and `aud`, signed with the service's key. A verifier uses it
 * up: sign a fresh one per call.
 */
export function proveMyself(options: ProveMyselfOptions): string {
  const source = options.privateKey;
  const key = typeof source === "string" ? createPrivateKey(source) : "privateKeyPem" in source ? createPrivateKey(source.privateKeyPem) : source;
  const { algorithm } = serviceKeyOf(key);
  const lifetime = options.lifetimeSeconds ?? 60;
  if (!Number.isInteger(lifetime) || lifetime <= 0) throw new TypeError("lifetimeSeconds must be a positive whole number");
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    regionmeta: { id: options.region, capability: options.capability, registry: options.registry, expires: options.regionExpires ?? now + lifetime },
    data: options.data ?? {},
    iat: now,
    exp: now + lifetime,
    jti: randomBytes(16).toString("base64url"),
    aud: options.audience,
  };
  return signJws({ alg: algorithm, typ: "JWT" }, claims, key);
}
