// The elected scope governs account self-management: every user holds
// identity.self.* on its own account, elected by default; a token elected to
// a narrow scope (a game client's game.profile.retrieve) cannot list sessions
// with their addresses, read the account, change the password, or revoke the
// owner's other sessions. Logging out of its own session always works.
import { Status } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectFailure } from "../support/errors.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

let server: TestServer;
let userId: string;

beforeAll(async () => {
  server = await startTestServer();
  const admin = server.as(server.adminToken);
  await admin.permissions.registerMicroservice({ name: "game", version: "1.0.0", permissions: [{ codename: "game.profile.retrieve", description: "Read a profile" }] });
  const { tenant } = await admin.tenants.createTenant({ tenant: { name: "arcade" } });
  userId = (await admin.users.createUser({ tenantId: tenant!.id, user: { username: "gamer", email: "gamer@arcade.test" }, password: "gamer-password" })).user!.id;
});
afterAll(() => server?.close());

const denied = { code: Status.PERMISSION_DENIED, reason: "PERMISSION_DENIED" };

describe("self-service scope", () => {
  it("is elected by default: a full login manages its own account", async () => {
    const full = await server.login("arcade", "gamer", "gamer-password");
    expect(full.grantedPermissions).toEqual(["game.profile.retrieve", "identity.self.*"]);
    const me = server.as(full.accessToken);
    expect((await me.users.getMe({})).user?.email).toBe("gamer@arcade.test");
    expect((await me.issue.listSessions({})).sessions.length).toBeGreaterThan(0);
    expect((await me.permissions.getEffectivePermissions({})).permissions).toContain("identity.self.set_password");
  });

  it("is absent from a token elected to a narrow scope, which cannot touch the account or its other sessions", async () => {
    const owner = await server.login("arcade", "gamer", "gamer-password");
    const narrow = await server.login("arcade", "gamer", "gamer-password", ["game.profile.retrieve"]);
    expect(narrow.grantedPermissions).toEqual(["game.profile.retrieve"]);
    const game = server.as(narrow.accessToken);
    await expectFailure(game.issue.listSessions({}), denied);
    await expectFailure(game.users.getMe({}), denied);
    await expectFailure(game.permissions.getEffectivePermissions({}), denied);
    await expectFailure(game.issue.revokeAllSessions({}), denied);
    await expectFailure(game.issue.revokeSession({ sessionId: owner.sessionId }), denied);
    await expectFailure(game.users.setPassword({ id: userId, currentPassword: "gamer-password", newPassword: "hijacked-password" }), denied);
    // The owner's full session is untouched, and the password too.
    await server.clients.verify.verifyToken({ token: owner.accessToken });
    await server.login("arcade", "gamer", "gamer-password");
    // Logging out of its own session needs nothing.
    await game.issue.revokeSession({});
    await expectFailure(server.clients.verify.verifyToken({ token: narrow.accessToken }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
  });

  it("can be elected piecemeal", async () => {
    const reader = await server.login("arcade", "gamer", "gamer-password", ["identity.self.retrieve"]);
    const client = server.as(reader.accessToken);
    expect((await client.users.getMe({})).user?.username).toBe("gamer");
    await expectFailure(client.issue.listSessions({}), denied);
  });
});
