import { Status } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectFailure } from "../support/errors.ts";
import { userGrants } from "../../src/permissions/index.ts";
import { startTestServer, type TestServer } from "../support/server.ts";


/** The identity.self.* codenames every user holds on its own account. */
const SELF_CODENAMES = ["identity.self.list_sessions", "identity.self.publish_keys", "identity.self.retrieve", "identity.self.revoke_sessions", "identity.self.set_password"];
let server: TestServer;
let admin: TestServer["clients"];

const GAME_V1 = {
  name: "game",
  version: "1.0.0",
  permissions: [
    { codename: "game.profile.retrieve", description: "Read a player profile" },
    { codename: "game.profile.update", description: "Change a player profile" },
    { codename: "game.match.create", description: "Start a match" },
  ],
};

beforeAll(async () => {
  server = await startTestServer();
  admin = server.as(server.adminToken);
  await admin.permissions.registerMicroservice(GAME_V1);
});
afterAll(() => server?.close());

async function tenantWithPlayer(name: string) {
  const { tenant } = await admin.tenants.createTenant({ tenant: { name, selfRegistrationEnabled: true }, admin: { username: `${name}-admin`, password: "tenant-admin-password" } });
  await server.clients.users.registerUser({ tenant: name, username: "player", password: "player-password", passwordConfirmation: "player-password" });
  const tenantAdmin = server.as((await server.login(name, `${name}-admin`, "tenant-admin-password")).accessToken);
  return { tenant: tenant!, tenantAdmin };
}

describe("RegisterMicroservice", () => {
  it("is idempotent for the same name and version", async () => {
    const again = await admin.permissions.registerMicroservice(GAME_V1);
    expect(again.changed).toBe(false);
    expect(again.microservice?.permissions.map((p) => p.codename)).toEqual(["game.match.create", "game.profile.retrieve", "game.profile.update"]);
  });

  it("registers a new microservice sent by several instances at once exactly once, refusing none", async () => {
    const request = { name: "lobby", version: "1.0.0", permissions: [{ codename: "lobby.room.join", description: "join rooms" }] };
    const results = await Promise.all(Array.from({ length: 6 }, () => admin.permissions.registerMicroservice(request)));
    expect(results.filter((r) => r.changed)).toHaveLength(1);
    for (const r of results) expect(r.microservice?.permissions.map((p) => p.codename)).toEqual(["lobby.room.join"]);
  });

  it.each([
    [{ ...GAME_V1, name: "Game" }, "name"],
    [{ ...GAME_V1, name: "1game" }, "name"],
    [{ ...GAME_V1, version: "1.0" }, "version"],
    [{ ...GAME_V1, version: "v1.0.0" }, "version"],
    [{ ...GAME_V1, permissions: [{ codename: "other.profile.retrieve", description: "" }] }, "permissions[0].codename"],
    [{ ...GAME_V1, permissions: [{ codename: "game.profile", description: "" }] }, "permissions[0].codename"],
    [{ ...GAME_V1, permissions: [{ codename: "game.profile.Retrieve", description: "" }] }, "permissions[0].codename"],
    [{ ...GAME_V1, permissions: [{ codename: "game.*.retrieve", description: "" }] }, "permissions[0].codename"],
    [{ ...GAME_V1, permissions: [GAME_V1.permissions[0]!, GAME_V1.permissions[0]!] }, "permissions[1].codename"],
  ])("rejects %j with a violation on %s", async (request, field) => {
    await expectFailure(admin.permissions.registerMicroservice({ ...request, version: request.version === GAME_V1.version ? "9.0.0" : request.version }), {
      code: Status.INVALID_ARGUMENT,
      reason: "INVALID_INPUT",
      fields: [field],
    });
    const { microservices } = await admin.permissions.listMicroservices({});
    expect(microservices.find((m) => m.name === "game")?.version).toBe("1.0.0");
  });

  it("reserves the name identity and is refused to tenant admins", async () => {
    await expectFailure(admin.permissions.registerMicroservice({ name: "identity", version: "9.9.9", permissions: [] }), { code: Status.PERMISSION_DENIED, reason: "PERMISSION_DENIED" });
    const { tenantAdmin } = await tenantWithPlayer("no-register");
    await expectFailure(tenantAdmin.permissions.registerMicroservice({ ...GAME_V1, version: "2.0.0" }), { code: Status.PERMISSION_DENIED, reason: "PERMISSION_DENIED" });
  });

  it("lists the catalogue with a wildcard filter", async () => {
    const { permissions } = await admin.permissions.listPermissions({ filter: "game.profile.*" });
    expect(permissions.map((p) => p.codename)).toEqual(["game.profile.retrieve", "game.profile.update"]);
    const identity = await admin.permissions.listPermissions({ filter: "identity.users.*", pageSize: 2 });
    expect(identity.permissions).toHaveLength(2);
    expect(identity.nextPageToken).not.toBe("");
  });
});

