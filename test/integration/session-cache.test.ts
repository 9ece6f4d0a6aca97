// The session-state cache behind VerifyToken, on the real database: what each
// revocation event drops, and that a revocation during a load is not cached.
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { SessionCache } from "../../src/tokens/session-cache.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

let server: TestServer;
const sessions: Record<string, { sessionId: string; userId: string; tenantId: string }> = {};

beforeAll(async () => {
  server = await startTestServer();
  const admin = server.as(server.adminToken);
  for (const tenantName of ["cache-a", "cache-b"]) {
    const { tenant } = await admin.tenants.createTenant({ tenant: { name: tenantName } });
    for (const username of ["one", "two"]) {
      const { user } = await admin.users.createUser({ tenantId: tenant!.id, user: { username }, password: `${username}-cache-password` });
      const login = await server.login(tenantName, username, `${username}-cache-password`);
      sessions[`${tenantName}/${username}`] = { sessionId: login.sessionId, userId: user!.id, tenantId: tenant!.id };
    }
  }
});
afterAll(() => server?.close());

/** A cache holding every test session. */
async function warm(): Promise<SessionCache> {
  const cache = new SessionCache();
  for (const s of Object.values(sessions)) await cache.get(server.tessera.orm.em.fork(), s.sessionId);
  return cache;
}

const cached = (cache: SessionCache) => Object.keys(sessions).filter((k) => cache.peek(sessions[k]!.sessionId) !== undefined).sort();

describe("SessionCache", () => {
  it("loads a session's state once and serves it from memory", async () => {
    const cache = new SessionCache();
    const s = sessions["cache-a/one"]!;
    expect(cache.peek(s.sessionId)).toBeUndefined();
    const state = await cache.get(server.tessera.orm.em.fork(), s.sessionId);
    expect(state).toMatchObject({ sessionId: s.sessionId, subject: s.userId, tenantId: s.tenantId, revoked: false, userDisabled: false, tenantDisabled: false });
    expect(cache.peek(s.sessionId)).toBe(state);
    // Concurrent loads of one session share one result.
    const fresh = new SessionCache();
    const [x, y] = await Promise.all([fresh.get(server.tessera.orm.em.fork(), s.sessionId), fresh.get(server.tessera.orm.em.fork(), s.sessionId)]);
    expect(x).toBe(y);
  });

  it("caches an unknown session as null, for a second only", async () => {
    const cache = new SessionCache();
    const id = crypto.randomUUID();
    expect(await cache.get(server.tessera.orm.em.fork(), id)).toBeNull();
    expect(cache.peek(id)).toBeNull();
    // A live session is kept for 30 s; one read as missing (maybe wrongly, by a database
    // switching over) is read again after a second.
    const live = sessions["cache-a/one"]!.sessionId;
    await cache.get(server.tessera.orm.em.fork(), live);
    vi.useFakeTimers({ toFake: ["Date"] });
    try {
      vi.setSystemTime(Date.now() + 1_001);
      expect(cache.peek(id)).toBeUndefined();
      expect(cache.peek(live)).toMatchObject({ sessionId: live });
    } finally {
      vi.useRealTimers();
    }
  });

  it("drops (or, for a revoked session, marks) exactly what each event may have changed", async () => {
    const all = Object.keys(sessions).sort();
    let cache = await warm();
    cache.apply({ kind: "SESSION_REVOKED", sessionId: sessions["cache-a/one"]!.sessionId, userId: null, tenantId: null });
    // A revoked session stays in memory, marked revoked (it never comes back): refused without a database read.
    expect(cached(cache)).toEqual(all);
    expect(cache.peek(sessions["cache-a/one"]!.sessionId)?.revoked).toBe(true);
    expect(all.filter((k) => cache.peek(sessions[k]!.sessionId)?.revoked)).toEqual(["cache-a/one"]);

    cache = await warm();
    cache.apply({ kind: "USER_REVOKED", userId: sessions["cache-b/two"]!.userId, sessionId: null, tenantId: sessions["cache-b/two"]!.tenantId });
    expect(cached(cache)).toEqual(all.filter((k) => k !== "cache-b/two"));

    cache = await warm();
    cache.apply({ kind: "TENANT_REVOKED", tenantId: sessions["cache-a/one"]!.tenantId, sessionId: null, userId: null });
    expect(cached(cache)).toEqual(["cache-b/one", "cache-b/two"]);

    cache = await warm();
    cache.apply({ kind: "GRANTS_CHANGED", tenantId: sessions["cache-b/one"]!.tenantId, sessionId: null, userId: null });
    expect(cached(cache)).toEqual(["cache-a/one", "cache-a/two"]);

    cache = await warm();
    cache.apply({ kind: "GRANTS_CHANGED", tenantId: null, sessionId: null, userId: null });
    expect(cached(cache)).toEqual([]);

    cache = await warm();
    cache.apply({ kind: "KEY_ADDED", tenantId: null, sessionId: null, userId: null });
    expect(cached(cache)).toEqual(all);
  });

  it("does not cache a state read before a revocation that arrived during the load", async () => {
    const cache = new SessionCache();
    const s = sessions["cache-a/two"]!;
    const loading = cache.get(server.tessera.orm.em.fork(), s.sessionId);
    cache.apply({ kind: "SESSION_REVOKED", sessionId: s.sessionId, userId: null, tenantId: null });
    await loading;
    expect(cache.peek(s.sessionId)).toBeUndefined();
  });
  it("keeps at most its bound, the oldest load out first, and drops entries past their 30 s from the front", async () => {
    const em = () => server.tessera.orm.em.fork();
    const order = ["cache-a/one", "cache-a/two", "cache-b/one", "cache-b/two"];
    const cache = new SessionCache(undefined, undefined, 3);
    for (const k of order) await cache.get(em(), sessions[k]!.sessionId);
    expect(cache.size).toBe(3);
    expect(cached(cache)).toEqual(["cache-a/two", "cache-b/one", "cache-b/two"]);
    // A reload moves an entry to the back: the next load pushes out the one loaded longest ago.
    vi.useFakeTimers({ toFake: ["Date"] });
    try {
      vi.setSystemTime(Date.now() + 31_000);
      await cache.get(em(), sessions["cache-a/two"]!.sessionId); // stale: read again, to the back
      expect(cache.size).toBe(1); // the other two were past their TTL and went from the front
      expect(cached(cache)).toEqual(["cache-a/two"]);
      await cache.get(em(), sessions["cache-a/one"]!.sessionId);
      expect(cached(cache)).toEqual(["cache-a/one", "cache-a/two"]);
    } finally {
      vi.useRealTimers();
    }
    // Bound 0: nothing is kept, every call reads.
    const none = new SessionCache(undefined, undefined, 0);
    expect(await none.get(em(), sessions["cache-a/one"]!.sessionId)).toMatchObject({ revoked: false });
    expect(none.size).toBe(0);
  });
});
