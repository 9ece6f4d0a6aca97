import { setTimeout as sleep } from "node:timers/promises";
import { Status } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RevocationKind } from "@tessera/client";
import { expectFailure } from "../support/errors.ts";
import { ADMIN_PASSWORD, startTestServer, type TestServer } from "../support/server.ts";
import { decodePart } from "../support/tokens.ts";

let server: TestServer;
let admin: TestServer["clients"];
let tenantId: string;

beforeAll(async () => {
  // Strict rotation (no grace window); the grace window has its own tests (refresh-grace.test.ts).
  server = await startTestServer({ TESSERA_KEY_PUBLISH_LEAD: "1s", TESSERA_REFRESH_GRACE: "0" });
  admin = server.as(server.adminToken);
  tenantId = (await admin.tenants.createTenant({ tenant: { name: "club" }, admin: { username: "chair", password: "chair-password" } })).tenant!.id;
  for (const username of ["member", "other"]) await admin.users.createUser({ tenantId, user: { username }, password: `${username}-password` });
});
afterAll(() => server?.close());

describe("Refresh", () => {
  it("rotates: returns a new pair and the old refresh token is dead", async () => {
    const login = await server.login("club", "chair", "chair-password");
    const next = await server.clients.refresh.refresh({ refreshToken: login.refreshToken });
    expect(next.refreshToken).not.toBe(login.refreshToken);
    expect(next.accessToken).not.toBe(login.accessToken);
    expect(next.sessionId).toBe(login.sessionId);
    await server.clients.verify.verifyToken({ token: next.accessToken });
    const again = await server.clients.refresh.refresh({ refreshToken: next.refreshToken });
    expect(again.sessionId).toBe(login.sessionId);
  });

  it("treats a used refresh token as theft: refuses it and revokes the whole session", async () => {
    const login = await server.login("club", "chair", "chair-password");
    const next = await server.clients.refresh.refresh({ refreshToken: login.refreshToken });
    await expectFailure(server.clients.refresh.refresh({ refreshToken: login.refreshToken }), { code: Status.UNAUTHENTICATED, reason: "REFRESH_TOKEN_INVALID" });
    await expectFailure(server.clients.verify.verifyToken({ token: next.accessToken }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
    await expectFailure(server.clients.refresh.refresh({ refreshToken: next.refreshToken }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
  });

  it("lets exactly one of 12 concurrent refreshes with one token win", async () => {
    const login = await server.login("club", "chair", "chair-password");
    const results = await Promise.allSettled(Array.from({ length: 12 }, () => server.clients.refresh.refresh({ refreshToken: login.refreshToken })));
    const won = results.filter((r) => r.status === "fulfilled");
    expect(won).toHaveLength(1);
    expect(results.filter((r) => r.status === "rejected")).toHaveLength(11);
  });

  it("rotates the refreshes of many sessions that arrive together (one statement on PostgreSQL) each on its own chain; a spent token among them is still reuse", async () => {
    const users: [string, string][] = [["chair", "chair-password"], ["member", "member-password"], ["other", "other-password"]];
    const logins = await Promise.all(Array.from({ length: 18 }, (_, i) => server.login("club", ...users[i % 3]!)));
    const thief = await server.login("club", "member", "member-password");
    const stolen = thief.refreshToken;
    const owner = await server.clients.refresh.refresh({ refreshToken: stolen });
    const wave = await Promise.allSettled([...logins.map((l) => server.clients.refresh.refresh({ refreshToken: l.refreshToken })), server.clients.refresh.refresh({ refreshToken: stolen })]);
    await expectFailure(Promise.reject((wave.at(-1) as PromiseRejectedResult).reason), { code: Status.UNAUTHENTICATED, reason: "REFRESH_TOKEN_INVALID" });
    await expectFailure(server.clients.verify.verifyToken({ token: owner.accessToken }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
    const rotated = wave.slice(0, -1).map((r, i) => {
      expect(r.status, `refresh ${i}`).toBe("fulfilled");
      const next = (r as PromiseFulfilledResult<Awaited<ReturnType<typeof server.clients.refresh.refresh>>>).value;
      expect(next.sessionId).toBe(logins[i]!.sessionId);
      expect(decodePart(next.accessToken, 1)).toMatchObject({ sid: logins[i]!.sessionId, sub: decodePart(logins[i]!.accessToken, 1).sub });
      return next;
    });
    // Each chain goes on from its own successor, again all at once; the spent tokens are dead.
    const again = await Promise.all(rotated.map((n) => server.clients.refresh.refresh({ refreshToken: n.refreshToken })));
    expect(again.map((n) => n.sessionId)).toEqual(logins.map((l) => l.sessionId));
    await expectFailure(server.clients.refresh.refresh({ refreshToken: logins[0]!.refreshToken }), { code: Status.UNAUTHENTICATED, reason: "REFRESH_TOKEN_INVALID" });
  });

  it("recomputes permissions from current grants and never goes above the session's elected set", async () => {
    const login = await server.login("club", "chair", "chair-password", ["identity.users.list", "identity.groups.list"]);
    const refreshed = await server.clients.refresh.refresh({ refreshToken: login.refreshToken });
    expect(refreshed.grantedPermissions).toEqual(["identity.groups.list", "identity.users.list"]);
    expect(decodePart(refreshed.accessToken, 1).scope).toBe("identity.groups.list identity.users.list");

    const narrowed = await server.clients.refresh.refresh({ refreshToken: refreshed.refreshToken, requestedPermissions: ["identity.users.list"] });
    expect(narrowed.grantedPermissions).toEqual(["identity.users.list"]);
    // Asking for more than the session elected is refused, and leaves the token usable.
    await expectFailure(server.clients.refresh.refresh({ refreshToken: narrowed.refreshToken, requestedPermissions: ["identity.users.delete"] }), {
      code: Status.PERMISSION_DENIED,
      reason: "PERMISSION_NOT_GRANTED",
    });
    // Narrowing stuck: the group permission is gone from the session for good.
    await expectFailure(server.clients.refresh.refresh({ refreshToken: narrowed.refreshToken, requestedPermissions: ["identity.groups.list"] }), {
      code: Status.PERMISSION_DENIED,
      reason: "PERMISSION_NOT_GRANTED",
    });
    const last = await server.clients.refresh.refresh({ refreshToken: narrowed.refreshToken });
    expect(last.grantedPermissions).toEqual(["identity.users.list"]);
  });

  it("refuses garbage, an access token, and a user who was disabled since", async () => {
    await expectFailure(server.clients.refresh.refresh({ refreshToken: "tsr_" + "A".repeat(43) }), { code: Status.UNAUTHENTICATED, reason: "REFRESH_TOKEN_INVALID" });
    await expectFailure(server.clients.refresh.refresh({ refreshToken: "nonsense" }), { code: Status.UNAUTHENTICATED, reason: "REFRESH_TOKEN_INVALID" });
    await expectFailure(server.clients.refresh.refresh({ refreshToken: "" }), { code: Status.INVALID_ARGUMENT, reason: "INVALID_INPUT", fields: ["refresh_token"] });
    const login = await server.login("club", "member", "member-password");
    // An access token is far longer than any refresh token: refused by the field's declared limit.
    await expectFailure(server.clients.refresh.refresh({ refreshToken: login.accessToken }), { code: Status.INVALID_ARGUMENT, reason: "INVALID_INPUT", fields: ["refresh_token"] });
    await expectFailure(server.clients.refresh.refresh({ refreshToken: login.accessToken.slice(0, 120) }), { code: Status.UNAUTHENTICATED, reason: "REFRESH_TOKEN_INVALID" });
    const { user } = await admin.users.getUser({ tenantId, username: "member" });
    await admin.users.updateUser({ tenantId, user: { ...user!, disabled: true }, updateMask: ["disabled"] });
    await expectFailure(server.clients.refresh.refresh({ refreshToken: login.refreshToken }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
    await admin.users.updateUser({ tenantId, user: { ...user!, disabled: false }, updateMask: ["disabled"] });
  });
});

describe("sessions", () => {
  it("logs out the current session: its access token fails at once and its refresh token dies", async () => {
    const login = await server.login("club", "other", "other-password");
    const keep = await server.login("club", "other", "other-password");
    await server.as(login.accessToken).issue.revokeSession({});
    await expectFailure(server.clients.verify.verifyToken({ token: login.accessToken }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
    await expectFailure(server.clients.refresh.refresh({ refreshToken: login.refreshToken }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
    await server.clients.verify.verifyToken({ token: keep.accessToken });
  });

  it("lets a user revoke only its own sessions, and a tenant admin any in the tenant", async () => {
    const victim = await server.login("club", "chair", "chair-password");
    const other = await server.login("club", "other", "other-password");
    await expectFailure(server.as(other.accessToken).issue.revokeSession({ sessionId: victim.sessionId }), { code: Status.NOT_FOUND, reason: "SESSION_NOT_FOUND" });
    await server.clients.verify.verifyToken({ token: victim.accessToken });
    const chair = server.as(victim.accessToken);
    await chair.issue.revokeSession({ sessionId: other.sessionId });
    await expectFailure(server.clients.verify.verifyToken({ token: other.accessToken }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
    await expectFailure(chair.issue.revokeSession({ sessionId: crypto.randomUUID() }), { code: Status.NOT_FOUND, reason: "SESSION_NOT_FOUND" });
  });

  it("lists live sessions newest first with pagination, and revokes them all", async () => {
    const { user } = await admin.users.createUser({ tenantId, user: { username: "busy" }, password: "busy-password" });
    const logins = [];
    for (let i = 0; i < 3; i++) logins.push(await server.login("club", "busy", "busy-password"));
    const busy = server.as(logins[2]!.accessToken);
    const first = await busy.issue.listSessions({ pageSize: 2 });
    const second = await busy.issue.listSessions({ pageSize: 2, pageToken: first.nextPageToken });
    expect([...first.sessions, ...second.sessions].map((s) => s.id)).toEqual(logins.map((l) => l.sessionId).reverse());
    expect(second.nextPageToken).toBe("");
    // A page token is authenticated: one edited to carry a key of the attacker's choice (here a
    // non-UUID session id, which PostgreSQL's uuid parser used to answer with INTERNAL) is refused.
    const [payload, tag] = first.nextPageToken.split(".");
    const decoded = JSON.parse(Buffer.from(payload!, "base64url").toString()) as { k: string; q: string };
    const forged = Buffer.from(JSON.stringify({ ...decoded, k: `${decoded.k.split("|")[0]}|not-a-uuid` })).toString("base64url");
    for (const pageToken of [`${forged}.${tag}`, forged, Buffer.from(JSON.stringify({ k: "x|y", q: decoded.q })).toString("base64url"), `${payload}.${"A".repeat(22)}`]) {
      await expectFailure(busy.issue.listSessions({ pageSize: 2, pageToken }), { code: Status.INVALID_ARGUMENT, reason: "INVALID_PAGE_TOKEN", fields: ["page_token"] });
    }
    expect(first.sessions[0]).toMatchObject({ tenantId, subject: user!.id, electedPermissions: ["identity.self.*"] });

    const { revokedCount } = await busy.issue.revokeAllSessions({});
    expect(revokedCount).toBe(3);
    for (const l of logins) {
      await expectFailure(server.clients.verify.verifyToken({ token: l.accessToken }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
    }
    expect((await admin.issue.listSessions({ tenantId, userId: user!.id })).sessions).toEqual([]);
  });

  it("streams revocations to watchers, resumable from a cursor", async () => {
    const { accessToken } = await server.login("system", "admin", ADMIN_PASSWORD);
    const watcher = server.as(accessToken);
    const a = await server.login("club", "other", "other-password");
    const b = await server.login("club", "other", "other-password");
    const controller = new AbortController();
    const seen: { cursor: string; kind: number; sessionId: string }[] = [];
    const watching = (async () => {
      try {
        for await (const event of watcher.verify.watchRevocations({}, { signal: controller.signal })) {
          seen.push(event);
          if (seen.some((e) => e.sessionId === b.sessionId)) break;
        }
      } catch (error) {
        if (!controller.signal.aborted) throw error;
      }
    })();
    await server.as(a.accessToken).issue.revokeSession({});
    await server.as(b.accessToken).issue.revokeSession({});
    await Promise.race([watching, sleep(5000).then(() => controller.abort())]);
    const revokedA = seen.find((e) => e.sessionId === a.sessionId);
    expect(revokedA?.kind).toBe(RevocationKind.REVOCATION_KIND_SESSION_REVOKED);
    expect(seen.find((e) => e.sessionId === b.sessionId)).toBeDefined();

    const replay = [];
    for await (const event of watcher.verify.watchRevocations({ cursor: revokedA!.cursor }, { signal: AbortSignal.timeout(5000) })) {
      replay.push(event);
      if (event.sessionId === b.sessionId) break;
    }
    expect(replay.map((e) => e.sessionId)).not.toContain(a.sessionId);
    expect(replay.map((e) => e.sessionId)).toContain(b.sessionId);
    await expectFailure(
      (async () => {
        for await (const _ of watcher.verify.watchRevocations({ cursor: "not-a-cursor" })) break;
      })(),
      { code: Status.INVALID_ARGUMENT, reason: "INVALID_INPUT", fields: ["cursor"] },
    );
  });
});

describe("signing keys", () => {
  it("publishes the next key before it signs, then signs with it while old tokens still verify", async () => {
    const before = await server.login("system", "admin", ADMIN_PASSWORD);
    const oldKid = decodePart(before.accessToken, 0).kid;
    const { keyId } = await server.as(before.accessToken).issue.rotateSigningKey({});
    expect(keyId).not.toBe(oldKid);
    const published = (await server.clients.verify.getJwks({})).keys.map((k) => k.kid);
    expect(published).toEqual(expect.arrayContaining([oldKid, keyId]));
    // During the publication lead the old key still signs.
    expect(decodePart((await server.login("system", "admin", ADMIN_PASSWORD)).accessToken, 0).kid).toBe(oldKid);
    await sleep(1100);
    const after = await server.login("system", "admin", ADMIN_PASSWORD);
    expect(decodePart(after.accessToken, 0).kid).toBe(keyId);
    await server.clients.verify.verifyToken({ token: before.accessToken });
    await server.clients.verify.verifyToken({ token: after.accessToken });
  });

  it("lets only the system tenant rotate keys", async () => {
    const chair = await server.login("club", "chair", "chair-password");
    await expectFailure(server.as(chair.accessToken).issue.rotateSigningKey({}), { code: Status.PERMISSION_DENIED, reason: "PERMISSION_DENIED" });
  });
});