describe("OpenMatchmaking flows", () => {
  it("gives every new tenant a 'Game client' default group that auto-grants retrieve and update, but never identity.*", async () => {
    const { tenant, tenantAdmin } = await tenantWithPlayer("arena");
    const { group } = await tenantAdmin.permissions.getGroup({ name: "Game client" });
    // The tenant's first admin and the self-registered player both joined it.
    expect(group).toMatchObject({ tenantId: tenant.id, default: true, autoGrantPatterns: ["*.*.retrieve", "*.*.update"], memberCount: 2 });
    expect(group!.permissions).toEqual(["game.profile.retrieve", "game.profile.update"]);
  });

  it("registers a game client into the default group; users/me shows its groups and permissions", async () => {
    await tenantWithPlayer("lobby");
    const login = await server.login("lobby", "player", "player-password");
    const me = await server.as(login.accessToken).users.getMe({});
    expect(me.user?.username).toBe("player");
    expect(me.groups.map((g) => g.name)).toEqual(["Game client"]);
    // Beside its groups' grants every user holds identity.self.* on its own account.
    expect(me.permissions).toEqual(["game.profile.retrieve", "game.profile.update", ...SELF_CODENAMES]);
    expect(login.grantedPermissions).toEqual(["game.profile.retrieve", "game.profile.update", "identity.self.*"]);
    const player = server.as(login.accessToken);
    expect((await player.verify.checkPermission({ permission: "game.profile.retrieve" })).allowed).toBe(true);
    expect((await player.verify.checkPermission({ permission: "game.match.create" })).allowed).toBe(false);
    expect((await player.verify.checkPermission({ permission: "identity.users.update" })).allowed).toBe(false);
  });

  it("refuses to elect a permission above the grants (Argus)", async () => {
    await tenantWithPlayer("elect");
    await expectFailure(server.login("elect", "player", "player-password", ["game.match.create"]), { code: Status.PERMISSION_DENIED, reason: "PERMISSION_NOT_GRANTED" });
    await expectFailure(server.login("elect", "player", "player-password", ["game.*.*"]), { code: Status.PERMISSION_DENIED, reason: "PERMISSION_NOT_GRANTED" });
    const elected = await server.login("elect", "player", "player-password", ["game.profile.retrieve"]);
    expect(elected.grantedPermissions).toEqual(["game.profile.retrieve"]);
  });

  it("re-registering a new version drops removed permissions from every group, and live tokens reflect it without a new login", async () => {
    await tenantWithPlayer("versions");
    const login = await server.login("versions", "player", "player-password");
    expect((await server.clients.verify.verifyToken({ token: login.accessToken })).principal?.permissions).toContain("game.profile.update");

    const result = await admin.permissions.registerMicroservice({
      name: "game",
      version: "1.1.0",
      permissions: [
        { codename: "game.profile.retrieve", description: "Read a player profile" },
        { codename: "game.match.create", description: "Start a match" },
        { codename: "game.stats.retrieve", description: "Read statistics" },
      ],
    });
    expect(result).toMatchObject({ changed: true, removedPermissions: ["game.profile.update"] });

    const verified = await server.clients.verify.verifyToken({ token: login.accessToken });
    expect(verified.principal?.permissions).toEqual(["game.profile.retrieve", "identity.self.*"]);
    const { permissions: catalogue } = await admin.permissions.listPermissions({ filter: "game.*.*" });
    expect(catalogue.map((p) => p.codename)).toEqual(["game.match.create", "game.profile.retrieve", "game.stats.retrieve"]);
    // The default group lost the dropped permission and auto-granted the new retrieve one.
    const me = await server.as(login.accessToken).users.getMe({});
    expect(me.groups[0]!.permissions).toEqual(["game.profile.retrieve", "game.stats.retrieve"]);
    // A refresh recomputes from current grants, never above the session's elected set.
    const refreshed = await server.clients.refresh.refresh({ refreshToken: login.refreshToken });
    expect(refreshed.grantedPermissions).toEqual(["game.profile.retrieve", "identity.self.*"]);
  });
});

