// Building hostile tokens for attack tests.
import { createHmac, generateKeyPairSync, sign, type KeyObject } from "node:crypto";

const b64 = (value: unknown) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");

export function decodePart(token: string, index: 0 | 1): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split(".")[index]!, "base64url").toString("utf8"));
}

/** Re-signs header + claims with an Ed25519 key (an attacker's, unless given). */
export function signEd25519(header: object, claims: object, key: KeyObject = generateKeyPairSync("ed25519").privateKey): string {
  const input = `${b64(header)}.${b64(claims)}`;
  return `${input}.${sign(null, Buffer.from(input), key).toString("base64url")}`;
}

export function signHs256(header: object, claims: object, secret: Buffer | string): string {
  const input = `${b64(header)}.${b64(claims)}`;
  return `${input}.${createHmac("sha256", secret).update(input).digest("base64url")}`;
}

export function unsigned(header: object, claims: object): string {
  return `${b64(header)}.${b64(claims)}.`;
}
