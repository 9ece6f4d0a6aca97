// The buf curl recipes (scripts/recipes/) run as the README prints them, in one
// POSIX shell, against a real server: the README block is the script.
import { execFile } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADMIN_PASSWORD, startTestServer, type TestServer } from "../support/server.ts";

const run = promisify(execFile);
let server: TestServer;

beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server?.close());

/** The README's block of recipe calls: the sh block of "Scripting with buf curl" that logs in. */
function readmeRecipes(): string[] {
  const section = readFileSync("README.md", "utf8").split(/^## Scripting with buf curl$/m)[1]?.split(/^## /m)[0] ?? "";
  const block = [...section.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1]!).find((b) => b.includes("scripts/recipes/login.sh"));
  if (!block) throw new Error("README has no recipe block under 'Scripting with buf curl'");
  return block.split("\n").filter((line) => line.trim() && !line.trimStart().startsWith("#"));
}

/**
 * Runs the lines in one /bin/sh, as a reader would paste them, and returns
 * each line's standard output. A marker line between them splits the output.
 */
async function runLines(lines: string[], env: Record<string, string> = {}): Promise<Map<string, string>> {
  const marker = "@@recipe-step";
  const script = ["set -e", ...lines.flatMap((line) => [`echo ${marker}`, line])].join("\n");
  // Only the variables the recipes document come from the test; a developer's own TESSERA_* must not leak in.
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("TESSERA_") && !name.startsWith("NEW_") && !name.startsWith("MICROSERVICE")));
  const { stdout } = await run("/bin/sh", ["-c", script], {
    env: { ...inherited, TESSERA_ADDR: server.address, TESSERA_PASSWORD: ADMIN_PASSWORD, ...env },
  });
  const outputs = stdout.split(`${marker}\n`).slice(1);
  expect(outputs).toHaveLength(lines.length);
  return new Map(lines.map((line, i) => [line, outputs[i]!]));
}

/** The output of the one line that contains `fragment`. */
function outputOf(outputs: Map<string, string>, fragment: string): string {
  const matches = [...outputs].filter(([line]) => line.includes(fragment));
  expect(matches, `exactly one line runs ${fragment}`).toHaveLength(1);
  return matches[0]![1];
}

/** Consecutive indented JSON documents, as buf curl prints them. */
const documents = (text: string) => text.trim().split(/\n(?=\{)/).map((doc) => JSON.parse(doc));

describe("buf curl recipes", () => {
  it("the README block calls every recipe", () => {
    const block = readmeRecipes().join("\n");
    const recipes = readdirSync("scripts/recipes").filter((f) => f.endsWith(".sh") && f !== "common.sh");
    expect(recipes.length).toBeGreaterThan(0);
    for (const recipe of recipes) expect(block).toContain(`scripts/recipes/${recipe}`);
  });

  it("log in, call, create a tenant and a user, register a microservice, verify, refresh, revoke", { timeout: 180_000 }, async () => {
    const outputs = await runLines(readmeRecipes());

    expect(outputOf(outputs, "login.sh"), "eval takes the tokens, nothing is printed").toBe("");
    const [listed] = documents(outputOf(outputs, "call.sh"));
    expect(listed.tenants.map((t: { name: string }) => t.name)).toEqual(["system"]);

    const [created, user] = documents(outputOf(outputs, "create-tenant.sh"));
    expect(created).toMatchObject({ tenant: { name: "acme" }, admin: { username: "alice" } });
    expect(user.user).toMatchObject({ username: "bob", tenantId: created.tenant.id });
    await expect(server.login("acme", "bob", "bob-password")).resolves.toHaveProperty("accessToken");

    const [registered] = documents(outputOf(outputs, "register-microservice.sh"));
    expect(registered.changed).toBe(true);
    expect(registered.microservice.permissions.map((p: { codename: string }) => p.codename).sort()).toEqual(["game.match.create", "game.profile.retrieve"]);

    const verifyLines = [...outputs].filter(([line]) => line.includes("verify.sh"));
    const [verified] = documents(verifyLines[0]![1]);
    expect(verified.principal).toMatchObject({ username: "admin", tenantName: "system" });

    expect(outputOf(outputs, "refresh.sh")).toBe("");
    expect(documents(outputOf(outputs, "revoke.sh"))).toEqual([{}]);
    // The session was refreshed, then revoked: the refreshed token no longer verifies.
    expect(outputOf(outputs, "error-details.sh").trim().split("\n")).toEqual([
      "unauthenticated: the session is revoked",
      'google.rpc.ErrorInfo {"reason":"SESSION_REVOKED","domain":"tessera.identity.v1"}',
    ]);
  });

  it("error-details.sh decodes every detail of a failure, field violations included", { timeout: 60_000 }, async () => {
    const line = "scripts/recipes/create-tenant.sh 2>&1 >/dev/null | scripts/recipes/error-details.sh";
    const outputs = await runLines(['eval "$(scripts/recipes/login.sh)"', line], { NEW_TENANT: "Not A Name!" });
    const [status, ...details] = outputs.get(line)!.trim().split("\n");
    expect(status).toMatch(/^invalid_argument: /);
    expect(details[0]).toBe('google.rpc.ErrorInfo {"reason":"INVALID_INPUT","domain":"tessera.identity.v1"}');
    expect(details[1]).toMatch(/^google\.rpc\.BadRequest \{"fieldViolations":\[\{"field":"tenant\.name"/);
  });
});