describe("grants", () => {
  it("are computed alike by the login query and by the ORM path (GetEffectivePermissions)", async () => {
    const { tenant } = await admin.tenants.createTenant({ tenant: { name: "grant-agree" } });
    const tenantId = tenant!.id;
    const { user } = await admin.users.createUser({ tenantId, user: { username: "many" }, password: "many-groups-password" });
    // Overlapping and redundant patterns across groups, and a group the user is not in.
    const groups = [["game.*.*", "game.profile.retrieve"], ["*.match.*", "game.match.create"], ["lobby.room.join", "identity.self.retrieve"], ["*.*.delete"]];
    for (const [i, patterns] of groups.entries()) {
      const { group } = await admin.permissions.createGroup({ tenantId, group: { name: `g${i}`, permissions: patterns } });
      if (i < 3) await admin.permissions.addGroupMembers({ tenantId, groupId: group!.id, userIds: [user!.id] });
    }
    const login = await server.login("grant-agree", "many", "many-groups-password");
    const effective = await admin.permissions.getEffectivePermissions({ tenantId, userId: user!.id });
    // The login query (SQL) and the ORM path (grantedPatterns, used by refresh and GetEffectivePermissions) agree.
    expect([...login.grantedPermissions].sort()).toEqual(userGrants(effective.grants).sort());
    const refreshed = await server.clients.refresh.refresh({ refreshToken: login.refreshToken });
    expect([...refreshed.grantedPermissions].sort()).toEqual([...login.grantedPermissions].sort());
    expect(login.grantedPermissions).toEqual(expect.arrayContaining(["game.*.*", "*.match.*", "lobby.room.join", "identity.self.*"]));
    expect(login.grantedPermissions).not.toContain("game.profile.retrieve"); // covered by game.*.*
    expect(login.grantedPermissions).not.toContain("*.*.delete");
  });
});

