import { describe, expect, it } from "vitest";
import { Violations } from "../../src/errors.ts";
import { availableParallelism } from "node:os";
import { ARGON2_PARAMS, defaultHashConcurrency, hashPassword, PasswordHasher, PasswordPolicy, verifyPassword } from "../../src/users/password.ts";
import { TesseraError } from "../../src/errors.ts";

describe("password hashing", () => {
  it("uses argon2id with at least the OWASP parameters (19 MiB, 2 passes)", async () => {
    expect(ARGON2_PARAMS.memory).toBeGreaterThanOrEqual(19456);
    expect(ARGON2_PARAMS.passes).toBeGreaterThanOrEqual(2);
    const hash = await hashPassword("a long enough password");
    expect(hash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/);
  });

  it("verifies the right password and rejects a wrong one, salting each hash differently", async () => {
    const [a, b] = await Promise.all([hashPassword("s3cret-passw0rd"), hashPassword("s3cret-passw0rd")]);
    expect(a).not.toBe(b);
    expect(await verifyPassword(a, "s3cret-passw0rd")).toBe(true);
    expect(await verifyPassword(a, "s3cret-passw0rd ")).toBe(false);
    expect(await verifyPassword("not a phc string", "s3cret-passw0rd")).toBe(false);
  });
});

describe("password policy (NIST SP 800-63B-4)", () => {
  const policy = new PasswordPolicy({ minLength: 12 });
  it.each([
    ["12345678901", "must be at least 12 characters"],
    ["a-good-passphrase", undefined],
    ["🔑🔓".repeat(6), undefined],
    ["x".repeat(12), "must not repeat a single character"],
    ["xy".repeat(64), undefined],
    ["xy".repeat(64) + "z", "must be at most 128 characters"],
    // From the breached-password corpus shipped in @zxcvbn-ts/language-common, in any case.
    ["passwordpassword", "is a commonly used password that appears in breach lists; choose another"],
    ["PasswordPassword", "is a commonly used password that appears in breach lists; choose another"],
    ["1qaz2wsx3edc4rfv", "is a commonly used password that appears in breach lists; choose another"],
  ])("%j: %s", async (password, problem) => {
    const v = new Violations();
    await policy.check(password, "password", v);
    expect(v.list.map((x) => x.description)).toEqual(problem ? [problem] : []);
    if (problem) expect(() => v.throwIfAny()).toThrow(expect.objectContaining({ reason: "WEAK_PASSWORD" }));
  });

  it("refuses the account's own username or e-mail as its password", async () => {
    const v = new Violations();
    await policy.check("Martha.Jones-1963", "password", v, { username: "martha.jones-1963" });
    await policy.check("martha.jones@tardis.test", "password", v, { email: "martha.jones@tardis.test" });
    expect(v.list).toHaveLength(2);
  });

  it("honours a configured minimum", async () => {
    const v = new Violations();
    await new PasswordPolicy({ minLength: 20 }).check("only-nineteen-chars", "password", v);
    expect(v.list[0]?.description).toBe("must be at least 20 characters");
  });
});

describe("bounded password hashing", () => {
  it("leaves two threads of libuv's pool free by default (tokens are signed and verified there too)", () => {
    const before = process.env.UV_THREADPOOL_SIZE;
    try {
      delete process.env.UV_THREADPOOL_SIZE;
      expect(defaultHashConcurrency()).toBe(Math.max(1, Math.min(availableParallelism(), 2)));
      process.env.UV_THREADPOOL_SIZE = "8";
      expect(defaultHashConcurrency()).toBe(Math.min(availableParallelism(), 6));
      process.env.UV_THREADPOOL_SIZE = "2";
      expect(defaultHashConcurrency()).toBe(1);
      expect(new PasswordHasher().concurrency).toBe(1);
    } finally {
      if (before === undefined) delete process.env.UV_THREADPOOL_SIZE;
      else process.env.UV_THREADPOOL_SIZE = before;
    }
  });

  it("runs at most `concurrency` hashes at once and refuses beyond the queue with SERVER_BUSY and a retry delay", async () => {
    const hasher = new PasswordHasher({ concurrency: 1, queue: 2 });
    const hash = await hashPassword("a long enough password");
    const calls = Array.from({ length: 5 }, () => hasher.verify(hash, "a long enough password").then((ok) => ok, (error: unknown) => error));
    const outcomes = await Promise.all(calls);
    expect(outcomes.slice(0, 3)).toEqual([true, true, true]);
    for (const refused of outcomes.slice(3)) {
      expect(refused).toBeInstanceOf(TesseraError);
      expect(refused).toMatchObject({ kind: "RESOURCE_EXHAUSTED", reason: "SERVER_BUSY" });
      expect((refused as TesseraError).retryAfterMs).toBeGreaterThan(0);
    }
    // Once the queue drains, the hasher serves again.
    expect(await hasher.verify(hash, "a long enough password")).toBe(true);
  });

  it("costs an unknown user the same argon2 verification as a wrong password", async () => {
    const hasher = new PasswordHasher({ concurrency: 1, queue: 0 });
    expect(await hasher.verifyNobody("whatever password")).toBe(false);
  });
});
