// Operations: request ids on every log line of a call (and back in the
// response), no secret in the logs of a whole session, Prometheus metrics on
// GET /metrics (RPCs, issuance by tenant and credential, login failures and
// throttles, refresh outcomes with grace hits and reuse apart, revocation-feed
// lag, process), readable only from the allowed addresses, with tenant labels
// bounded. On PostgreSQL: a call's deadline bounds its database work.
import { Writable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { Metadata, Status } from "nice-grpc";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/logging.ts";
import { expectFailure } from "../support/errors.ts";
import { ADMIN_PASSWORD, startTestServer, type TestServer } from "../support/server.ts";

const lines: string[] = [];
const capture = new Writable({
  write(chunk, _encoding, done) {
    lines.push(...String(chunk).split("\n").filter(Boolean));
    done();
  },
});

let server: TestServer;
beforeAll(async () => {
  // trace: the most a server can be made to log.
  server = await startTestServer(
    { TESSERA_LOGIN_FAILURES_PER_ACCOUNT_AND_ADDRESS: "3", TESSERA_METRICS_TENANT_LABELS: "4" },
    { logger: createLogger({ level: "trace", destination: capture }) },
  );
});
afterAll(() => server?.close());

async function metrics(path = "/metrics"): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${server.tessera.httpPort}${path}`);
  return { status: res.status, body: await res.text() };
}

/** The value of one sample of the exposition (labels in any order), or undefined. */
function sample(body: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of body.split("\n")) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const have = Object.fromEntries([...(match[2] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(match[3]);
  }
  return undefined;
}

describe("request ids", () => {
  it("a caller's x-request-id is on every log line of its call and comes back in the response header", async () => {
    let header: string | undefined;
    await expectFailure(
      server.clients.issue.issueToken(
        { credential: { $case: "password", value: { tenant: "system", username: "admin", password: "not the password" } } },
        { metadata: Metadata({ "x-request-id": "req-observability-1" }), onHeader: (h) => (header = h.get("x-request-id")) },
      ),
      { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" },
    );
    expect(header).toBe("req-observability-1");
    const ofCall = lines.filter((l) => l.includes("req-observability-1")).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(ofCall.length).toBeGreaterThan(0);
    for (const entry of ofCall) expect(entry.reqId).toBe("req-observability-1");
    expect(ofCall.some((e) => e.msg === "rpc failed" && e.code === "UNAUTHENTICATED")).toBe(true);
  });

  it("without one (or with one unfit for a log line) the server makes one and returns it", async () => {
    for (const given of [undefined, "a b\nfake log line", "x".repeat(200)]) {
      let header: string | undefined;
      await server.as(server.adminToken).users.getMe({}, {
        metadata: given === undefined ? Metadata() : Metadata({ "x-request-id": given.replace("\n", " ") }),
        onHeader: (h) => (header = h.get("x-request-id")),
      });
      expect(header).toMatch(/^[0-9a-f-]{36}$/);
      // Successful calls log at debug; the made-up id is on that line.
      expect(lines.some((l) => l.includes(`"reqId":"${header}"`) && l.includes('"msg":"rpc"'))).toBe(true);
    }
  });
});

describe("logs of a whole session", () => {
  it("hold no password, token, refresh token or hash, at the most verbose level", async () => {
    const admin = server.as(server.adminToken);
    const { tenant } = await admin.tenants.createTenant({ tenant: { name: "logged" } });
    const firstPassword = "first-Secret-passphrase-41";
    const secondPassword = "second-Secret-passphrase-42";
    const { user } = await admin.users.createUser({ tenantId: tenant!.id, user: { username: "olive", email: "olive@logged.test" }, password: firstPassword });
    const secrets: string[] = [firstPassword, secondPassword];

    const login = await server.login("logged", "olive", firstPassword);
    secrets.push(login.accessToken, login.refreshToken);
    const me = server.as(login.accessToken);
    await server.clients.verify.verifyToken({ token: login.accessToken, audience: "" });
    const refreshed = await server.clients.refresh.refresh({ refreshToken: login.refreshToken });
    secrets.push(refreshed.accessToken, refreshed.refreshToken);
    await me.users.getMe({});
    await server.as(refreshed.accessToken).users.setPassword({ id: user!.id, currentPassword: firstPassword, newPassword: secondPassword });
    // Failures: a wrong password, a wrong current password, reuse of a rotated refresh token (outside no grace: the second rotation's
    // predecessor), a garbage token.
    await expectFailure(server.login("logged", "olive", firstPassword), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
    const again = await server.login("logged", "olive", secondPassword);
    secrets.push(again.accessToken, again.refreshToken);
    await expectFailure(server.as(again.accessToken).users.setPassword({ id: user!.id, currentPassword: "wrong-current-password", newPassword: "third-Secret-passphrase-43" }), {
      code: Status.UNAUTHENTICATED,
      reason: "INVALID_CREDENTIALS",
    });
    secrets.push("third-Secret-passphrase-43");
    const r1 = await server.clients.refresh.refresh({ refreshToken: again.refreshToken });
    const r2 = await server.clients.refresh.refresh({ refreshToken: r1.refreshToken });
    secrets.push(r1.accessToken, r1.refreshToken, r2.accessToken, r2.refreshToken);
    await expectFailure(server.clients.refresh.refresh({ refreshToken: again.refreshToken }), { code: Status.UNAUTHENTICATED, reason: "REFRESH_TOKEN_INVALID" });
    await expectFailure(server.clients.verify.verifyToken({ token: `${login.accessToken.slice(0, -4)}AAAA`, audience: "" }), {
      code: Status.UNAUTHENTICATED,
      reason: "TOKEN_INVALID",
    });
    const last = await server.login("logged", "olive", secondPassword);
    secrets.push(last.accessToken, last.refreshToken);
    await server.as(last.accessToken).issue.revokeSession({ sessionId: "" });

    const log = lines.join("\n");
    expect(log).toContain('"rpc":"/tessera.identity.v1.RefreshService/Refresh"'); // the right lines were captured
    for (const secret of secrets) {
      expect(log).not.toContain(secret);
      // Nor a recognisable part of one (a JWT's signature, the random part of a refresh token).
      expect(log).not.toContain(secret.slice(-24));
    }
    expect(log).not.toMatch(/\$argon2id\$/);
    expect(log).not.toMatch(/"(password|newPassword|currentPassword|refreshToken|accessToken|authorization)":"(?!\[redacted\])/i);
  });
});

describe("GET /metrics", () => {
  it("counts RPCs, issuance by tenant and credential, login failures and throttles, and refresh outcomes", async () => {
    const admin = server.as(server.adminToken);
    const { tenant } = await admin.tenants.createTenant({ tenant: { name: "metered" } });
    await admin.users.createUser({ tenantId: tenant!.id, user: { username: "mia" }, password: "metered-password-1" });
    const before = (await metrics()).body;
    const issuedBefore = sample(before, "tessera_tokens_issued_total", { tenant: "system", credential: "password" }) ?? 0;

    const login = await server.login("metered", "mia", "metered-password-1");
    await server.login("system", "admin", ADMIN_PASSWORD);
    const r1 = await server.clients.refresh.refresh({ refreshToken: login.refreshToken });
    const grace = await server.clients.refresh.refresh({ refreshToken: login.refreshToken }); // a retry within the grace window
    expect(grace.refreshToken).toBe(r1.refreshToken);
    const r2 = await server.clients.refresh.refresh({ refreshToken: r1.refreshToken });
    await expectFailure(server.clients.refresh.refresh({ refreshToken: login.refreshToken }), { code: Status.UNAUTHENTICATED, reason: "REFRESH_TOKEN_INVALID" });
    await expectFailure(server.clients.refresh.refresh({ refreshToken: r2.refreshToken }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
    for (let i = 0; i < 3; i++) {
      await expectFailure(server.login("metered", "mia", `wrong-password-${i}`), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
    }
    await expectFailure(server.login("metered", "mia", "wrong-password-x"), { code: Status.RESOURCE_EXHAUSTED, reason: "TOO_MANY_ATTEMPTS" });

    const { status, body } = await metrics();
    expect(status).toBe(200);
    expect(sample(body, "tessera_tokens_issued_total", { tenant: "metered", credential: "password" })).toBe(1);
    expect(sample(body, "tessera_tokens_issued_total", { tenant: "system", credential: "password" })).toBe(issuedBefore + 1);
    expect(sample(body, "tessera_tokens_issued_total", { tenant: "metered", credential: "refresh" })).toBe(3);
    expect(sample(body, "tessera_refresh_total", { outcome: "grace" })).toBeGreaterThanOrEqual(1);
    expect(sample(body, "tessera_refresh_total", { outcome: "reuse_detected" })).toBeGreaterThanOrEqual(1);
    expect(sample(body, "tessera_refresh_total", { outcome: "refused" })).toBeGreaterThanOrEqual(1);
    expect(sample(body, "tessera_login_failures_total", { credential: "password", reason: "INVALID_CREDENTIALS" })).toBeGreaterThanOrEqual(3);
    expect(sample(body, "tessera_login_throttled_total", { credential: "password" })).toBe(1);
    expect(sample(body, "grpc_server_handled_total", { grpc_method: "Refresh", grpc_code: "UNAUTHENTICATED" })).toBeGreaterThanOrEqual(2);
    expect(sample(body, "grpc_server_handled_total", { grpc_method: "IssueToken", grpc_code: "RESOURCE_EXHAUSTED" })).toBe(1);
    expect(sample(body, "grpc_server_handling_seconds_count", { grpc_method: "Refresh", grpc_code: "OK" })).toBeGreaterThanOrEqual(3);
    // The revocation the reuse made was applied here, and the feed is current.
    expect(sample(body, "tessera_revocation_delivery_seconds_count")).toBeGreaterThanOrEqual(1);
    expect(sample(body, "tessera_revocation_feed_staleness_seconds")).toBeLessThan(60);
    // The process.
    expect(sample(body, "process_resident_memory_bytes")).toBeGreaterThan(0);
    expect(body).toMatch(/^nodejs_eventloop_lag_seconds /m);
  });

  it("names at most TESSERA_METRICS_TENANT_LABELS tenants; the rest count as _other", async () => {
    // system, logged and metered are named already (the tests above); a fourth fits, then no more.
    const admin = server.as(server.adminToken);
    for (const name of ["labelled-a", "labelled-b", "labelled-c"]) {
      const { tenant } = await admin.tenants.createTenant({ tenant: { name } });
      await admin.users.createUser({ tenantId: tenant!.id, user: { username: "u" }, password: "labelled-password-1" });
      await server.login(name, "u", "labelled-password-1");
    }
    const { body } = await metrics();
    const tenants = new Set([...body.matchAll(/^tessera_tokens_issued_total\{[^}]*tenant="([^"]*)"/gm)].map((m) => m[1]));
    expect(tenants).toEqual(new Set(["system", "logged", "metered", "labelled-a", "_other"]));
  });
});

describe("GET /metrics from elsewhere", () => {
  let other: TestServer;
  beforeAll(async () => {
    other = await startTestServer({ TESSERA_METRICS_ALLOW: "10.0.0.0/8" });
  });
  afterAll(() => other?.close());

  it("is a 404 for an address outside TESSERA_METRICS_ALLOW", async () => {
    const res = await fetch(`http://127.0.0.1:${other.tessera.httpPort}/metrics`);
    expect(res.status).toBe(404);
    expect(await res.text()).not.toContain("tessera_");
  });
});

