// @tessera/client as its users get it: `npm pack` (prepack builds it), the
// tarball installed into a copy of test/consumer in a temporary directory (so
// nothing of this repository is in reach), then typechecked strictly against
// and run with `import` and with `require` under Node 24 and the machine's
// Node 20 against a real Tessera: login, an authenticated call, remote and
// local verification, refresh and an error reason.
import { execFile, execFileSync } from "node:child_process";
import { accessSync, constants, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync, realpathSync, rmSync } from "node:fs";
import { builtinModules } from "node:module";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, relative, sep } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorReason, IssueTokenRequest } from "@tessera/client";
import { ADMIN_PASSWORD, startTestServer, type TestServer } from "../support/server.ts";

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const FIXTURE = join(ROOT, "test/consumer");
const PACKAGE = "@tessera/client";
/** The server's own dependencies: none of them belongs in a client's install. */
const SERVER_ONLY = /^(@mikro-orm\/.*|@electric-sql\/pglite|amqplib|pino|ioredis|undici|jose|pg|rate-limiter-flexible|nice-grpc-server-.*|@zxcvbn-ts\/.*)$/;

/**
 * This environment without npm's and vitest's variables: under `npm test` or
 * npx they include npm_config_local_prefix (this repository), which would
 * point the fixture's `npm install` back here.
 */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^(npm_|vitest|node_options$)/i.test(name)));
}

/** The first `node` on PATH outside any node_modules (the machine's own), if it is Node 20; otherwise why not. */
function machineNode20(): { path: string } | { missing: string } {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (!dir || dir.split(sep).includes("node_modules")) continue;
    const candidate = join(dir, "node");
    try {
      accessSync(candidate, constants.X_OK);
    } catch {
      continue;
    }
    const version = execFileSync(candidate, ["--version"], { encoding: "utf8", env: {} }).trim();
    if (version.startsWith("v20.")) return { path: candidate };
    return { missing: `the first node on PATH outside node_modules, ${candidate}, is ${version}, not Node 20` };
  }
  return { missing: "there is no node on PATH outside node_modules" };
}

const node20 = machineNode20();
// The project's machines (and so CI) come with Node 20 as their own node (/usr/bin/node): there a missing one is a failure, not a skip.
if ("missing" in node20 && process.env.CI) throw new Error(`the client package test needs the machine's Node 20 in CI: ${node20.missing}`);
if ("missing" in node20) console.warn(`skipping the client package's Node 20 cases: ${node20.missing}; the package's engines promise Node >=20.19, so these cases want a Node 20 first on PATH after node_modules/.bin`);

/** The package name of a bare import specifier ("@scope/name/sub" → "@scope/name"). */
function packageOf(specifier: string): string {
  const parts = specifier.split("/");
  return (specifier.startsWith("@") ? parts.slice(0, 2) : parts.slice(0, 1)).join("/");
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name));
}

