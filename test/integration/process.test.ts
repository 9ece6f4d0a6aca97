// Tessera as a process, from the sources that `npm start` builds and runs.
import { once } from "node:events";
import { createServer, type AddressInfo } from "node:net";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createChannel, createClient } from "nice-grpc";
import { HealthDefinition } from "nice-grpc-server-health";
import { IssueServiceDefinition } from "@tessera/client";
import { spawnServer } from "../support/process.ts";

const SERVING = 1; // grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING
import { afterAll, describe, expect, inject, it } from "vitest";

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe("the tessera process", () => {
  it("refuses to start on a bad variable, naming it", async () => {
    const { child, output } = spawnServer({ TESSERA_GRPC_ADDR: "not-an-address" });
    const [code] = await once(child, "exit");
    expect(code).toBe(2);
    expect(output()).toContain("TESSERA_GRPC_ADDR");
  });

  it("refuses DATABASE_URL without TESSERA_MASTER_KEY, naming it, before touching the database", async () => {
    const { child, output } = spawnServer({ DATABASE_URL: "postgres://127.0.0.1:1/none" });
    const [code] = await once(child, "exit");
    expect(code).toBe(2);
    expect(output()).toContain("TESSERA_MASTER_KEY");
  });

  it("says in one line that its port is taken, and exits 2", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "tessera-proc-"));
    dirs.push(dataDir);
    cpSync(inject("pgliteTemplate"), join(dataDir, "pg"), { recursive: true });
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const port = (taken.address() as AddressInfo).port;
    try {
      const { child, output } = spawnServer({ TESSERA_GRPC_ADDR: `127.0.0.1:${port}`, TESSERA_HTTP_ADDR: "127.0.0.1:0", TESSERA_DATA_DIR: dataDir, TESSERA_ADMIN_PASSWORD: "process-test-password" });
      const [code] = await once(child, "exit");
      expect(code).toBe(2);
      const lines = output().trim().split("\n").filter((l) => l.includes("already in use"));
      expect(lines).toEqual([`tessera: invalid configuration: TESSERA_GRPC_ADDR 127.0.0.1:${port} is already in use (another Tessera?); choose a free address`]);
      expect(output()).not.toMatch(/\n\s+at /);
    } finally {
      taken.close();
    }
  });

  it("serves health, logs where it listens, and on SIGTERM finishes in-flight calls and exits 0", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "tessera-proc-"));
    dirs.push(dataDir);
    cpSync(inject("pgliteTemplate"), join(dataDir, "pg"), { recursive: true });
    const { child, output } = spawnServer({
      TESSERA_GRPC_ADDR: "127.0.0.1:0",
      TESSERA_HTTP_ADDR: "127.0.0.1:0",
      TESSERA_DATA_DIR: dataDir,
      TESSERA_ADMIN_PASSWORD: "process-test-password",
    });
    try {
      let grpc = "";
      for (let i = 0; i < 300 && !grpc; i++) {
        grpc = /"grpc":"([^"]+)"/.exec(output())?.[1] ?? "";
        if (!grpc) await new Promise((r) => setTimeout(r, 50));
      }
      expect(grpc).toMatch(/^127\.0\.0\.1:\d+$/);
      const channel = createChannel(grpc);
      const health = createClient(HealthDefinition, channel);
      expect((await health.check({ service: "" })).status).toBe(SERVING);
      expect(output()).not.toContain("process-test-password");

      // Calls in flight when SIGTERM arrives are served before the process exits.
      const issue = createClient(IssueServiceDefinition, channel);
      const login = { credential: { $case: "password" as const, value: { tenant: "system", username: "admin", password: "process-test-password" } } };
      let signalled = false;
      const calls = Array.from({ length: 8 }, () => issue.issueToken(login).then((r) => ({ afterSignal: signalled, ok: r.accessToken.length > 0 })));
      await Promise.race(calls);
      child.kill("SIGTERM");
      signalled = true;
      const results = await Promise.all(calls);
      expect(results.every((r) => r.ok)).toBe(true);
      expect(results.filter((r) => r.afterSignal).length).toBeGreaterThan(0);
      const [code] = await once(child, "exit");
      expect(code).toBe(0);
      channel.close();
      expect(output()).toContain("stopped");
    } finally {
      child.kill("SIGKILL");
    }
  });
});
