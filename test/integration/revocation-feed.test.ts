// The revocation feed must not lose an event whose id is lower than one
// already read: ids come from a sequence at insert time, but transactions
// commit in any order (PostgreSQL with several connections or replicas), and a
// rolled-back insert leaves a hole that must not stall the stream for ever.
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { pino } from "pino";
import { Status } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RevocationEventEntity, RevocationFeed, recordRevocation } from "../../src/events/index.ts";
import { expectFailure } from "../support/errors.ts";
import { ADMIN_PASSWORD, startTestServer, type TestServer } from "../support/server.ts";

let server: TestServer;

beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server?.close());

async function eventually(check: () => Promise<boolean>, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
}

describe("a hole in the event ids (rolled-back insert)", () => {
  it("delivers later events to listeners at once and streams them once the hole expires, in order", async () => {
    const orm = server.tessera.orm;
    const feed = new RevocationFeed(orm, pino({ level: "silent" }), { gapWaitMs: 400 });
    const delivered: number[] = [];
    feed.onEvent((e) => delivered.push(e.id));
    await feed.start(50);
    try {
      const before = feed.watermark;
      await orm.em
        .fork()
        .transactional(async (em) => {
          recordRevocation(em, { kind: "SESSION_REVOKED", sessionId: "00000000-0000-4000-8000-000000000001" });
          await em.flush();
          throw new Error("roll back");
        })
        .catch((error: Error) => expect(error.message).toBe("roll back"));
      const em = orm.em.fork();
      recordRevocation(em, { kind: "SESSION_REVOKED", sessionId: "00000000-0000-4000-8000-000000000002" });
      await em.flush();
      await feed.poll();
      const later = delivered.at(-1)!;
      expect(later).toBeGreaterThan(before + 1); // the rolled-back insert took an id
      // Listeners (the verification cache) had it at once; the ordered stream waits for the hole.
      expect(feed.watermark).toBeLessThan(later);

      const streamed: number[] = [];
      const controller = new AbortController();
      const watching = (async () => {
        for await (const event of feed.watch(before, controller.signal)) {
          streamed.push(event.id);
          if (event.id === later) break;
        }
      })();
      expect(await eventually(async () => feed.watermark >= later)).toBe(true);
      await Promise.race([watching, sleep(5000)]);
      controller.abort();
      expect(streamed).toEqual([later]);
      expect(delivered.filter((id) => id === later)).toHaveLength(1);
    } finally {
      await feed.stop();
    }
  });
});

describe("a jump of the sequence", () => {
  it("does not wait for ids nobody will ever commit", async () => {
    const orm = server.tessera.orm;
    const feed = new RevocationFeed(orm, pino({ level: "silent" }), { gapWaitMs: 60_000 });
    await feed.start(50);
    try {
      await orm.em
        .fork()
        .getConnection()
        .execute("select setval(pg_get_serial_sequence('revocation_events', 'id'), (select coalesce(max(id), 0) from revocation_events) + 20000)");
      const em = orm.em.fork();
      recordRevocation(em, { kind: "SESSION_REVOKED", sessionId: "00000000-0000-4000-8000-000000000003" });
      await em.flush();
      await feed.poll();
      const newest = await orm.em.fork().findOne(RevocationEventEntity, { id: { $gt: 0 } }, { orderBy: { id: "desc" } });
      // Streamed at once although the gap wait is a minute: 20000 missing ids are not gaps.
      expect(feed.watermark).toBe(newest!.id);
    } finally {
      await feed.stop();
    }
  });
});

