// Local verification (TokenVerifier) with a RevocationWatcher following the
// server's WatchRevocations over a real channel: revoked sessions, users and
// tenants refused moments after the server revoked them, the backlog-end
// header, resuming after a dropped connection without missing or repeating an
// event, and failing closed or open while the stream is down.
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  BACKLOG_END_HEADER,
  createTesseraClient,
  RevocationKind,
  RevocationWatcher,
  TesseraSession,
  TokenVerificationError,
  TokenVerifier,
  type RevocationWatcherOptions,
  type TesseraClient,
  type WatchRevocationsResponse,
} from "@tessera/client";
import { ADMIN_PASSWORD, startTestServer, type TestServer } from "../support/server.ts";
import { TcpProxy } from "../support/tcp-proxy.ts";

const ADMIN = { $case: "password" as const, value: { tenant: "system", username: "admin", password: ADMIN_PASSWORD } };
/** A short grpc-js reconnect backoff (1 s by default, growing), so that reconnecting after a drop takes moments. */
const quickReconnect = { "grpc.initial_reconnect_backoff_ms": 50, "grpc.max_reconnect_backoff_ms": 100 };

let server: TestServer;
let tessera: TesseraClient;
/** The system admin's session: its client carries identity.revocations.watch. */
let adminSession: TesseraSession;
let admin: TestServer["clients"];
let watcher: RevocationWatcher;
let verifier: TokenVerifier;
const cleanups: (() => unknown)[] = [];

beforeAll(async () => {
  server = await startTestServer();
  tessera = createTesseraClient(server.address);
  adminSession = await TesseraSession.start(tessera, { credential: ADMIN });
  admin = server.as(adminSession.tokens.accessToken);
  watcher = new RevocationWatcher(adminSession.client, { failMode: "closed", reconnectDelayMs: { min: 50, max: 200 } });
  verifier = new TokenVerifier(tessera, { revocations: watcher });
  await watcher.ready();
});
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  await watcher?.stop();
  tessera?.close();
  await server?.close();
});

/** Why the verifier refuses `token` now, or undefined when it accepts it. */
async function refusal(token: string, by: TokenVerifier = verifier): Promise<string | undefined> {
  return by.verify(token).then(
    () => undefined,
    (error: unknown) => {
      if (error instanceof TokenVerificationError) return error.reason;
      throw error;
    },
  );
}

/** Polls `probe` every 20 ms until it returns `expected` or `timeoutMs` is over; returns the last value. */
async function until<T>(probe: () => Promise<T>, expected: T, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value === expected || Date.now() > deadline) return value;
    await sleep(20);
  }
}

async function createTenant(name: string, users: string[]): Promise<string> {
  const { tenant } = await admin.tenants.createTenant({ tenant: { name }, admin: { username: "boss", password: "boss-password-1" } } as never);
  for (const username of users) await admin.users.createUser({ tenantId: tenant!.id, user: { username }, password: `${username}-password-1` } as never);
  return tenant!.id;
}
/** RevokeSession by the tenant's administrator (sessions are looked up in the caller's tenant). */
async function revokeSession(tenant: string, sessionId: string): Promise<void> {
  const boss = await login(tenant, "boss");
  await server.as(boss.accessToken).issue.revokeSession({ sessionId });
}
const login = (tenant: string, username: string) => server.login(tenant, username, username === "boss" ? "boss-password-1" : `${username}-password-1`);

/** A client whose calls go through a proxy that can be cut, sending the admin session's token. */
async function proxiedWatcher(options: Omit<RevocationWatcherOptions, "onEvent" | "onStateChange">) {
  const [host, port] = server.address.split(":");
  const proxy = await new TcpProxy({ host: host!, port: Number(port) }).start();
  const client = createTesseraClient(proxy.address, { token: () => adminSession.accessToken(), channelOptions: quickReconnect });
  const events: WatchRevocationsResponse[] = [];
  const states: boolean[] = [];
  /** When each state change happened (Date.now()). */
  const stateTimes: number[] = [];
  const watcher = new RevocationWatcher(client, {
    reconnectDelayMs: { min: 50, max: 200 },
    ...options,
    onEvent: (event) => events.push(event),
    onStateChange: (state) => (states.push(state.connected), stateTimes.push(Date.now())),
  });
  let up = true;
  cleanups.push(async () => {
    await watcher.stop();
    client.close();
    if (up) await proxy.cut();
  });
  await watcher.ready();
  return {
    watcher,
    verifier: new TokenVerifier(tessera, { revocations: watcher }),
    events,
    states,
    stateTimes,
    async cut() {
      await proxy.cut();
      up = false;
    },
    async restore() {
      await proxy.start();
      up = true;
    },
  };
}