const databaseUrl = process.env.TEST_DATABASE_URL;

/** The server's statements waiting for a lock, after giving them up to 5 s to go. */
async function serverStatementsWaitingForLocks(locker: pg.Client): Promise<number> {
  const waiting = async () =>
    Number(
      (
        await locker.query(
          "select count(*)::int as n from pg_stat_activity where application_name = 'tessera' and wait_event_type = 'Lock' and datname = current_database()",
        )
      ).rows[0].n,
    );
  let n = await waiting();
  for (let i = 0; i < 100 && n > 0; i++) {
    await sleep(50);
    n = await waiting();
  }
  return n;
}

describe.skipIf(!databaseUrl)("a call's deadline bounds its database work (PostgreSQL)", () => {
  it("a write stuck behind a lock is cancelled at the deadline, leaves nothing behind and holds no connection", async () => {
    const admin = server.as(server.adminToken);
    const { tenant } = await admin.tenants.createTenant({ tenant: { name: "slowed" } });
    const url = server.config.databaseUrl!;
    const locker = new pg.Client({ connectionString: url });
    await locker.connect();
    try {
      // The database is slowed for users: every write waits for this transaction.
      await locker.query("begin");
      await locker.query("lock table users in access exclusive mode");
      const started = Date.now();
      const error = await admin.users
        .createUser({ tenantId: tenant!.id, user: { username: "stuck" }, password: "stuck-password-1" }, { deadline: new Date(Date.now() + 500) })
        .then(() => undefined, (e: unknown) => e as { code?: Status });
      expect(error?.code).toBe(Status.DEADLINE_EXCEEDED);
      expect(Date.now() - started).toBeLessThan(5_000);
      // The server's statement is gone soon after the deadline (not at the 30 s statement timeout).
      expect(await serverStatementsWaitingForLocks(locker)).toBe(0);
    } finally {
      await locker.query("rollback").catch(() => undefined);
      await locker.end();
    }
    // Nothing was written, and the server serves users again.
    const { users } = await admin.users.listUsers({ tenantId: tenant!.id, pageSize: 10, pageToken: "", filter: "", orderBy: "" } as never);
    expect(users.map((u) => u.username)).not.toContain("stuck");
    await admin.users.createUser({ tenantId: tenant!.id, user: { username: "after" }, password: "after-password-1" });
  });
});

