// Password hashing with argon2id (OWASP: m = 19 MiB, t = 2, p = 1) using
// Node 24's built-in crypto.argon2, which runs on the libuv thread pool and so
// stays off the event loop. Hashes are PHC strings, so parameters can be raised
// later without breaking stored hashes.
import { argon2, randomBytes, timingSafeEqual } from "node:crypto";
import type { Violations } from "../errors.ts";

export interface Argon2Cost {
  memory: number;
  passes: number;
  parallelism: number;
  tagLength: number;
}

export const ARGON2_PARAMS: Readonly<Argon2Cost> = { memory: 19456, passes: 2, parallelism: 1, tagLength: 32 };
export const PASSWORD_MIN_LENGTH = 8;
export const PASSWORD_MAX_LENGTH = 128;

function argon2id(password: string, salt: Buffer, params: Argon2Cost): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    argon2("argon2id", { ...params, message: password, nonce: salt }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await argon2id(password, salt, ARGON2_PARAMS);
  const { memory, passes, parallelism } = ARGON2_PARAMS;
  return `$argon2id$v=19$m=${memory},t=${passes},p=${parallelism}$${salt.toString("base64url")}$${hash.toString("base64url")}`;
}

const PHC = /^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$([A-Za-z0-9_-]+)\$([A-Za-z0-9_-]+)$/;

export async function verifyPassword(phc: string, password: string): Promise<boolean> {
  const match = PHC.exec(phc);
  if (!match) return false;
  const expected = Buffer.from(match[5]!, "base64url");
  const actual = await argon2id(password, Buffer.from(match[4]!, "base64url"), {
    memory: Number(match[1]),
    passes: Number(match[2]),
    parallelism: Number(match[3]),
    tagLength: expected.length,
  });
  return timingSafeEqual(actual, expected);
}

/**
 * A hash of a random password, verified when the user does not exist so that
 * "no such user" costs the same argon2 time as "wrong password".
 */
let dummyHash: Promise<string> | undefined;
export function dummyPasswordHash(): Promise<string> {
  dummyHash ??= hashPassword(randomBytes(18).toString("base64url"));
  return dummyHash;
}

/** NIST 800-63B: at least 8 characters, at most a generous maximum, no composition rules. */
export function checkPasswordPolicy(password: string, field: string, violations: Violations): void {
  const length = [...password].length;
  if (length < PASSWORD_MIN_LENGTH) violations.add(field, `must be at least ${PASSWORD_MIN_LENGTH} characters`, "WEAK_PASSWORD");
  else if (length > PASSWORD_MAX_LENGTH) violations.add(field, `must be at most ${PASSWORD_MAX_LENGTH} characters`, "WEAK_PASSWORD");
}
