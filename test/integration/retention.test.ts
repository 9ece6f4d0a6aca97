// Retention: under a login loop the tables stay bounded. A user's live
// sessions are capped (the oldest revoked first, and refused at once); ended
// sessions, expired refresh tokens, old revocation-log entries and expired
// replay records are purged in bounded batches by the server's own retention
// job (run here with a clock moved forward), one replica at a time.
import { Status } from "nice-grpc";
import pg from "pg";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ENDED_SESSION_KEEP_MS, Retention } from "../../src/retention.ts";
import { expectFailure } from "../support/errors.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

const CAP = 5;
let server: TestServer;
let tenantId: string;

beforeAll(async () => {
  server = await startTestServer({ TESSERA_MAX_SESSIONS_PER_USER: String(CAP), TESSERA_LOGIN_FAILURES_PER_ACCOUNT_AND_ADDRESS: "1000" });
  const admin = server.as(server.adminToken);
  tenantId = (await admin.tenants.createTenant({ tenant: { name: "looping" } })).tenant!.id;
  await admin.users.createUser({ tenantId, user: { username: "loop" }, password: "loop-password-1" });
});
afterAll(() => server?.close());

async function count(sql: string): Promise<number> {
  const rows = await server.tessera.orm.em.fork().getConnection().execute<{ n: number | string }[]>(sql);
  return Number(rows[0]!.n);
}

const retention = (batch = 7) => new Retention(server.tessera.orm, { intervalMs: 60_000, batch, revocationLogRetentionSeconds: 7 * 86400, log: pino({ level: "silent" }) });

describe("retention", () => {
  it("caps a user's live sessions: the oldest are revoked first and refused at once", async () => {
    const logins = [];
    for (let i = 0; i < 3 * CAP; i++) logins.push(await server.login("looping", "loop", "loop-password-1"));
    const live = await count(`select count(*) as n from sessions s join users u on u.id = s.user_id where u.username = 'loop' and s.revoked_at is null`);
    expect(live).toBe(CAP);
    // The newest CAP sessions live; every older one is refused, its access and refresh token alike.
    for (const login of logins.slice(-CAP)) await server.clients.verify.verifyToken({ token: login.accessToken, audience: "" });
    for (const login of logins.slice(0, -CAP)) {
      await expectFailure(server.clients.verify.verifyToken({ token: login.accessToken, audience: "" }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
    }
    await expectFailure(server.clients.refresh.refresh({ refreshToken: logins[0]!.refreshToken }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
    const { sessions } = await server.as(logins.at(-1)!.accessToken).issue.listSessions({});
    expect(sessions.length).toBe(CAP);
  });

  it("keeps the tables bounded under a login loop: ended sessions, spent and expired tokens and old events are purged in batches", async () => {
    for (let i = 0; i < 4 * CAP; i++) {
      const login = await server.login("looping", "loop", "loop-password-1");
      await server.clients.refresh.refresh({ refreshToken: login.refreshToken });
    }
    const sessionsBefore = await count("select count(*) as n from sessions");
    const tokensBefore = await count("select count(*) as n from refresh_tokens");
    const eventsBefore = await count("select count(*) as n from revocation_events");
    expect(sessionsBefore).toBeGreaterThan(5 * CAP); // the loop's revoked sessions are still there (kept a day)

    // Nothing is due yet: ended sessions are kept a day, tokens until they expire, events a week.
    expect(await retention().run()).toMatchObject({ sessions: 0, refreshTokens: 0, revocationEvents: 0, skipped: false });

    // A day later: every revoked session goes, in batches of 7, with its refresh tokens.
    const dayLater = await retention().run(new Date(Date.now() + ENDED_SESSION_KEEP_MS + 60_000));
    expect(dayLater.sessions).toBe(sessionsBefore - (await count("select count(*) as n from sessions")));
    expect(await count("select count(*) as n from sessions s where s.revoked_at is not null")).toBe(0);
    const liveSessions = await count("select count(*) as n from sessions");
    // At most the cap per user (loop's and the admin's logins), each with its live token and a spent one.
    expect(await count("select count(*) as n from refresh_tokens")).toBeLessThanOrEqual(2 * liveSessions);
    expect(await count("select count(*) as n from refresh_tokens")).toBeLessThan(tokensBefore);

    // Eight days later: the old revocation events go too; 31 days later every session has expired.
    const weekLater = await retention().run(new Date(Date.now() + 8 * 86400_000));
    expect(weekLater.revocationEvents).toBe(eventsBefore);
    expect(await count("select count(*) as n from revocation_events")).toBe(0);
    await retention().run(new Date(Date.now() + 32 * 86400_000));
    expect(await count("select count(*) as n from sessions")).toBe(0);
    expect(await count("select count(*) as n from refresh_tokens")).toBe(0);

    // The server still works: logins, revocations (a new event after the purged ones) and verification.
    const login = await server.login("looping", "loop", "loop-password-1");
    await server.as(login.accessToken).issue.revokeSession({ sessionId: "" });
    await expectFailure(server.clients.verify.verifyToken({ token: login.accessToken, audience: "" }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
  });

  it.skipIf(!process.env.TEST_DATABASE_URL)("runs on one replica at a time: while another holds the lock, a run purges nothing", async () => {
    const other = new pg.Client({ connectionString: server.config.databaseUrl });
    await other.connect();
    try {
      const login = await server.login("looping", "loop", "loop-password-1");
      await server.as(login.accessToken).issue.revokeSession({ sessionId: "" });
      await other.query("begin");
      await other.query("select pg_advisory_xact_lock(7358202613)");
      const later = new Date(Date.now() + ENDED_SESSION_KEEP_MS + 60_000);
      expect(await retention().run(later)).toMatchObject({ skipped: true, sessions: 0 });
      await other.query("commit");
      expect((await retention().run(later)).sessions).toBeGreaterThan(0);
    } finally {
      await other.end();
    }
  });
});
