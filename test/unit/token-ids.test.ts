// Two small per-call helpers of the token paths: the jti drawn from a pooled
// CSPRNG buffer (src/tokens/access-token-signer.ts) and the remembered
// routing decision between an access token and a service assertion
// (src/tokens/service-exchange.ts).
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { newJti } from "../../src/tokens/access-token-signer.ts";
import { looksLikeAssertion } from "../../src/tokens/service-exchange.ts";

const segment = (value: unknown) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");

describe("newJti", () => {
  it("gives 12 random bytes as base64url, never the same twice across several refills of its pool", () => {
    const ids = Array.from({ length: 1000 }, () => newJti());
    for (const id of ids) {
      expect(id).toMatch(/^[A-Za-z0-9_-]{16}$/);
      expect(Buffer.from(id, "base64url")).toHaveLength(12);
    }
    expect(new Set(ids).size).toBe(ids.length);
    // Not a counter or a repeated block: the bytes at one position take many values.
    expect(new Set(ids.map((id) => Buffer.from(id, "base64url")[0])).size).toBeGreaterThan(150);
  });
});

describe("looksLikeAssertion", () => {
  const access = `${segment({ alg: "EdDSA", kid: "k1", typ: "at+jwt" })}.${segment({ sub: "u" })}.sig`;
  const assertion = `${segment({ alg: "EdDSA", kid: "cap-key" })}.${segment({ iss: "svc" })}.sig`;
  const typedJwt = `${segment({ alg: "ES512", typ: "JWT" })}.${segment({ iss: "svc" })}.sig`;

  it("tells an access token from an assertion, the same on every call (the decision is remembered per header)", () => {
    for (let i = 0; i < 3; i++) {
      expect(looksLikeAssertion(access)).toBe(false);
      expect(looksLikeAssertion(assertion)).toBe(true);
      expect(looksLikeAssertion(typedJwt)).toBe(true);
    }
  });

  it("refuses what has no JSON object for a header, whether seen before or not", () => {
    for (const token of ["", ".a.b", "no-dot", `${segment("not json")}.a.b`, `${segment("null")}.a.b`, `${segment("7")}.a.b`, `${"A".repeat(2049)}.a.b`]) {
      expect(looksLikeAssertion(token)).toBe(false);
      expect(looksLikeAssertion(token)).toBe(false);
    }
  });

  it("decides a long header (not kept) the same on every call", () => {
    const long = `${segment({ alg: "EdDSA", kid: "k".repeat(400), typ: "at+jwt" })}.x.y`;
    expect(looksLikeAssertion(long)).toBe(false);
    expect(looksLikeAssertion(long)).toBe(false);
    const longAssertion = `${segment({ alg: "EdDSA", kid: "k".repeat(400) })}.x.y`;
    expect(looksLikeAssertion(longAssertion)).toBe(true);
  });

  it("keeps no token alive: 1024 tokens of 64 kB with distinct headers leave the heap as it was", () => {
    // In a process of its own, with a collector it can call: a kept slice of a token keeps the whole token.
    const module = fileURLToPath(new URL("../../src/tokens/service-exchange.ts", import.meta.url));
    const script = `
      const { looksLikeAssertion } = await import(${JSON.stringify(module)});
      const seg = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
      const body = "A".repeat(64 * 1024);
      looksLikeAssertion(seg({ alg: "EdDSA" }) + ".x.y");
      globalThis.gc();
      const before = process.memoryUsage().heapUsed;
      for (let i = 0; i < 1024; i++) looksLikeAssertion(seg({ alg: "EdDSA", kid: "k" + i }) + "." + body + i + ".sig");
      globalThis.gc();
      console.log((process.memoryUsage().heapUsed - before) / 1048576);`;
    const grownMb = Number(execFileSync(process.execPath, ["--expose-gc", "--conditions=tessera-source", "--input-type=module", "-e", script], { encoding: "utf8" }).trim());
    expect(grownMb).toBeLessThan(8); // kept slices: ~64 MB
  });

  it("keeps deciding correctly after its memory is full", () => {
    for (let i = 0; i < 1500; i++) looksLikeAssertion(`${segment({ alg: "EdDSA", kid: `flood-${i}` })}.x.y`);
    expect(looksLikeAssertion(`${segment({ alg: "EdDSA", kid: "late", typ: "at+jwt" })}.x.y`)).toBe(false);
    expect(looksLikeAssertion(`${segment({ alg: "EdDSA", kid: "late" })}.x.y`)).toBe(true);
    expect(looksLikeAssertion(access)).toBe(false);
  });
});
