// TESSERA_WORKERS on PostgreSQL: one command starts a primary and two workers behind the same
// ports (node:cluster). Shown here on the real process: both workers are the primary's children
// and serve; /metrics is the sum over the workers whichever of them answers the scrape; a logout
// served by one worker is refused by the other at once (they are replicas of one database); a
// worker that dies is replaced while the other serves; SIGTERM drains them all and exits 0.
import { readFileSync } from "node:fs";
import { get } from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import { createChannel, createClient, createClientFactory, Metadata, type Channel } from "nice-grpc";
import { errorDetailsClientMiddleware } from "nice-grpc-error-details";
import { HealthDefinition } from "nice-grpc-server-health";
import { errorReason, IssueServiceDefinition, VerifyServiceDefinition } from "@tessera/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServerProcess, type ServerProcess } from "../support/process.ts";
import { ADMIN_PASSWORD, freshPostgresDatabase } from "../support/server.ts";

const databaseUrl = process.env.TEST_DATABASE_URL;

/** Polls `check` until it returns true, for at most `ms`. */
async function within(ms: number, check: () => Promise<boolean> | boolean): Promise<boolean> {
  const until = Date.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > until) return false;
    await sleep(20);
  }
}

const parentOf = (pid: number) => Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")[1]);
const alive = (pid: number) => {
  try {
    readFileSync(`/proc/${pid}/stat`);
    return true;
  } catch {
    return false;
  }
};

/** GET on a connection of its own (no keep-alive: the cluster hands each connection to the next worker). */
function fetchText(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    get({ host: "127.0.0.1", port, path, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    }).on("error", reject);
  });
}

