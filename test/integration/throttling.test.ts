// Login throttling that protects owners instead of locking them out, bounded
// password hashing, and self-registration limits. Callers at different
// addresses connect through TCP forwarders bound to other loopback addresses.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "node:net";
import { createChannel, createClientFactory, Status } from "nice-grpc";
import { errorDetailsClientMiddleware, RetryInfo } from "nice-grpc-error-details";
import { IssueServiceDefinition } from "@tessera/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectFailure } from "../support/errors.ts";
import { startServerProcess, type ServerProcess } from "../support/process.ts";
import { ADMIN_PASSWORD, freshPostgresDatabase, startTestServer, type TestServer } from "../support/server.ts";
import { TcpProxy } from "../support/tcp-proxy.ts";

const databaseUrl = process.env.TEST_DATABASE_URL;

let server: TestServer;
let admin: TestServer["clients"];
let tenantId: string;
const proxies: TcpProxy[] = [];

/** Clients whose calls reach the server from `localAddress`. */
async function callerAt(target: TestServer, localAddress: string) {
  const [host, port] = [target.address.split(":")[0]!, Number(target.address.split(":")[1])];
  const proxy = await new TcpProxy({ host, port, localAddress }).start();
  proxies.push(proxy);
  const clients = target.clientsAt(proxy.address);
  const login = (username: string, password: string, tenant = "guarded") =>
    clients.issue.issueToken({ credential: { $case: "password", value: { tenant, username, password } } });
  return { clients, login };
}

const outcome = (error: { code?: number; extra?: { $type: string }[] }) =>
  error.code === Status.RESOURCE_EXHAUSTED ? "throttled" : error.code === Status.UNAUTHENTICATED ? "invalid" : `code ${error.code}`;

async function counterPoints(target: TestServer): Promise<number> {
  const rows = await target.tessera.orm.em.fork().getConnection().execute<{ total: string | number | null }[]>("select sum(points) as total from throttle_counters");
  return Number(rows[0]?.total ?? 0);
}

beforeAll(async () => {
  server = await startTestServer();
  admin = server.as(server.adminToken);
  tenantId = (await admin.tenants.createTenant({ tenant: { name: "guarded" }, admin: { username: "owner", password: "owner-password" } })).tenant!.id;
});
afterAll(async () => {
  for (const proxy of proxies) await proxy.cut().catch(() => undefined);
  await server?.close();
});