describe.skipIf(!databaseUrl)("a refresh's deadline bounds its statement (PostgreSQL)", () => {
  it("a refresh stuck behind a lock is cancelled at the deadline, rotates nothing, and the token refreshes after", async () => {
    const admin = server.as(server.adminToken);
    const { tenant } = await admin.tenants.createTenant({ tenant: { name: "slowed-refresh" } });
    await admin.users.createUser({ tenantId: tenant!.id, user: { username: "ria" }, password: "ria-password-12" });
    const { refreshToken } = await server.login("slowed-refresh", "ria", "ria-password-12");
    const url = server.config.databaseUrl!;
    const locker = new pg.Client({ connectionString: url });
    await locker.connect();
    const rows = async () => Number((await locker.query("select count(*)::int as n from refresh_tokens")).rows[0].n);
    const before = await rows();
    try {
      await locker.query("begin");
      await locker.query("lock table refresh_tokens in access exclusive mode");
      const started = Date.now();
      const error = await server.clients.refresh
        .refresh({ refreshToken, requestedPermissions: [] }, { deadline: new Date(Date.now() + 500) })
        .then(() => undefined, (e: unknown) => e as { code?: Status });
      expect(error?.code).toBe(Status.DEADLINE_EXCEEDED);
      expect(Date.now() - started).toBeLessThan(5_000);
      // The refresh's statement is cancelled soon after the deadline (not left waiting for the lock
      // until the 30 s statement timeout, as pool.query's statements were).
      expect(await serverStatementsWaitingForLocks(locker)).toBe(0);
    } finally {
      await locker.query("rollback").catch(() => undefined);
    }
    try {
      // Nothing was rotated: no successor was written, and the presented token is still the live one.
      expect(await rows()).toBe(before);
      const used = await locker.query("select count(*)::int as n from refresh_tokens where used_at is not null");
      const rotated = await server.clients.refresh.refresh({ refreshToken, requestedPermissions: [] });
      expect(rotated.refreshToken).not.toBe(refreshToken);
      expect(Number((await locker.query("select count(*)::int as n from refresh_tokens where used_at is not null")).rows[0].n)).toBe(Number(used.rows[0].n) + 1);
    } finally {
      await locker.end();
    }
  });
});
