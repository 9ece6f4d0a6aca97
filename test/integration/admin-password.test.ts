// README "Lost the admin password?": npm run reset-admin-password sets a new one on the
// stopped server's embedded database, re-enables the account and ends its sessions.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { createTesseraClient, errorReason } from "@tessera/client";
import { afterAll, describe, expect, it } from "vitest";
import { startServerProcess } from "../support/process.ts";

const dataDir = mkdtempSync(join(tmpdir(), "tessera-reset-"));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

const reset = (env: Record<string, string>) =>
  promisify(execFile)(process.execPath, ["--conditions=tessera-source", "src/admin-password-cli.ts"], {
    env: { PATH: process.env.PATH ?? "", TESSERA_DATA_DIR: dataDir, ...env },
    timeout: 60_000,
  });

async function login(address: string, password: string) {
  const client = createTesseraClient(address, { retry: false });
  try {
    return await client.issue.issueToken({ credential: { $case: "password", value: { tenant: "system", username: "admin", password } }, requestedPermissions: [], audience: "" });
  } finally {
    client.close();
  }
}

describe("npm run reset-admin-password", () => {
  it("replaces a lost generated password, prints the new one once, and ends the old sessions", { timeout: 120_000 }, async () => {
    // First start: a generated password nobody wrote down.
    let server = await startServerProcess({ TESSERA_DATA_DIR: dataDir });
    const generated = /password: (\S+)/.exec(server.output())?.[1];
    expect(generated).toBeTruthy();
    const before = await login(server.grpcAddress, generated!);
    await server.stop();

    const { stdout } = await reset({});
    const fresh = /\(shown once\): (\S+)/.exec(stdout)?.[1];
    expect(fresh).toBeTruthy();
    expect(fresh).not.toBe(generated);

    server = await startServerProcess({ TESSERA_DATA_DIR: dataDir });
    try {
      expect(errorReason(await login(server.grpcAddress, generated!).catch((e: unknown) => e))).toBe("INVALID_CREDENTIALS");
      await expect(login(server.grpcAddress, fresh!)).resolves.toMatchObject({ accessToken: expect.any(String) });
      // The session of the old password is over: its refresh token no longer works.
      const client = createTesseraClient(server.grpcAddress, { retry: false });
      const refused = await client.refresh.refresh({ refreshToken: before.refreshToken, requestedPermissions: [] }).catch((e: unknown) => e);
      client.close();
      expect(errorReason(refused)).toMatch(/REFRESH_TOKEN_INVALID|SESSION_REVOKED/);
    } finally {
      await server.stop();
    }

    // A chosen password instead, from TESSERA_ADMIN_PASSWORD.
    const chosen = await reset({ TESSERA_ADMIN_PASSWORD: "a chosen admin password" });
    expect(chosen.stdout).toContain("set from TESSERA_ADMIN_PASSWORD");
    expect(chosen.stdout).not.toContain("a chosen admin password");
    server = await startServerProcess({ TESSERA_DATA_DIR: dataDir });
    try {
      await expect(login(server.grpcAddress, "a chosen admin password")).resolves.toMatchObject({ accessToken: expect.any(String) });
    } finally {
      await server.stop();
    }
  });
});
