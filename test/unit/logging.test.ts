import { describe, expect, it } from "vitest";
import { safeErrorSerializer } from "../../src/logging.ts";

describe("the error serializer", () => {
  it("keeps what explains a database error and drops the statement, its parameters and value-bearing fields", () => {
    const driver = Object.assign(new Error(`insert into "users" ("email") values ('a@b.example') - duplicate key value violates unique constraint "users_email_key"`), {
      code: "23505",
      constraint: "users_email_key",
      detail: "Key (email_key)=(a@b.example) already exists.",
      query: `insert into "users" ("email") values ($1)`,
      params: ["a@b.example", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"],
    });
    const wrapped = new Error("flush failed", { cause: driver });
    const out = JSON.stringify(safeErrorSerializer(wrapped));
    expect(out).toContain("users_email_key");
    expect(out).toContain("23505");
    expect(out).toContain("duplicate key value");
    expect(out).not.toContain("a@b.example");
    expect(out).not.toContain("argon2id");
    expect(out).not.toMatch(/insert into/i);
  });

  it("logs a thrown non-Error value, or cause, by its type only", () => {
    const out = JSON.stringify(safeErrorSerializer(new Error("outer", { cause: { password: "hunter2-hunter2", query: "select" } })));
    expect(out).not.toContain("hunter2");
    expect(JSON.stringify(safeErrorSerializer({ token: "tsr_secret" }))).not.toContain("tsr_secret");
  });

  it("passes ordinary errors through with message and stack", () => {
    const out = safeErrorSerializer(new TypeError("boom")) as { type: string; message: string; stack: string };
    expect(out).toMatchObject({ type: "TypeError", message: "boom" });
    expect(out.stack).toContain("boom");
  });
});
