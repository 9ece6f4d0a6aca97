import { Status } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectFailure } from "../support/errors.ts";
import { ADMIN_PASSWORD, startTestServer, type TestServer } from "../support/server.ts";

let server: TestServer;
let tenantId: string;
let admin: TestServer["clients"];

beforeAll(async () => {
  server = await startTestServer();
  admin = server.as(server.adminToken);
  const created = await admin.tenants.createTenant({ tenant: { name: "players", selfRegistrationEnabled: true } });
  tenantId = created.tenant!.id;
});
afterAll(() => server?.close());

describe("UserService", () => {
  it("creates a user whose password is never returned and who can log in", async () => {
    const { user } = await admin.users.createUser({ tenantId, user: { username: "alice", email: "Alice@Example.test", displayName: "Alice" }, password: "alice-password" });
    expect(user).toMatchObject({ tenantId, username: "alice", email: "Alice@Example.test", displayName: "Alice", disabled: false });
    expect(JSON.stringify(user)).not.toContain("alice-password");
    expect(JSON.stringify(user)).not.toContain("argon2");
    const login = await server.login("players", "alice", "alice-password");
    expect(login.accessToken).toMatch(/^ey/);
    // Login by e-mail, case-insensitively.
    await server.login("players", "alice@example.test", "alice-password");
  });

  it("keeps one namespace of login names: usernames cannot contain '@', so no e-mail can take over a username", async () => {
    await admin.users.createUser({ tenantId, user: { username: "boss" }, password: "boss-password" });
    // Today's attack: a stranger self-registers with an e-mail equal to the victim's username.
    await expectFailure(
      server.clients.users.registerUser({ tenant: "players", username: "stranger", email: "boss", password: "stranger-password", passwordConfirmation: "stranger-password" }),
      { code: Status.INVALID_ARGUMENT, reason: "INVALID_INPUT", fields: ["email"] },
    );
    await expectFailure(admin.users.createUser({ tenantId, user: { username: "boss@players.test" }, password: "stranger-password" }), {
      code: Status.INVALID_ARGUMENT,
      reason: "INVALID_INPUT",
      fields: ["user.username"],
    });
    // An e-mail whose local part is a username is a different login name, looked up as an e-mail only.
    await admin.users.createUser({ tenantId, user: { username: "other-boss", email: "boss@players.test" }, password: "other-boss-password" });
    const asBoss = await server.login("players", "boss", "boss-password");
    const asEmail = await server.login("players", "boss@players.test", "other-boss-password");
    expect(asBoss.sessionId).not.toBe(asEmail.sessionId);
    await expectFailure(server.login("players", "boss@players.test", "boss-password"), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
  });

  it("keeps usernames unique per tenant, ignoring case, but allows the same name in another tenant", async () => {
    await admin.users.createUser({ tenantId, user: { username: "bob" }, password: "bob-password" });
    await expectFailure(admin.users.createUser({ tenantId, user: { username: "BOB" }, password: "bob-password" }), {
      code: Status.ALREADY_EXISTS,
      reason: "ALREADY_EXISTS",
      fields: ["user.username"],
    });
    // The violated constraint says which field is taken.
    await admin.users.createUser({ tenantId, user: { username: "bob2", email: "Bob@Players.test" }, password: "bob-password" });
    await expectFailure(admin.users.createUser({ tenantId, user: { username: "bob3", email: "bob@players.test" }, password: "bob-password" }), {
      code: Status.ALREADY_EXISTS,
      reason: "ALREADY_EXISTS",
      fields: ["user.email"],
    });
    const other = await admin.tenants.createTenant({ tenant: { name: "other-players" } });
    const { user } = await admin.users.createUser({ tenantId: other.tenant!.id, user: { username: "bob" }, password: "bob-password" });
    expect(user?.tenantId).toBe(other.tenant!.id);
  });

  it("rejects invalid usernames, e-mails and passwords with field violations and creates nothing", async () => {
    await expectFailure(admin.users.createUser({ tenantId, user: { username: "has space", email: "nope" }, password: "x".repeat(129) }), {
      code: Status.INVALID_ARGUMENT,
      reason: "INVALID_INPUT",
      fields: ["user.username", "user.email", "password"],
    });
    await expectFailure(admin.users.createUser({ tenantId, user: { username: "shorty" }, password: "1234567" }), {
      code: Status.INVALID_ARGUMENT,
      reason: "WEAK_PASSWORD",
      fields: ["password"],
    });
    await expectFailure(admin.users.getUser({ tenantId, username: "shorty" }), { code: Status.NOT_FOUND, reason: "USER_NOT_FOUND" });
  });

  it("accepts a 12-character password of any characters (NIST SP 800-63B-4) and counts characters, not bytes", async () => {
    await expectFailure(admin.users.createUser({ tenantId, user: { username: "unicode" }, password: "пароль🔑🔑🔑🔑🔑" }), {
      code: Status.INVALID_ARGUMENT,
      reason: "WEAK_PASSWORD",
      fields: ["password"],
    });
    await admin.users.createUser({ tenantId, user: { username: "unicode" }, password: "пароль🔑🔑🔑🔑🔑🔑" });
    await server.login("players", "unicode", "пароль🔑🔑🔑🔑🔑🔑");
  });

  it("refuses breached and common passwords with WEAK_PASSWORD, and the username as password", async () => {
    for (const [username, password] of [["breached", "passwordpassword"], ["breached", "1qaz2wsx3edc4rfv"], ["selfie-20245", "Selfie-20245"]]) {
      await expectFailure(admin.users.createUser({ tenantId, user: { username }, password }), {
        code: Status.INVALID_ARGUMENT,
        reason: "WEAK_PASSWORD",
        fields: ["password"],
      });
    }
  });

  it("gets a user by id or username and reports a missing one as NOT_FOUND", async () => {
    const { user } = await admin.users.createUser({ tenantId, user: { username: "carol" }, password: "carol-password" });
    expect((await admin.users.getUser({ tenantId, id: user!.id })).user?.username).toBe("carol");
    expect((await admin.users.getUser({ tenantId, username: "Carol" })).user?.id).toBe(user!.id);
    await expectFailure(admin.users.getUser({ tenantId, id: crypto.randomUUID() }), { code: Status.NOT_FOUND, reason: "USER_NOT_FOUND" });
    await expectFailure(admin.users.getUser({ tenantId, id: "not-a-uuid" }), { code: Status.INVALID_ARGUMENT, reason: "INVALID_INPUT", fields: ["id"] });
    await expectFailure(admin.users.getUser({ tenantId }), { code: Status.INVALID_ARGUMENT, reason: "INVALID_INPUT" });
  });

  it("lists users by username with prefix filters and pagination", async () => {
    for (const name of ["list-c", "list-a", "list-b"]) {
      await admin.users.createUser({ tenantId, user: { username: name, email: `${name}@mail.test` }, password: "list-password" });
    }
    const names: string[] = [];
    let pageToken = "";
    do {
      const page = await admin.users.listUsers({ tenantId, pageSize: 2, pageToken, usernamePrefix: "list-" });
      names.push(...page.users.map((u) => u.username));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(names).toEqual(["list-a", "list-b", "list-c"]);
    const byEmail = await admin.users.listUsers({ tenantId, emailPrefix: "LIST-B@" });
    expect(byEmail.users.map((u) => u.username)).toEqual(["list-b"]);
    // LIKE wildcards in a prefix are literal.
    expect((await admin.users.listUsers({ tenantId, usernamePrefix: "%" })).users).toEqual([]);
  });

  it("updates only masked fields; disabling revokes the user's sessions at once", async () => {
    const { user } = await admin.users.createUser({ tenantId, user: { username: "dave" }, password: "dave-password" });
    const { accessToken } = await server.login("players", "dave", "dave-password");
    const updated = await admin.users.updateUser({ tenantId, user: { ...user!, displayName: "Dave", username: "ignored" }, updateMask: ["display_name"] });
    expect(updated.user).toMatchObject({ username: "dave", displayName: "Dave" });
    await admin.users.updateUser({ tenantId, user: { ...user!, disabled: true }, updateMask: ["disabled"] });
    await expectFailure(server.clients.verify.verifyToken({ token: accessToken }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
    await expectFailure(server.login("players", "dave", "dave-password"), { code: Status.UNAUTHENTICATED, reason: "USER_DISABLED" });
  });

  it("deletes a user and its tokens stop verifying at once", async () => {
    const { user } = await admin.users.createUser({ tenantId, user: { username: "erin" }, password: "erin-password" });
    const { accessToken } = await server.login("players", "erin", "erin-password");
    await server.clients.verify.verifyToken({ token: accessToken });
    await admin.users.deleteUser({ tenantId, id: user!.id });
    await expectFailure(server.clients.verify.verifyToken({ token: accessToken }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
    await expectFailure(server.login("players", "erin", "erin-password"), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
  });

  it("protects the bootstrap administrator from deletion and disabling", async () => {
    const me = await admin.users.getMe({});
    await expectFailure(admin.users.deleteUser({ id: me.user!.id }), { code: Status.FAILED_PRECONDITION, reason: "PROTECTED_RESOURCE" });
    await expectFailure(admin.users.updateUser({ user: { ...me.user!, disabled: true }, updateMask: ["disabled"] }), {
      code: Status.FAILED_PRECONDITION,
      reason: "PROTECTED_RESOURCE",
    });
  });

  it("lets a user change its own password only with the current one; admins reset without it", async () => {
    const { user } = await admin.users.createUser({ tenantId, user: { username: "frank" }, password: "frank-password" });
    const { accessToken } = await server.login("players", "frank", "frank-password");
    const frank = server.as(accessToken);
    await expectFailure(frank.users.setPassword({ id: user!.id, newPassword: "frank-new-password" }), {
      code: Status.INVALID_ARGUMENT,
      reason: "INVALID_INPUT",
      fields: ["current_password"],
    });
    await expectFailure(frank.users.setPassword({ id: user!.id, newPassword: "frank-new-password", currentPassword: "wrong-password" }), {
      code: Status.UNAUTHENTICATED,
      reason: "INVALID_CREDENTIALS",
    });
    const other = await server.login("players", "frank", "frank-password");
    await frank.users.setPassword({ id: user!.id, newPassword: "frank-new-password", currentPassword: "frank-password" });
    // A new password ends every session, the caller's included: a stolen refresh token dies with the old password.
    await expectFailure(server.clients.verify.verifyToken({ token: accessToken }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
    await expectFailure(server.clients.refresh.refresh({ refreshToken: other.refreshToken }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
    const renewed = await server.login("players", "frank", "frank-new-password");
    await admin.users.setPassword({ tenantId, id: user!.id, newPassword: "frank-reset-password" });
    await expectFailure(server.clients.verify.verifyToken({ token: renewed.accessToken }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
    await server.login("players", "frank", "frank-reset-password");
    await expectFailure(server.login("players", "frank", "frank-new-password"), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
  });

  it("returns the caller from GetMe", async () => {
    const me = await admin.users.getMe({});
    expect(me.user).toMatchObject({ username: "admin" });
    await server.login("system", "admin", ADMIN_PASSWORD);
  });

  it("self-registers into a tenant that allows it, with password confirmation", async () => {
    const { user } = await server.clients.users.registerUser({ tenant: "players", username: "gamer", password: "gamer-password", passwordConfirmation: "gamer-password" });
    expect(user).toMatchObject({ tenantId, username: "gamer" });
    await server.login("players", "gamer", "gamer-password");
    await expectFailure(
      server.clients.users.registerUser({ tenant: "players", username: "gamer2", password: "gamer-password", passwordConfirmation: "gamer-passw0rd" }),
      { code: Status.INVALID_ARGUMENT, reason: "PASSWORD_MISMATCH", fields: ["password_confirmation"] },
    );
    await expectFailure(
      server.clients.users.registerUser({ tenant: "players", username: "gamer", password: "gamer-password", passwordConfirmation: "gamer-password" }),
      { code: Status.ALREADY_EXISTS, reason: "ALREADY_EXISTS" },
    );
    await expectFailure(
      server.clients.users.registerUser({ tenant: "system", username: "intruder", password: "gamer-password", passwordConfirmation: "gamer-password" }),
      { code: Status.PERMISSION_DENIED, reason: "SELF_REGISTRATION_DISABLED" },
    );
    await expectFailure(
      server.clients.users.registerUser({ tenant: "nowhere", username: "x1", password: "gamer-password", passwordConfirmation: "gamer-password" }),
      { code: Status.NOT_FOUND, reason: "TENANT_NOT_FOUND" },
    );
  });

  it("keeps tenants apart: a tenant admin cannot read or create users in another tenant", async () => {
    await admin.tenants.createTenant({ tenant: { name: "rival" }, admin: { username: "rival-admin", password: "rival-password" } });
    const { accessToken } = await server.login("rival", "rival-admin", "rival-password");
    const rival = server.as(accessToken);
    await expectFailure(rival.users.listUsers({ tenantId }), { code: Status.PERMISSION_DENIED, reason: "PERMISSION_DENIED" });
    await expectFailure(rival.users.createUser({ tenantId, user: { username: "mole" }, password: "mole-password" }), {
      code: Status.PERMISSION_DENIED,
      reason: "PERMISSION_DENIED",
    });
    // In its own tenant the same admin may.
    const own = await rival.users.listUsers({});
    expect(own.users.map((u) => u.username)).toEqual(["rival-admin"]);
  });
});