describe("groups", () => {
  it("grants wildcard patterns to members, and a removed grant takes effect at once", async () => {
    const { tenant, tenantAdmin } = await tenantWithPlayer("guild");
    const { group } = await tenantAdmin.permissions.createGroup({ group: { name: "moderators", permissions: ["game.*.*"] } });
    const { user } = await tenantAdmin.users.getUser({ username: "player" });
    await tenantAdmin.permissions.addGroupMembers({ groupId: group!.id, userIds: [user!.id, user!.id] });
    const login = await server.login("guild", "player", "player-password");
    const player = server.as(login.accessToken);
    expect((await player.verify.checkPermission({ permission: "game.match.create" })).allowed).toBe(true);
    expect((await tenantAdmin.permissions.getEffectivePermissions({ userId: user!.id })).permissions).toEqual([
      "game.match.create",
      "game.profile.retrieve",
      "game.stats.retrieve",
      ...SELF_CODENAMES,
    ]);

    await tenantAdmin.permissions.removeGroupMembers({ groupId: group!.id, userIds: [user!.id] });
    expect((await player.verify.checkPermission({ permission: "game.match.create" })).allowed).toBe(false);
    expect((await tenantAdmin.permissions.getGroup({ id: group!.id })).group?.memberCount).toBe(0);
    expect(tenant.id).toBe(group!.tenantId);
  });

  it("updates masked fields, lists in name order, and deletes", async () => {
    const { tenantAdmin } = await tenantWithPlayer("crud");
    const { group } = await tenantAdmin.permissions.createGroup({ group: { name: "b-team", description: "before", permissions: ["game.profile.retrieve"] } });
    await tenantAdmin.permissions.createGroup({ group: { name: "a-team" } });
    const updated = await tenantAdmin.permissions.updateGroup({ group: { ...group!, description: "after", name: "ignored" }, updateMask: ["description"] });
    expect(updated.group).toMatchObject({ name: "b-team", description: "after" });
    const { groups } = await tenantAdmin.permissions.listGroups({});
    expect(groups.map((g) => g.name)).toEqual(["Game client", "a-team", "administrators", "b-team"]);
    await expectFailure(tenantAdmin.permissions.createGroup({ group: { name: "a-team" } }), { code: Status.ALREADY_EXISTS, reason: "ALREADY_EXISTS" });
    await tenantAdmin.permissions.deleteGroup({ id: group!.id });
    await expectFailure(tenantAdmin.permissions.getGroup({ id: group!.id }), { code: Status.NOT_FOUND, reason: "GROUP_NOT_FOUND" });
  });

  it("rejects invalid grant patterns with field violations", async () => {
    const { tenantAdmin } = await tenantWithPlayer("patterns");
    await expectFailure(tenantAdmin.permissions.createGroup({ group: { name: "bad", permissions: ["game.profile", "game.pro*.x"], autoGrantPatterns: ["*"] } }), {
      code: Status.INVALID_ARGUMENT,
      reason: "INVALID_INPUT",
      fields: ["group.permissions[0]", "group.permissions[1]", "group.auto_grant_patterns[0]"],
    });
    await expectFailure(tenantAdmin.permissions.createGroup({ group: { name: "" } }), { code: Status.INVALID_ARGUMENT, reason: "INVALID_INPUT", fields: ["group.name"] });
  });

  it("keeps tenants' groups apart", async () => {
    const red = await tenantWithPlayer("red");
    const blue = await tenantWithPlayer("blue");
    const { group: redGroup } = await red.tenantAdmin.permissions.createGroup({ group: { name: "red-only", permissions: ["game.*.*"] } });
    // Blue's admin can neither name red's tenant nor reach red's group through its own.
    await expectFailure(blue.tenantAdmin.permissions.listGroups({ tenantId: red.tenant.id }), { code: Status.PERMISSION_DENIED, reason: "PERMISSION_DENIED" });
    await expectFailure(blue.tenantAdmin.permissions.getGroup({ id: redGroup!.id }), { code: Status.NOT_FOUND, reason: "GROUP_NOT_FOUND" });
    await expectFailure(blue.tenantAdmin.permissions.deleteGroup({ id: redGroup!.id }), { code: Status.NOT_FOUND, reason: "GROUP_NOT_FOUND" });
    // Nor add its own player to red's group, nor red's player to its groups.
    const { user: bluePlayer } = await blue.tenantAdmin.users.getUser({ username: "player" });
    await expectFailure(red.tenantAdmin.permissions.addGroupMembers({ groupId: redGroup!.id, userIds: [bluePlayer!.id] }), { code: Status.NOT_FOUND, reason: "USER_NOT_FOUND" });
    expect((await red.tenantAdmin.permissions.getGroup({ id: redGroup!.id })).group?.memberCount).toBe(0);
  });

  it("protects the system administrators group", async () => {
    const { group } = await admin.permissions.getGroup({ name: "administrators" });
    await expectFailure(admin.permissions.deleteGroup({ id: group!.id }), { code: Status.FAILED_PRECONDITION, reason: "PROTECTED_RESOURCE" });
    const me = await admin.users.getMe({});
    await expectFailure(admin.permissions.removeGroupMembers({ groupId: group!.id, userIds: [me.user!.id] }), { code: Status.FAILED_PRECONDITION, reason: "PROTECTED_RESOURCE" });
    await expectFailure(admin.permissions.updateGroup({ group: { ...group!, permissions: [] }, updateMask: ["permissions"] }), {
      code: Status.FAILED_PRECONDITION,
      reason: "PROTECTED_RESOURCE",
    });
  });
});