describe("login throttling", () => {
  it("never refuses concurrent correct logins: 40 at once to one account all succeed", async () => {
    await admin.users.createUser({ tenantId, user: { username: "fleet" }, password: "fleet-password" });
    const results = await Promise.allSettled(Array.from({ length: 40 }, () => server.login("guarded", "fleet", "fleet-password")));
    expect(results.filter((r) => r.status === "rejected").map((r) => (r as PromiseRejectedResult).reason?.details)).toEqual([]);
  });

  it("lets a stranger's ten wrong guesses block the stranger's address, not the owner at another", async () => {
    await admin.users.createUser({ tenantId, user: { username: "victim" }, password: "victim-password" });
    const stranger = await callerAt(server, "127.0.0.2");
    const owner = await callerAt(server, "127.0.0.3");
    for (let i = 0; i < 10; i++) {
      await expectFailure(stranger.login("victim", `guess-${i}-password`), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
    }
    const blocked = await expectFailure(stranger.login("victim", "victim-password"), { code: Status.RESOURCE_EXHAUSTED, reason: "TOO_MANY_ATTEMPTS" });
    const retry = blocked.extra.find((d): d is RetryInfo => d.$type === RetryInfo.$type);
    expect(Number(retry?.retryDelay?.seconds ?? 0)).toBeGreaterThan(60);
    // The owner, elsewhere, is not locked out.
    expect((await owner.login("victim", "victim-password")).accessToken).toBeTruthy();
  });

  it("records nothing for a caller that is already blocked", async () => {
    await admin.users.createUser({ tenantId, user: { username: "hammered" }, password: "hammered-password" });
    const attacker = await callerAt(server, "127.0.0.4");
    for (let i = 0; i < 10; i++) await attacker.login("hammered", `guess-${i}-password`).catch(() => undefined);
    const before = await counterPoints(server);
    for (let i = 0; i < 20; i++) {
      await expectFailure(attacker.login("hammered", `more-${i}-password`), { code: Status.RESOURCE_EXHAUSTED, reason: "TOO_MANY_ATTEMPTS" });
    }
    expect(await counterPoints(server)).toBe(before);
  });

  it("gives a concurrent burst of wrong guesses exactly the allowed checks, by username and e-mail alike", async () => {
    await admin.users.createUser({ tenantId, user: { username: "burst", email: "burst@guarded.test" }, password: "burst-password" });
    const attacker = await callerAt(server, "127.0.0.5");
    const outcomes = await Promise.all(
      Array.from({ length: 16 }, (_, i) => attacker.login(i % 2 ? "burst" : "BURST@guarded.test", `guess-${i}-password`).then(() => "ok", outcome)),
    );
    expect(outcomes.filter((o) => o === "invalid")).toHaveLength(10);
    expect(outcomes.filter((o) => o === "throttled")).toHaveLength(6);
  });

  it("counts the tenant by its id, whether the caller names it or gives its UUID (no oracle for usernames)", async () => {
    const attacker = await callerAt(server, "127.0.0.6");
    // An unknown user: five guesses by tenant name, five by tenant UUID, one counter.
    for (let i = 0; i < 10; i++) {
      await expectFailure(attacker.login("nobody-here", `guess-${i}-password`, i % 2 ? "guarded" : tenantId), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
    }
    await expectFailure(attacker.login("nobody-here", "another-password", "guarded"), { code: Status.RESOURCE_EXHAUSTED, reason: "TOO_MANY_ATTEMPTS" });
    await expectFailure(attacker.login("nobody-here", "another-password", tenantId), { code: Status.RESOURCE_EXHAUSTED, reason: "TOO_MANY_ATTEMPTS" });
  });

  it("counts SetPassword's wrong current passwords against the same account limit", async () => {
    const { user } = await admin.users.createUser({ tenantId, user: { username: "phished" }, password: "phished-password" });
    const thief = await callerAt(server, "127.0.0.7");
    const { accessToken } = await thief.login("phished", "phished-password");
    const stolen = server.clientsAt((proxies.at(-1) as TcpProxy).address, accessToken);
    for (let i = 0; i < 10; i++) {
      await expectFailure(stolen.users.setPassword({ id: user!.id, currentPassword: `guess-${i}-password`, newPassword: "taken-over-password" }), {
        code: Status.UNAUTHENTICATED,
        reason: "INVALID_CREDENTIALS",
      });
    }
    // Even the right current password is refused now, and so is a login from the thief's address.
    await expectFailure(stolen.users.setPassword({ id: user!.id, currentPassword: "phished-password", newPassword: "taken-over-password" }), {
      code: Status.RESOURCE_EXHAUSTED,
      reason: "TOO_MANY_ATTEMPTS",
    });
    await expectFailure(thief.login("phished", "phished-password"), { code: Status.RESOURCE_EXHAUSTED, reason: "TOO_MANY_ATTEMPTS" });
    await server.login("guarded", "phished", "phished-password");
  });

  it("blocks an account guessed from many addresses at the per-account ceiling", async () => {
    const small = await startTestServer({ TESSERA_LOGIN_FAILURES_PER_ACCOUNT: "6", TESSERA_LOGIN_FAILURES_PER_ACCOUNT_AND_ADDRESS: "4" });
    try {
      const a = await callerAt(small, "127.0.1.1");
      const b = await callerAt(small, "127.0.1.2");
      for (let i = 0; i < 3; i++) {
        await expectFailure(a.login("admin", `guess-a-${i}-password`, "system"), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
        await expectFailure(b.login("admin", `guess-b-${i}-password`, "system"), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
      }
      await expectFailure(small.login("system", "admin", ADMIN_PASSWORD), { code: Status.RESOURCE_EXHAUSTED, reason: "TOO_MANY_ATTEMPTS" });
    } finally {
      await small.close();
    }
  });
});

describe("bounded password hashing", () => {
  it("answers SERVER_BUSY with a retry delay at once beyond the queue, and serves again after", async () => {
    const busy = await startTestServer({ TESSERA_PASSWORD_HASH_CONCURRENCY: "1", TESSERA_PASSWORD_HASH_QUEUE: "2" });
    try {
      const outcomes = await Promise.all(
        Array.from({ length: 12 }, (_, i) =>
          busy.login("system", `someone-${i}`, "some-long-password").then(
            () => "ok",
            (error: { code?: number; extra?: { $type: string }[]; details?: string }) =>
              error.code === Status.RESOURCE_EXHAUSTED && error.extra?.some((d) => d.$type === RetryInfo.$type) ? "busy" : outcome(error),
          ),
        ),
      );
      expect(outcomes.filter((o) => o === "busy").length).toBeGreaterThanOrEqual(8);
      expect(outcomes.filter((o) => o === "invalid").length).toBeGreaterThanOrEqual(1);
      expect(outcomes.every((o) => o === "busy" || o === "invalid")).toBe(true);
      await busy.login("system", "admin", ADMIN_PASSWORD);
    } finally {
      await busy.close();
    }
  });
});

describe("self-registration limits", () => {
  it("throttles registrations per caller address, then per tenant, before any hashing", async () => {
    const limited = await startTestServer({ TESSERA_REGISTRATIONS_PER_ADDRESS: "3", TESSERA_REGISTRATIONS_PER_TENANT: "5" });
    try {
      const limitedAdmin = limited.as(limited.adminToken);
      await limitedAdmin.tenants.createTenant({ tenant: { name: "open", selfRegistrationEnabled: true } });
      const register = (clients: TestServer["clients"], username: string) =>
        clients.users.registerUser({ tenant: "open", username, password: `${username}-password`, passwordConfirmation: `${username}-password` });
      const first = await callerAt(limited, "127.0.2.1");
      for (let i = 0; i < 3; i++) await register(first.clients, `player-a${i}`);
      const refused = await expectFailure(register(first.clients, "player-a3"), { code: Status.RESOURCE_EXHAUSTED, reason: "RATE_LIMITED" });
      expect(refused.extra.some((d) => d.$type === RetryInfo.$type)).toBe(true);
      const second = await callerAt(limited, "127.0.2.2");
      for (let i = 0; i < 2; i++) await register(second.clients, `player-b${i}`);
      // The tenant's five are used up, whoever asks.
      await expectFailure(register(second.clients, "player-b2"), { code: Status.RESOURCE_EXHAUSTED, reason: "RATE_LIMITED" });
      const third = await callerAt(limited, "127.0.2.3");
      await expectFailure(register(third.clients, "player-c0"), { code: Status.RESOURCE_EXHAUSTED, reason: "RATE_LIMITED" });
    } finally {
      await limited.close();
    }
  });
});

describe.skipIf(!databaseUrl)("counters shared by replicas (two server processes on one PostgreSQL)", () => {
  let replicas: ServerProcess[] = [];
  let dropDatabase: () => Promise<void>;
  const dataDir = mkdtempSync(join(tmpdir(), "tessera-replicas-"));

  beforeAll(async () => {
    const db = await freshPostgresDatabase(databaseUrl!);
    dropDatabase = db.drop;
    const env = { DATABASE_URL: db.url, TESSERA_MASTER_KEY: "22".repeat(32), TESSERA_ADMIN_PASSWORD: ADMIN_PASSWORD, TESSERA_DATA_DIR: dataDir };
    // One at a time: the first migrates and bootstraps.
    replicas.push(await startServerProcess(env));
    replicas.push(await startServerProcess(env));
  });
  afterAll(async () => {
    await Promise.all(replicas.map((r) => r.stop()));
    await dropDatabase?.();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("holds the per-account-and-address limit across both replicas", async () => {
    const factory = createClientFactory().use(errorDetailsClientMiddleware);
    const channels = replicas.map((r) => createChannel(r.grpcAddress));
    try {
      const [one, two] = channels.map((c) => factory.create(IssueServiceDefinition, c));
      const login = (client: typeof one, password: string) =>
        client!.issueToken({ credential: { $case: "password", value: { tenant: "system", username: "admin", password } } });
      for (let i = 0; i < 10; i++) {
        await expectFailure(login(i % 2 ? one : two, `guess-${i}-password`), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
      }
      await expectFailure(login(one, ADMIN_PASSWORD), { code: Status.RESOURCE_EXHAUSTED, reason: "TOO_MANY_ATTEMPTS" });
      await expectFailure(login(two, ADMIN_PASSWORD), { code: Status.RESOURCE_EXHAUSTED, reason: "TOO_MANY_ATTEMPTS" });
      // A restart keeps the counters: they live in the database.
      const restarted = await replicas[0]!.stop();
      expect(restarted).toBe(0);
    } finally {
      channels.forEach((c) => c.close());
    }
  });
});

const redisUp = await new Promise<boolean>((resolve) => {
  const socket = connect(6379, "127.0.0.1");
  socket.once("connect", () => (socket.destroy(), resolve(true)));
  socket.once("error", () => resolve(false));
});

describe.skipIf(!redisUp)("counters in Redis (TESSERA_REDIS_URL, Redis on 127.0.0.1:6379)", () => {
  it("are shared by two servers and survive a restart of both", async () => {
    const env = { TESSERA_REDIS_URL: "redis://127.0.0.1:6379" };
    // An unknown tenant: its counter key (tenant name + username typed) is the same on both servers' databases.
    const tenant = `ghost-${process.pid}-${Date.now()}`;
    const [first, second] = await Promise.all([startTestServer(env), startTestServer(env)]);
    try {
      for (let i = 0; i < 10; i++) {
        await expectFailure((i % 2 ? first : second).login(tenant, "nobody", `guess-${i}-password`), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
      }
      await expectFailure(first.login(tenant, "nobody", "guess-password"), { code: Status.RESOURCE_EXHAUSTED, reason: "TOO_MANY_ATTEMPTS" });
      await expectFailure(second.login(tenant, "nobody", "guess-password"), { code: Status.RESOURCE_EXHAUSTED, reason: "TOO_MANY_ATTEMPTS" });
      // The counters are in Redis, not in the database.
      expect(await counterPoints(first)).toBe(0);
    } finally {
      await Promise.all([first.close(), second.close()]);
    }
    const third = await startTestServer(env);
    try {
      await expectFailure(third.login(tenant, "nobody", "guess-password"), { code: Status.RESOURCE_EXHAUSTED, reason: "TOO_MANY_ATTEMPTS" });
    } finally {
      await third.close();
    }
  }, 120_000);
});