describe.skipIf(!process.env.TEST_DATABASE_URL)("transactions committing out of id order (PostgreSQL)", () => {
  // A server of its own: the hole made above holds its ordered stream for the gap wait.
  let server: TestServer;
  let databaseUrl: string | undefined;
  beforeAll(async () => {
    server = await startTestServer({}, { databaseUrl: (url) => (databaseUrl = url) });
  });
  afterAll(() => server?.close());

  it("revokes at once when the earlier id commits last, and streams both in id order", async () => {
    const admin = server.as(server.adminToken);
    const { tenant } = await admin.tenants.createTenant({ tenant: { name: "late" }, admin: { username: "ann", password: "ann-password" } });
    const first = await server.login("late", "ann", "ann-password");
    const second = await server.login("late", "ann", "ann-password");
    // Both sessions are now in the verification cache.
    await server.clients.verify.verifyToken({ token: first.accessToken });
    await server.clients.verify.verifyToken({ token: second.accessToken });

    const streamed: string[] = [];
    const controller = new AbortController();
    const watching = (async () => {
      try {
        const { accessToken } = await server.login("system", "admin", ADMIN_PASSWORD);
        for await (const e of server.as(accessToken).verify.watchRevocations({}, { signal: controller.signal })) {
          if (e.sessionId === first.sessionId || e.sessionId === second.sessionId) streamed.push(e.sessionId);
          if (streamed.length === 2) break;
        }
      } catch (error) {
        if (!controller.signal.aborted) throw error;
      }
    })();

    const early = new pg.Client({ connectionString: databaseUrl });
    const late = new pg.Client({ connectionString: databaseUrl });
    await Promise.all([early.connect(), late.connect()]);
    const revoke = async (client: pg.Client, sessionId: string) => {
      await client.query("update sessions set revoked_at = now(), revoke_reason = 'test' where id = $1", [sessionId]);
      const { rows } = await client.query(
        "insert into revocation_events (kind, tenant_id, session_id, created_at) values ('SESSION_REVOKED', $1, $2, now()) returning id",
        [tenant!.id, sessionId],
      );
      return Number(rows[0].id);
    };
    try {
      await early.query("begin");
      const earlyId = await revoke(early, first.sessionId);
      await late.query("begin");
      const lateId = await revoke(late, second.sessionId);
      await late.query("commit");
      expect(lateId).toBeGreaterThan(earlyId);

      const revoked = (token: string) => () =>
        server.clients.verify.verifyToken({ token }).then(
          () => false,
          () => true,
        );
      expect(await eventually(revoked(second.accessToken))).toBe(true);
      // The poller has read past earlyId; the first session still verifies until its transaction commits.
      await server.clients.verify.verifyToken({ token: first.accessToken });
      await early.query("commit");
      expect(await eventually(revoked(first.accessToken))).toBe(true);
      await expectFailure(server.clients.verify.verifyToken({ token: first.accessToken }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });

      await Promise.race([watching, sleep(5000)]);
      expect(streamed).toEqual([first.sessionId, second.sessionId]);
    } finally {
      controller.abort();
      await Promise.all([early.end(), late.end()]);
    }
  });
});

describe("a subscriber that stops reading", () => {
  it("is switched to catching up from the log past its queue bound, and misses nothing, in order", async () => {
    const orm = server.tessera.orm;
    const feed = new RevocationFeed(orm, pino({ level: "silent" }), { gapWaitMs: 0 });
    await feed.start(50);
    const controller = new AbortController();
    try {
      const before = feed.watermark;
      const record = async (i: number) => {
        const em = orm.em.fork();
        recordRevocation(em, { kind: "SESSION_REVOKED", sessionId: `00000000-0000-4000-8000-${String(i).padStart(12, "0")}` });
        await em.flush();
        await feed.poll();
      };
      const stream = feed.watch(before, controller.signal, { maxQueued: 5 });
      await record(1);
      const first = await stream.next();
      // The subscriber stalls while 40 more settle: far more than its queue holds.
      for (let i = 2; i <= 41; i++) await record(i);
      const rest: string[] = [];
      for (let i = 0; i < 40; i++) rest.push((await stream.next()).value!.sessionId!);
      // And it follows live events again afterwards.
      await record(42);
      const next = await stream.next();
      expect(first.value!.sessionId).toMatch(/000000000001$/);
      expect(rest).toEqual(Array.from({ length: 40 }, (_, i) => `00000000-0000-4000-8000-${String(i + 2).padStart(12, "0")}`));
      expect(next.value!.sessionId).toMatch(/000000000042$/);
      controller.abort();
      expect((await stream.next()).done).toBe(true);
    } finally {
      controller.abort();
      await feed.stop();
    }
  });
});

describe("many revoking calls at once", () => {
  it("share polls (one running, one queued), and each caller's commit is read by the poll it waits for", async () => {
    const orm = server.tessera.orm;
    const feed = new RevocationFeed(orm, pino({ level: "silent" }));
    const delivered = new Set<string | null | undefined>();
    feed.onEvent((e) => delivered.add(e.sessionId));
    await feed.start(60_000);
    try {
      const commit = async (n: number) => {
        const em = orm.em.fork();
        const sessionId = `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`;
        recordRevocation(em, { kind: "SESSION_REVOKED", sessionId });
        await em.flush();
        return sessionId;
      };
      const first = feed.poll();
      const second = feed.poll();
      const third = feed.poll();
      expect(second).not.toBe(first);
      expect(third).toBe(second); // joined the queued poll instead of chaining a third
      await Promise.all([first, second]);
      // 30 callers, each polling right after its own commit (as the middleware does): every one
      // sees its event delivered when its poll resolves, through at most two polls pending at a time.
      const results = await Promise.all(
        Array.from({ length: 30 }, async (_, i) => {
          const sessionId = await commit(900 + i);
          expect(await feed.poll()).toBe(true);
          return delivered.has(sessionId);
        }),
      );
      expect(results.every(Boolean)).toBe(true);
    } finally {
      await feed.stop();
    }
  });
});
