// Public keys, signatures and records of the Region System (src/registry/jws.ts, records.ts).
import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { parseJws, readPublicKey, signatureValid, signJws, type VerifyKey } from "../../src/registry/jws.ts";
import { CAPABILITY_RECORD_TYP, RecordError, signRecord, splitTxt, verifyRecord, zoneFile, dnsRecords } from "../../src/registry/records.ts";
import { serviceKey, signAssertion, type KeyKind } from "../support/assertions.ts";

const key = (input: string | Record<string, unknown>): VerifyKey => {
  const read = readPublicKey(input);
  if ("problem" in read) throw new Error(read.problem);
  return read.key;
};

describe("readPublicKey", () => {
  it("computes the RFC 7638 thumbprint (RFC 8037 A.3 test vector)", () => {
    const k = key({ kty: "OKP", crv: "Ed25519", x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" });
    expect(k.kid).toBe("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    expect(k.jwk).toEqual({ crv: "Ed25519", kty: "OKP", x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", kid: k.kid, alg: "EdDSA" });
  });

  it.each([
    ["Ed25519", "EdDSA"],
    ["P-256", "ES256"],
    ["P-384", "ES384"],
    ["P-521", "ES512"],
  ] as [KeyKind, string][])("reads %s keys as JWK and as SPKI PEM alike (%s)", (kind, alg) => {
    const k = serviceKey(kind);
    const fromJwk = key(k.publicJwk);
    const fromPem = key(k.publicPem);
    expect(fromJwk.alg).toBe(alg);
    expect(fromPem.kid).toBe(fromJwk.kid);
    expect(fromPem.jwk).toEqual(fromJwk.jwk);
  });

  it.each([
    ["a private JWK", () => JSON.stringify(generateKeyPairSync("ed25519").privateKey.export({ format: "jwk" }))],
    ["a private PEM", () => generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" }).toString()],
    ["an RSA key", () => generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey.export({ format: "pem", type: "spki" }).toString()],
    ["a secp256k1 key", () => JSON.stringify(generateKeyPairSync("ec", { namedCurve: "secp256k1" }).publicKey.export({ format: "jwk" }))],
    ["an X25519 key", () => generateKeyPairSync("x25519").publicKey.export({ format: "pem", type: "spki" }).toString()],
    ["garbage", () => "{not json"],
    ["a JSON array", () => "[]"],
    ["an octet key", () => JSON.stringify({ kty: "oct", k: "c2VjcmV0" })],
  ])("refuses %s", (_what, make) => {
    expect("problem" in readPublicKey(make())).toBe(true);
  });
});

describe("signatures", () => {
  it.each(["Ed25519", "P-256", "P-384", "P-521"] as KeyKind[])("verify %s assertions only with the key's own algorithm and canonical encoding", (kind) => {
    const k = serviceKey(kind);
    const token = signAssertion(k, { region: "r", capability: "c", registry: "reg.example.com", aud: "x" });
    const parsed = parseJws(token, 8192);
    expect(signatureValid(parsed, key(k.publicJwk))).toBe(true);
    expect(signatureValid(parsed, key(serviceKey(kind).publicJwk))).toBe(false);
    // Another alg in the header than the key's: refused, whatever the signature.
    expect(signatureValid({ ...parsed, header: { ...parsed.header, alg: "none" } }, key(k.publicJwk))).toBe(false);
  });

  it.each(["Ed25519", "P-256"] as KeyKind[])("refuses a non-canonical spelling of a %s signature (spare bits set in the last character)", (kind) => {
    const k = serviceKey(kind);
    const parsed = parseJws(signAssertion(k, { region: "r", capability: "c", registry: "reg.example.com", aud: "x" }), 8192);
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const noncanonical = parsed.signature.slice(0, -1) + alphabet[alphabet.indexOf(parsed.signature.at(-1)!) ^ 1]!;
    expect(Buffer.from(noncanonical, "base64url")).toEqual(Buffer.from(parsed.signature, "base64url"));
    expect(signatureValid({ ...parsed, signature: noncanonical }, key(k.publicJwk))).toBe(false);
  });

  it("refuses key-carrying headers and oversized tokens before anything else", () => {
    const k = serviceKey();
    const withJwk = signJws({ alg: "EdDSA", jwk: { kty: "OKP" } } as never, { a: 1 }, k.privateKey);
    expect(() => parseJws(withJwk, 8192)).toThrow(/jwk/);
    expect(() => parseJws("a".repeat(9000), 8192)).toThrow(/too large/);
    expect(() => parseJws("a.b", 8192)).toThrow(/compact JWS/);
  });
});

describe("records", () => {
  const authority = generateKeyPairSync("ed25519");
  const authorityKey = key(authority.publicKey.export({ format: "jwk" }) as Record<string, unknown>);
  const signer = { kid: authorityKey.kid, privateKey: authority.privateKey };

  it("verify only under a pinned authority and their own typ", () => {
    const jwt = signRecord(CAPABILITY_RECORD_TYP, { active: true, region_id: "r" }, signer);
    expect(verifyRecord(jwt, CAPABILITY_RECORD_TYP, [authorityKey])).toMatchObject({ region_id: "r" });
    expect(() => verifyRecord(jwt, "region+jwt", [authorityKey])).toThrow(RecordError);
    expect(() => verifyRecord(jwt, CAPABILITY_RECORD_TYP, [key(serviceKey().publicJwk)])).toThrow(/authority/);
  });

  it("split into 255-byte TXT strings that join back, in zone-file syntax", () => {
    const value = "x".repeat(700);
    expect(splitTxt(value).map((s) => s.length)).toEqual([255, 255, 190]);
    expect(splitTxt(value).join("")).toBe(value);
    const records = dnsRecords("reg-1.example.com", { regions: [{ id: "svc-a", jwt: "r.r.r" }], capabilities: [{ regionId: "svc-a", name: "read_all", jwt: value }] }, 30);
    expect(records.map((r) => r.name)).toEqual(["reg-1.example.com", "read_all.capability.svc-a.reg-1.example.com"]);
    expect(zoneFile("reg-1.example.com", records, 30)).toContain(`read_all.capability.svc-a.reg-1.example.com. 30 IN TXT "${"x".repeat(255)}" "${"x".repeat(255)}" "${"x".repeat(190)}"`);
  });
});