describe.skipIf(!databaseUrl)("TESSERA_WORKERS=2 on PostgreSQL: one primary, two workers on the same ports", () => {
  let db: Awaited<ReturnType<typeof freshPostgresDatabase>>;
  let server: ServerProcess;
  let pids: number[];
  const channels: Channel[] = [];
  /**
   * A connection of its own, which the primary hands to the next worker (grpc-js otherwise
   * shares one connection among the channels to one address).
   */
  const fresh = () => {
    const channel = createChannel(server.grpcAddress, undefined, { "grpc.use_local_subchannel_pool": 1 });
    channels.push(channel);
    return channel;
  };

  beforeAll(async () => {
    db = await freshPostgresDatabase(databaseUrl!);
    server = await startServerProcess({
      DATABASE_URL: db.url,
      TESSERA_MASTER_KEY: "22".repeat(32),
      TESSERA_ADMIN_PASSWORD: ADMIN_PASSWORD,
      TESSERA_WORKERS: "2",
      TESSERA_SHUTDOWN_GRACE: "2s",
    });
    const line = /\{[^\n]*"tessera listening"[^\n]*\}/.exec(server.output())![0];
    ({ pids } = JSON.parse(line) as { pids: number[] });
  }, 120_000);
  afterAll(async () => {
    for (const channel of channels) channel.close();
    if (server?.child.exitCode === null) server.child.kill("SIGKILL");
    await db?.drop();
  });

  it("says it listens once both workers serve; they are the primary's children", () => {
    expect(pids).toHaveLength(2);
    for (const pid of pids) expect(parentOf(pid)).toBe(server.child.pid);
    expect(server.output().match(/"worker listening"/g)).toHaveLength(2);
    // The primary runs no server: it says "tessera listening" once, after the workers.
    expect(server.output().indexOf('"tessera listening"')).toBeGreaterThan(server.output().lastIndexOf('"worker listening"'));
  });

  it("/metrics counts the calls of both workers, whichever worker answers the scrape", async () => {
    // Eight connections, three health checks each: the cluster hands the connections out in turn.
    const calls = 8 * 3;
    for (let c = 0; c < 8; c++) {
      const health = createClient(HealthDefinition, fresh());
      for (let i = 0; i < 3; i++) expect((await health.check({ service: "" })).status).toBe(1);
    }
    /** The handled health checks in an exposition, by the worker label of their series. */
    const handled = (body: string) => {
      const byWorker: Record<string, number> = {};
      for (const line of body.split("\n")) {
        if (!line.startsWith("grpc_server_handled_total{") || !line.includes('grpc_method="Check"') || !line.includes('grpc_code="OK"')) continue;
        const worker = /worker="(\d+)"/.exec(line)?.[1] ?? "none";
        byWorker[worker] = (byWorker[worker] ?? 0) + Number(line.split(" ").pop());
      }
      return byWorker;
    };
    // Four scrapes on four connections: two of them at least reach each worker.
    for (let i = 0; i < 4; i++) {
      const { status, body } = await fetchText(server.httpPort, "/metrics");
      expect(status).toBe(200);
      const counts = handled(body);
      expect(Object.keys(counts).sort(), `scrape ${i}: a series per worker`).toEqual(["1", "2"]);
      expect(counts["1"]! + counts["2"]!, `scrape ${i}`).toBe(calls);
      expect(counts["1"]! * counts["2"]!, "both workers served some").toBeGreaterThan(0);
      expect(body.match(/^tessera_revocation_feed_staleness_seconds\{worker="[12]"\} /gm)).toHaveLength(2);
    }
  });

  it("a logout served by one worker is refused at once by both", async () => {
    const issue = createClient(IssueServiceDefinition, fresh());
    const login = await issue.issueToken({ credential: { $case: "password", value: { tenant: "system", username: "admin", password: ADMIN_PASSWORD } }, requestedPermissions: [] });
    // Four verifiers on four connections (both workers), each having verified (and cached) the session.
    const verifiers = Array.from({ length: 4 }, () => createClientFactory().use(errorDetailsClientMiddleware).create(VerifyServiceDefinition, fresh()));
    for (const verify of verifiers) expect((await verify.verifyToken({ token: login.accessToken, audience: "" })).principal?.subject).toBeTruthy();
    await createClient(IssueServiceDefinition, fresh()).revokeSession({ sessionId: "" }, { metadata: Metadata({ authorization: `Bearer ${login.accessToken}` }) });
    const refused = async () => {
      const reasons = await Promise.all(verifiers.map((v) => v.verifyToken({ token: login.accessToken, audience: "" }).then(() => "OK", (e: unknown) => errorReason(e))));
      return reasons.every((r) => r === "SESSION_REVOKED");
    };
    expect(await within(2_000, refused)).toBe(true);
  });

  it("a worker that dies is replaced while the other serves", async () => {
    const [victim, survivor] = pids as [number, number];
    process.kill(victim, "SIGKILL");
    // Once the primary has seen the exit (a connection handed out before that meets the dead
    // worker's reset, as with any replica that dies), the other worker answers every new connection.
    expect(await within(5_000, () => server.output().includes('"worker exited; starting another"'))).toBe(true);
    for (let i = 0; i < 4; i++) expect((await createClient(HealthDefinition, fresh()).check({ service: "" })).status).toBe(1);
    expect(await within(20_000, () => (server.output().match(/"worker listening"/g) ?? []).length === 3), "a third worker listening").toBe(true);
    expect(server.output()).toMatch(new RegExp(`"pid":${victim},[^\\n]*"signal":"SIGKILL"[^\\n]*"worker exited; starting another"`));
    expect(alive(survivor)).toBe(true);
    for (let i = 0; i < 4; i++) expect((await createClient(HealthDefinition, fresh()).check({ service: "" })).status).toBe(1);
  }, 30_000);

  it("when every worker dies at once, the primary stays and starts them again", async () => {
    const before = (server.output().match(/"worker listening"/g) ?? []).length;
    const workers = readFileSync(`/proc/${server.child.pid}/task/${server.child.pid}/children`, "utf8").trim().split(/\s+/).map(Number);
    expect(workers).toHaveLength(2);
    for (const pid of workers) process.kill(pid, "SIGKILL");
    expect(await within(20_000, () => (server.output().match(/"worker listening"/g) ?? []).length === before + 2), "two workers listening again").toBe(true);
    expect(server.child.exitCode).toBe(null);
    for (let i = 0; i < 4; i++) expect((await createClient(HealthDefinition, fresh()).check({ service: "" })).status).toBe(1);
  }, 30_000);

  it("SIGTERM drains every worker, and the primary exits 0 after them", async () => {
    const workers = readFileSync(`/proc/${server.child.pid}/task/${server.child.pid}/children`, "utf8").trim().split(/\s+/).map(Number);
    expect(workers).toHaveLength(2);
    expect(await server.stop()).toBe(0);
    for (const pid of workers) expect(alive(pid), `worker ${pid} gone`).toBe(false);
    expect(server.output().match(/"stopped"/g)).toHaveLength(3);
  }, 30_000);

  it("when the primary is killed, each worker drains and exits 0 by itself", async () => {
    const other = await startServerProcess({
      DATABASE_URL: db.url,
      TESSERA_MASTER_KEY: "22".repeat(32),
      TESSERA_WORKERS: "2",
      TESSERA_SHUTDOWN_GRACE: "2s",
    });
    const workers = readFileSync(`/proc/${other.child.pid}/task/${other.child.pid}/children`, "utf8").trim().split(/\s+/).map(Number);
    expect(workers).toHaveLength(2);
    other.child.kill("SIGKILL");
    expect(await within(10_000, () => workers.every((pid) => !alive(pid))), "both workers gone").toBe(true);
    // Their drain, not Node's cluster ending them at once: each logged it and "stopped".
    expect(other.output().match(/"signal":"primary exited"[^\n]*"shutting down: draining in-flight calls"/g)).toHaveLength(2);
    expect(other.output().match(/"stopped"/g)).toHaveLength(2);
  }, 60_000);
});
