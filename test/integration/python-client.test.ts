// The Python package (clients/python) installed as a user would, into a
// virtual environment of Debian's python3 (offline: Debian's grpcio and
// protobuf through --system-site-packages, no build isolation), then used
// against the real server: login, an authenticated call, verify, refresh and
// error reasons read with its helper.
import { execFile, execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADMIN_PASSWORD, startTestServer, type TestServer } from "../support/server.ts";

const run = promisify(execFile);
const PYTHON = "/usr/bin/python3";

/** Why the Python toolchain cannot run here, or undefined when it can. */
function missingPython(): string | undefined {
  if (!existsSync(PYTHON)) return `${PYTHON} is missing`;
  try {
    execFileSync(PYTHON, ["-c", "import grpc, google.protobuf, setuptools, venv"], { stdio: "pipe" });
  } catch (error) {
    return `${PYTHON} lacks grpc, protobuf, setuptools or venv (${String((error as { stderr?: Buffer }).stderr ?? error).trim()})`;
  }
  return undefined;
}

const missing = missingPython();
// CI installs these (.ci/run): there a missing toolchain is a failure, not a skip.
if (missing && process.env.CI) throw new Error(`python client test cannot run in CI: ${missing}`);
if (missing) console.warn(`skipping the Python client test: ${missing} (apt-get install python3-grpcio python3-protobuf python3-venv python3-setuptools python3-wheel)`);

describe.skipIf(missing !== undefined)("Python client (clients/python)", () => {
  let server: TestServer;
  let dir: string;
  let python: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "tessera-python-"));
    // Build from a copy: pip builds in the source tree (build/, *.egg-info).
    const source = join(dir, "tessera-client");
    cpSync("clients/python", source, { recursive: true, filter: (path) => !/(^|\/)(build|__pycache__|[^/]*\.egg-info)$/.test(path) });
    await run(PYTHON, ["-m", "venv", "--system-site-packages", join(dir, "venv")]);
    python = join(dir, "venv/bin/python");
    await run(python, ["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-index", "--no-build-isolation", source]);
    // Strict rotation, so that presenting a used refresh token again shows an error reason.
    server = await startTestServer({ TESSERA_REFRESH_GRACE: "0" });
  });
  afterAll(async () => {
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("logs in, calls with the token, verifies, refreshes and reads error reasons", async () => {
    const { stdout } = await run(python, ["test/support/python-client-check.py", server.address], {
      env: { ...process.env, TESSERA_PASSWORD: ADMIN_PASSWORD },
    });
    const seen = JSON.parse(stdout);
    expect(seen.tenants).toContain("system");
    expect(seen.principal).toEqual({ username: "admin", tenant: "system", session: seen.session });
    expect(seen.refreshed).toEqual({ session: seen.session, rotated: true });
    const failure = (code: string, reason: string) => ({ code, reason, domain: "tessera.identity.v1" });
    expect(seen.wrongPassword).toEqual(failure("UNAUTHENTICATED", "INVALID_CREDENTIALS"));
    expect(seen.reusedRefreshToken).toEqual(failure("UNAUTHENTICATED", "REFRESH_TOKEN_INVALID"));
    expect(seen.noToken).toEqual(failure("UNAUTHENTICATED", "TOKEN_MISSING"));
  });
});
