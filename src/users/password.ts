// Password hashing with argon2id (OWASP: m = 19 MiB, t = 2, p = 1) using
// Node 24's built-in crypto.argon2, which runs on the libuv thread pool and so
// stays off the event loop. Hashes are PHC strings, so parameters can be raised
// later without breaking stored hashes.
import { argon2, randomBytes, timingSafeEqual } from "node:crypto";
import { availableParallelism } from "node:os";
import { TesseraError, type Violations } from "../errors.ts";

export interface Argon2Cost {
  memory: number;
  passes: number;
  parallelism: number;
  tagLength: number;
}

export const ARGON2_PARAMS: Readonly<Argon2Cost> = { memory: 19456, passes: 2, parallelism: 1, tagLength: 32 };
export const DEFAULT_PASSWORD_MIN_LENGTH = 12;
export const PASSWORD_MAX_LENGTH = 128;

function argon2id(password: string, salt: Buffer, params: Argon2Cost): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    argon2("argon2id", { ...params, message: password, nonce: salt }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** One argon2id hash, unbounded: for start-up and benchmarks. Requests go through PasswordHasher. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await argon2id(password, salt, ARGON2_PARAMS);
  const { memory, passes, parallelism } = ARGON2_PARAMS;
  return `$argon2id$v=19$m=${memory},t=${passes},p=${parallelism}$${salt.toString("base64url")}$${hash.toString("base64url")}`;
}

const PHC = /^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$([A-Za-z0-9_-]+)\$([A-Za-z0-9_-]+)$/;

/** One argon2id verification, unbounded: for benchmarks. Requests go through PasswordHasher. */
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

export interface HasherLimits {
  /** Hashes computed at once (default: the core count). */
  concurrency?: number;
  /** Hashes waiting for a slot; beyond it callers get SERVER_BUSY at once. */
  queue?: number;
}

/**
 * Every argon2 computation a request causes goes through here: at most
 * `concurrency` at once (each holds 19 MiB and a core for ~25 ms) behind a
 * short queue. A caller that finds the queue full gets RESOURCE_EXHAUSTED /
 * SERVER_BUSY with a RetryInfo at once, instead of joining a backlog that
 * would make every login wait (one anonymous client used to push an
 * administrator's login from 27 ms to ~480 ms).
 */
/**
 * The cores, but two threads of libuv's pool (UV_THREADPOOL_SIZE, 4 by
 * default) always left free: argon2 runs on that pool, and so do the
 * signatures of access tokens and their verification. A flood of logins
 * must not make every refresh and VerifyToken wait behind it.
 */
export function defaultHashConcurrency(): number {
  const pool = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  return Math.max(1, Math.min(availableParallelism(), pool - 2));
}

export class PasswordHasher {
  readonly concurrency: number;
  readonly queueLimit: number;
  #running = 0;
  readonly #waiting: (() => void)[] = [];
  /** Moving average of one hash's duration, for the RetryInfo estimate. */
  #averageMs = 30;
  #dummy?: Promise<string>;

  constructor(limits: HasherLimits = {}) {
    this.concurrency = limits.concurrency || defaultHashConcurrency();
    this.queueLimit = limits.queue ?? 64;
  }

  hash(password: string): Promise<string> {
    return this.#run(() => hashPassword(password));
  }

  verify(phc: string, password: string): Promise<boolean> {
    return this.#run(() => verifyPassword(phc, password));
  }

  /**
   * Verifies against a hash of a random password, for a user who does not
   * exist: "no such user" costs the same argon2 time (and queue) as "wrong password".
   */
  async verifyNobody(password: string): Promise<false> {
    this.#dummy ??= hashPassword(randomBytes(18).toString("base64url"));
    await this.verify(await this.#dummy, password);
    return false;
  }

  async #run<T>(work: () => Promise<T>): Promise<T> {
    if (this.#running >= this.concurrency) {
      if (this.#waiting.length >= this.queueLimit) {
        const retryAfterMs = Math.ceil(((this.#waiting.length + 1) * this.#averageMs) / this.concurrency);
        throw new TesseraError("RESOURCE_EXHAUSTED", "SERVER_BUSY", "too many password checks in progress; retry shortly", { retryAfterMs });
      }
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    } else {
      this.#running++;
    }
    const started = performance.now();
    try {
      return await work();
    } finally {
      this.#averageMs = this.#averageMs * 0.9 + (performance.now() - started) * 0.1;
      // The slot passes straight to the next waiter (running stays the same).
      const next = this.#waiting.shift();
      if (next) next();
      else this.#running--;
    }
  }
}

export interface PasswordPolicySettings {
  minLength: number;
}

/** NIST's floor: no policy may allow shorter passwords (TESSERA_PASSWORD_MIN_LENGTH is at least this). */
export const PASSWORD_ABSOLUTE_MIN_LENGTH = 8;

let commonPasswords: Promise<ReadonlySet<string>> | undefined;

/**
 * Common and breached passwords, from zxcvbn-ts's dictionary (~49 000
 * passwords from breach corpora; those shorter than any policy allows are
 * dropped). Loaded on first use, not at start.
 */
function commonPasswordSet(): Promise<ReadonlySet<string>> {
  commonPasswords ??= import("@zxcvbn-ts/language-common").then(
    ({ dictionary }) => new Set(dictionary["passwords-common"].filter((p) => p.length >= PASSWORD_ABSOLUTE_MIN_LENGTH)),
  );
  return commonPasswords;
}

/**
 * NIST SP 800-63B-4: a minimum length (default 12), a generous maximum, no
 * composition rules; refuse passwords from breach corpora, repetitions of one
 * character, and the account's own username or e-mail.
 */
export class PasswordPolicy {
  readonly minLength: number;

  constructor(settings: PasswordPolicySettings = { minLength: DEFAULT_PASSWORD_MIN_LENGTH }) {
    this.minLength = settings.minLength;
  }

  /** Adds WEAK_PASSWORD violations for `password` under `field`. */
  async check(password: string, field: string, v: Violations, context: { username?: string; email?: string } = {}): Promise<void> {
    const length = [...password].length;
    if (length < this.minLength) return void v.add(field, `must be at least ${this.minLength} characters`, "WEAK_PASSWORD");
    if (length > PASSWORD_MAX_LENGTH) return void v.add(field, `must be at most ${PASSWORD_MAX_LENGTH} characters`, "WEAK_PASSWORD");
    const folded = password.normalize("NFKC").toLowerCase();
    if (/^(.)\1*$/u.test(folded)) return void v.add(field, "must not repeat a single character", "WEAK_PASSWORD");
    const own = [context.username, context.email, context.email?.split("@")[0]].filter((s): s is string => !!s).map((s) => s.normalize("NFKC").toLowerCase());
    if (own.includes(folded)) return void v.add(field, "must not be the username or e-mail address", "WEAK_PASSWORD");
    if ((await commonPasswordSet()).has(folded)) {
      v.add(field, "is a commonly used password that appears in breach lists; choose another", "WEAK_PASSWORD");
    }
  }
}