describe("TokenVerifier with a RevocationWatcher", () => {
  it("refuses a revoked session within a second, and only that session", async () => {
    await createTenant("acme", ["alice"]);
    const first = await login("acme", "alice");
    const second = await login("acme", "alice");
    await expect(verifier.verify(first.accessToken)).resolves.toMatchObject({ username: "alice", sessionId: first.sessionId });
    await revokeSession("acme", first.sessionId);
    // The verifier had the token cached: the revocation reaches it through the watcher, not a fetch.
    expect(await until(() => refusal(first.accessToken), "SESSION_REVOKED", 1_000)).toBe("SESSION_REVOKED");
    expect(await refusal(second.accessToken)).toBeUndefined();
    // A verifier without revocations trusts the token until it expires: the refusal came from the watcher.
    expect(await refusal(first.accessToken, new TokenVerifier(tessera))).toBeUndefined();
  });

  it("refuses every earlier token of a user after RevokeAllSessions, and accepts one issued later", async () => {
    const tenantId = await createTenant("bravo", ["bob"]);
    const before = [await login("bravo", "bob"), await login("bravo", "bob")];
    const boss = await login("bravo", "boss");
    for (const issued of before) expect(await refusal(issued.accessToken)).toBeUndefined();
    const bobId = (await verifier.verify(before[0]!.accessToken)).subject;
    const { revokedCount } = await admin.issue.revokeAllSessions({ tenantId, userId: bobId });
    expect(revokedCount).toBe(2);
    for (const issued of before) expect(await until(() => refusal(issued.accessToken), "SESSION_REVOKED", 1_000)).toBe("SESSION_REVOKED");
    // Another user of the tenant is not concerned.
    expect(await refusal(boss.accessToken)).toBeUndefined();
    // iat has whole seconds and tokens of the revocation's second are refused (fail-safe): log in a second later.
    await sleep(1_100);
    const after = await login("bravo", "bob");
    expect(await refusal(after.accessToken)).toBeUndefined();
    expect(await refusal(after.accessToken)).toBeUndefined();
  });

  it("refuses the earlier tokens of a disabled tenant", async () => {
    const tenantId = await createTenant("charlie", ["carol"]);
    const carol = await login("charlie", "carol");
    const boss = await login("charlie", "boss");
    const outsider = await login("acme", "alice");
    for (const token of [carol, boss, outsider]) expect(await refusal(token.accessToken)).toBeUndefined();
    await admin.tenants.updateTenant({ tenant: { id: tenantId, disabled: true }, updateMask: ["disabled"] } as never);
    expect(await until(() => refusal(carol.accessToken), "SESSION_REVOKED", 1_000)).toBe("SESSION_REVOKED");
    expect(await refusal(boss.accessToken)).toBe("SESSION_REVOKED");
    expect(await refusal(outsider.accessToken)).toBeUndefined();
  });
});