describe("the packed @tessera/client in a project of its own", () => {
  let server: TestServer;
  let work: string;
  let app: string;
  /** `npm pack --json`'s file list. */
  let packedFiles: string[];
  /** The package.json inside the tarball, as installed. */
  let manifest: Record<string, unknown> & { dependencies?: Record<string, string> };
  let installed: string;
  let admin: { id: string; tenantId: string };

  beforeAll(async () => {
    // realpath: node reports resolved modules by their real path.
    work = realpathSync(mkdtempSync(join(tmpdir(), "tessera-client-package-")));
    app = join(work, "app");
    const packAndInstall = async () => {
      const { stdout } = await run("npm", ["pack", "--workspace", PACKAGE, "--pack-destination", work, "--json"], { cwd: ROOT, env: cleanEnv(), maxBuffer: 64 << 20 });
      const [packed] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
      packedFiles = packed!.files.map((f) => f.path).sort();
      cpSync(FIXTURE, app, { recursive: true, filter: (path) => !path.split(sep).includes("node_modules") });
      await run("npm", ["install", join(work, packed!.filename), "--no-audit", "--no-fund", "--prefer-offline"], { cwd: app, env: cleanEnv(), maxBuffer: 64 << 20 });
      installed = join(app, "node_modules", PACKAGE);
      manifest = JSON.parse(readFileSync(join(installed, "package.json"), "utf8"));
    };
    const startServer = async () => {
      server = await startTestServer();
      const { user } = await server.as(server.adminToken).users.getMe({});
      admin = { id: user!.id, tenantId: user!.tenantId };
    };
    await Promise.all([packAndInstall(), startServer()]);
  }, 300_000);

  afterAll(async () => {
    await server?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("ships package.json, README.md and dist/ only: no sources, tests or tsbuildinfo, and both builds complete", () => {
    expect(packedFiles.filter((path) => !/^(package\.json|README\.md|dist\/.+)$/.test(path))).toEqual([]);
    expect(packedFiles.filter((path) => /\.(m|c)?tsx?$/.test(path) && !/\.d\.(m|c)?ts$/.test(path))).toEqual([]);
    expect(packedFiles.filter((path) => /tsbuildinfo|(^|\/)(src|test|tests|__tests__)\/|\.test\.|\.spec\./.test(path))).toEqual([]);
    expect(packedFiles).toContain("README.md");
    // Every module of one build is in the other, each with its declarations.
    const modules = (format: string) => packedFiles.filter((p) => p.startsWith(`dist/${format}/`) && p.endsWith(".js")).map((p) => p.slice(`dist/${format}/`.length, -".js".length));
    expect(modules("esm").length).toBeGreaterThan(10);
    expect(modules("cjs")).toEqual(modules("esm"));
    for (const format of ["esm", "cjs"]) {
      expect(modules(format).filter((m) => !packedFiles.includes(`dist/${format}/${m}.d.ts`)), `${format} modules without .d.ts`).toEqual([]);
    }
    expect(packedFiles).toContain("dist/cjs/package.json");
    expect(JSON.parse(readFileSync(join(installed, "dist/cjs/package.json"), "utf8"))).toEqual({ type: "commonjs" });
    // Everything package.json points at is in the tarball (tessera-source is this repository's own condition, for its sources).
    const exportsTargets: string[] = [];
    const collect = (value: unknown, condition: string) => {
      if (typeof value === "string") {
        if (condition !== "tessera-source") exportsTargets.push(value);
      } else if (value && typeof value === "object") {
        for (const [key, inner] of Object.entries(value)) collect(inner, key);
      }
    };
    collect(manifest.exports, "");
    const bin = typeof manifest.bin === "string" ? [manifest.bin] : Object.values((manifest.bin ?? {}) as Record<string, string>);
    const targets = [...exportsTargets, manifest.main, manifest.types, ...bin].map((t) => String(t).replace(/^\.\//, ""));
    expect(targets).toEqual(expect.arrayContaining(["dist/esm/index.js", "dist/esm/index.d.ts", "dist/cjs/index.js", "dist/cjs/index.d.ts"]));
    expect(targets.filter((t) => !packedFiles.includes(t)), "package.json targets missing from the tarball").toEqual([]);
  });

  it("depends on what a client needs only, and declares every package its build imports", () => {
    const declared = Object.keys(manifest.dependencies ?? {});
    const shipped = ["dependencies", "peerDependencies", "optionalDependencies"].flatMap((kind) => Object.keys((manifest[kind] ?? {}) as Record<string, string>));
    expect(shipped.filter((name) => SERVER_ONLY.test(name)), "server dependencies in the client package").toEqual([]);
    // The packages the built code imports (comments aside), by name.
    const imported = new Set<string>();
    for (const file of filesUnder(join(installed, "dist")).filter((f) => f.endsWith(".js") || f.endsWith(".d.ts"))) {
      const code = readFileSync(file, "utf8").replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
      for (const [, specifier] of code.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\s*\(\s*|^\s*import\s+)["']([^"'.][^"']*)["']/gm)) imported.add(specifier!);
    }
    const packages = [...imported].filter((s) => !s.startsWith("node:") && !builtinModules.includes(s)).map(packageOf);
    expect(new Set(packages).size).toBeGreaterThan(3);
    expect([...new Set(packages)].filter((name) => name !== PACKAGE && !declared.includes(name)).sort(), "imported but not declared").toEqual([]);
    // @grpc/grpc-js is nice-grpc's transport, declared so that the package, not nice-grpc's range, chooses its version.
    expect(declared.filter((name) => !packages.includes(name) && name !== "@grpc/grpc-js").sort(), "declared but never imported").toEqual([]);
    expect([...imported].filter((s) => builtinModules.includes(s)), "builtins imported without node:").toEqual([]);
  });

  it("is installed outside this repository, with the fixture's tools at the repository's versions", () => {
    expect(relative(ROOT, app).startsWith("..")).toBe(true);
    // No node_modules above the fixture: nothing resolves except through its own install.
    const above: string[] = [];
    for (let dir = dirname(app); dir !== dirname(dir); dir = dirname(dir)) if (existsSync(join(dir, "node_modules"))) above.push(dir);
    expect(above).toEqual([]);
    const root = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
    const fixture = JSON.parse(readFileSync(join(FIXTURE, "package.json"), "utf8"));
    expect(fixture.devDependencies).toEqual({ typescript: root.devDependencies.typescript, "@types/node": root.devDependencies["@types/node"] });
    expect(fixture.dependencies, "the fixture gets the package from the tarball only").toBeUndefined();
    expect(JSON.parse(readFileSync(join(app, "node_modules/typescript/package.json"), "utf8")).version).toBe(root.devDependencies.typescript);
  });

  it("typechecks a strict consumer (tsc --noEmit) against its import and require declarations", async () => {
    const tsc = join(app, "node_modules/typescript/bin/tsc");
    const result = await run(process.execPath, [tsc, "--noEmit", "-p", ".", "--listFiles"], { cwd: app, env: {} }).then(
      ({ stdout }) => ({ code: 0, stdout }),
      (error: { code?: number; stdout?: string; message: string }) => ({ code: error.code, stdout: error.stdout ?? error.message }),
    );
    const lines = result.stdout.trim().split("\n");
    expect(lines.filter((line) => !line.startsWith("/")), "tsc --noEmit in the consumer").toEqual([]);
    expect(result.code).toBe(0);
    // It checked the consumer's files against the package's declarations for each condition.
    expect(lines).toEqual(expect.arrayContaining([join(app, "check.ts"), join(app, "check.cts"), join(installed, "dist/esm/index.d.ts"), join(installed, "dist/cjs/index.d.ts")]));
  }, 120_000);

  it("runs the README's hello.mjs as printed, in the consumer's project", async () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    const block = /`hello\.mjs`[^\n]*\n[^`]*```js\n([\s\S]*?)\n```/.exec(readme)?.[1];
    expect(block, "README has the hello.mjs block under Calling Tessera").toBeTruthy();
    writeFileSync(join(app, "hello.mjs"), `${block}\n`);
    const env = { TESSERA_ADDRESS: server.address, TESSERA_PASSWORD: ADMIN_PASSWORD };
    const { stdout } = await run(process.execPath, ["hello.mjs"], { cwd: app, env, timeout: 60_000 });
    expect(stdout).toMatch(/^hello admin: 1 permission patterns, token valid until \d{4}-\d\d-\d\dT/);
    // A wrong password: the reason on stderr, exit code 1.
    const failed = await run(process.execPath, ["hello.mjs"], { cwd: app, env: { ...env, TESSERA_PASSWORD: "not the password" }, timeout: 60_000 }).catch((e: { code?: number; stderr?: string }) => e);
    expect(failed).toMatchObject({ code: 1, stderr: expect.stringContaining("login failed: INVALID_CREDENTIALS") });
  }, 90_000);

  const runtimes = [
    { name: "Node 24", major: 24, node: () => process.execPath, skip: false },
    { name: "the machine's Node 20", major: 20, node: () => ("path" in node20 ? node20.path : ""), skip: "missing" in node20 },
  ];
  const formats = [
    { script: "esm.mjs", format: "esm", how: "import" },
    { script: "cjs.cjs", format: "cjs", how: "require" },
  ];
  for (const runtime of runtimes) {
    for (const { script, format, how } of formats) {
      it.skipIf(runtime.skip)(`logs in, calls, verifies, refreshes and reads error reasons through ${how} under ${runtime.name}`, async () => {
        const node = runtime.node();
        const env = { TESSERA_ADDRESS: server.address, TESSERA_TENANT: "system", TESSERA_USERNAME: "admin", TESSERA_PASSWORD: ADMIN_PASSWORD };
        // A bare environment: plain node, no NODE_OPTIONS, no proxy variables, nothing of vitest's.
        const { stdout } = await run(node, [script], { cwd: app, env, timeout: 60_000 }).catch((error: { stderr?: string; message: string }) => {
          throw new Error(`${script} under ${node} failed: ${error.stderr || error.message}`);
        });
        const lines = stdout.trim().split("\n");
        expect(lines, "one JSON line").toHaveLength(1);
        const seen = JSON.parse(lines[0]!);
        const entry = join(installed, "dist", format, "index.js");
        const principal = { subject: admin.id, tenantName: "system", username: "admin", sessionId: seen.sessionId };
        const local = { subject: admin.id, kind: "user", tenantId: admin.tenantId, username: "admin", sessionId: seen.sessionId, scope: ["*.*.*"] };
        const message = IssueTokenRequest.fromPartial({ credential: { $case: "password", value: { tenant: "system", username: "admin", password: "x" } }, requestedPermissions: ["a.b.c"] });
        expect(seen).toEqual({
          format,
          node: expect.stringMatching(new RegExp(`^${runtime.major}\\.`)),
          entry: format === "esm" ? pathToFileURL(entry).href : entry,
          me: { id: admin.id, username: "admin", tenantId: admin.tenantId },
          sessionId: expect.stringMatching(/^[0-9a-f-]{36}$/),
          remote: principal,
          local,
          refreshed: { rotated: true, refreshes: 1, sessionId: seen.sessionId, meAgain: admin.id, remote: principal, local },
          badPassword: { reason: "INVALID_CREDENTIALS", isTesseraClientError: true, status: "UNAUTHENTICATED", enumValue: ErrorReason.INVALID_CREDENTIALS },
          message: { roundTrip: true, bytes: IssueTokenRequest.encode(message).finish().length },
          errorReasonEnum: ErrorReason.INVALID_CREDENTIALS,
        });
      }, 90_000);
    }
  }
});
