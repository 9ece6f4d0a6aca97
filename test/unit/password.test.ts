import { describe, expect, it } from "vitest";
import { Violations } from "../../src/errors.ts";
import { ARGON2_PARAMS, checkPasswordPolicy, hashPassword, verifyPassword } from "../../src/users/password.ts";

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

describe("password policy (NIST 800-63B)", () => {
  it.each([
    ["1234567", false],
    ["12345678", true],
    ["🔑".repeat(8), true],
    ["x".repeat(128), true],
    ["x".repeat(129), false],
  ])("%j acceptable: %s", (password, ok) => {
    const v = new Violations();
    checkPasswordPolicy(password, "password", v);
    expect(v.empty).toBe(ok);
  });
});