describe("RevocationWatcher", () => {
  it("needs a failMode", () => {
    expect(() => new RevocationWatcher(adminSession.client, {} as RevocationWatcherOptions)).toThrow(TypeError);
    expect(() => new RevocationWatcher(adminSession.client, { failMode: "maybe" } as unknown as RevocationWatcherOptions)).toThrow(TypeError);
  });

  it("gets the tessera-backlog-end header at once, so that ready() resolves with no event after its cursor", async () => {
    // Make sure there is a backlog.
    await createTenant("delta", ["dave"]);
    const dave = await login("delta", "dave");
    await revokeSession("delta", dave.sessionId);
    expect(await until(() => refusal(dave.accessToken), "SESSION_REVOKED", 1_000)).toBe("SESSION_REVOKED");
    const cursor = watcher.cursor;
    expect(Number(cursor)).toBeGreaterThan(0);

    // The header itself, before any event.
    const controller = new AbortController();
    let header: string | undefined;
    const stream = adminSession.client.verify.watchRevocations({ cursor }, { signal: controller.signal, onHeader: (h) => (header = h.get(BACKLOG_END_HEADER)) });
    const consumed = (async () => {
      const received: WatchRevocationsResponse[] = [];
      try {
        for await (const event of stream) received.push(event);
      } catch (error) {
        if (!controller.signal.aborted) throw error;
      }
      return received;
    })();
    expect(await until(async () => header !== undefined, true, 5_000)).toBe(true);
    expect(header).toBe(cursor);
    controller.abort();
    expect(await consumed).toEqual([]);

    // A watcher resuming at the end of the log is ready without an event; one from the start catches up first.
    const events: WatchRevocationsResponse[] = [];
    const resumed = new RevocationWatcher(adminSession.client, { failMode: "closed", cursor, onEvent: (e) => events.push(e) });
    const fresh = new RevocationWatcher(adminSession.client, { failMode: "closed" });
    cleanups.push(() => resumed.stop(), () => fresh.stop());
    await resumed.ready(5_000);
    await fresh.ready(5_000);
    expect(resumed.connected).toBe(true);
    expect(events).toEqual([]);
    expect(fresh.cursor).toBe(cursor);
    // Both see what follows, the resumed one nothing before it.
    const again = await login("delta", "dave");
    await revokeSession("delta", again.sessionId);
    expect(await until(async () => events.length, 1, 1_000)).toBe(1);
    expect(events[0]).toMatchObject({ kind: RevocationKind.REVOCATION_KIND_SESSION_REVOKED, sessionId: again.sessionId });
    expect(Number(events[0]!.cursor)).toBeGreaterThan(Number(cursor));
    expect(await until(async () => fresh.cursor, events[0]!.cursor, 1_000)).toBe(events[0]!.cursor);
  });

  it("resumes after a dropped connection from its cursor: a revocation made meanwhile is applied, nothing is repeated", async () => {
    await createTenant("echo", ["erin"]);
    const revoked = await login("echo", "erin");
    const kept = await login("echo", "erin");
    const w = await proxiedWatcher({ failMode: "open", maxStaleMs: 300 });
    const backlog = w.events.length;
    expect(backlog).toBeGreaterThan(0);
    for (const token of [revoked, kept]) expect(await refusal(token.accessToken, w.verifier)).toBeUndefined();

    await w.cut();
    expect(await until(async () => w.watcher.connected, false, 5_000)).toBe(false);
    await revokeSession("echo", revoked.sessionId);
    expect(await until(() => refusal(revoked.accessToken), "SESSION_REVOKED", 1_000)).toBe("SESSION_REVOKED"); // the directly connected watcher has it
    // Down for longer than maxStaleMs, failing open: still accepted (the watcher cannot know yet).
    await sleep(400);
    expect(await refusal(revoked.accessToken, w.verifier)).toBeUndefined();
    expect(await refusal(kept.accessToken, w.verifier)).toBeUndefined();

    await w.restore();
    expect(await until(() => refusal(revoked.accessToken, w.verifier), "SESSION_REVOKED", 5_000)).toBe("SESSION_REVOKED");
    expect(await until(async () => w.watcher.connected, true, 5_000)).toBe(true);
    expect(await refusal(kept.accessToken, w.verifier)).toBeUndefined();
    // Resumed after its cursor: every event once, in order, the one made during the drop included.
    const cursors = w.events.map((e) => Number(e.cursor));
    expect(new Set(cursors).size, "no event repeated").toBe(cursors.length);
    expect(cursors).toEqual([...cursors].sort((a, b) => a - b));
    expect(w.events.slice(backlog).filter((e) => e.sessionId === revoked.sessionId)).toHaveLength(1);
    expect(w.watcher.cursor).toBe(watcher.cursor);
    expect(w.states).toEqual([true, false, true]);
  });

  it("fails closed while the stream has been down longer than maxStaleMs, and recovers once it is back", async () => {
    const alice = await login("acme", "alice");
    const w = await proxiedWatcher({ failMode: "closed", maxStaleMs: 300 });
    expect(await refusal(alice.accessToken, w.verifier)).toBeUndefined();
    const cutAt = Date.now();
    await w.cut();
    // Within maxStaleMs of the drop it still accepts (checked only when the machine was quick enough to ask in time).
    const early = await refusal(alice.accessToken, w.verifier);
    if (Date.now() - cutAt < 250) expect(early).toBeUndefined();
    expect(await until(() => refusal(alice.accessToken, w.verifier), "REVOCATIONS_UNAVAILABLE", 3_000)).toBe("REVOCATIONS_UNAVAILABLE");
    // Every token, the cached one included; not a transient answer.
    await sleep(200);
    expect(await refusal(alice.accessToken, w.verifier)).toBe("REVOCATIONS_UNAVAILABLE");
    expect(await refusal((await login("acme", "alice")).accessToken, w.verifier)).toBe("REVOCATIONS_UNAVAILABLE");
    await w.restore();
    expect(await until(() => refusal(alice.accessToken, w.verifier), undefined, 5_000)).toBeUndefined();
    expect(w.watcher.connected).toBe(true);
  });

  // The reconnect delay starts again from its minimum once a connection worked (not only once an event came): after a
  // long outage, the next short drop must not wait the maximum (with failMode "closed", every verification is refused meanwhile).
  it("reconnects after the shortest delay again once a connection has worked, even when no event came", async () => {
    const w = await proxiedWatcher({ failMode: "open", reconnectDelayMs: { min: 50, max: 1_000 } });
    // A first outage long enough for the delay to reach its maximum (50, 100, 200, 400, 800 ms, then 1 s).
    await w.cut();
    await sleep(1_700);
    await w.restore();
    expect(await until(async () => w.states.length, 3, 3_000)).toBe(3);
    const events = w.events.length;
    // A second drop, the server back at once: a reconnection after the shortest delay, not the longest.
    const cutAt = Date.now();
    await w.cut();
    await w.restore();
    expect(await until(async () => w.states.length, 5, 3_000)).toBe(5);
    expect(w.states).toEqual([true, false, true, false, true]);
    expect(w.events.length, "no event came, so none reset the delay").toBe(events);
    expect(w.stateTimes[4]! - cutAt).toBeLessThan(900);
  });
});
