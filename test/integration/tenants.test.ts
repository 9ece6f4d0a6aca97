import { Status } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectFailure } from "../support/errors.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server?.close());

describe("TenantService", () => {
  it("creates a tenant with its first admin, who can then log in and manage only that tenant", async () => {
    const admin = server.as(server.adminToken);
    const created = await admin.tenants.createTenant({
      tenant: { name: "acme", displayName: "Acme", domains: ["mc.acme.test"] },
      admin: { username: "boss", email: "boss@acme.test", password: "boss-password-1" },
    });
    expect(created.tenant).toMatchObject({ name: "acme", displayName: "Acme", domains: ["mc.acme.test"], disabled: false });
    expect(created.admin).toMatchObject({ username: "boss", tenantId: created.tenant!.id });

    const { accessToken } = await server.login("acme", "boss", "boss-password-1");
    const boss = server.as(accessToken);
    const own = await boss.tenants.getTenant({ name: "acme" });
    expect(own.tenant?.id).toBe(created.tenant!.id);
    await expectFailure(boss.tenants.getTenant({ name: "system" }), { code: Status.NOT_FOUND, reason: "TENANT_NOT_FOUND" });
    await expectFailure(boss.tenants.listTenants({}), { code: Status.PERMISSION_DENIED, reason: "PERMISSION_DENIED" });
  });

  it("rejects a duplicate tenant name or domain with ALREADY_EXISTS and changes nothing", async () => {
    const admin = server.as(server.adminToken);
    await admin.tenants.createTenant({ tenant: { name: "dupe", domains: ["dupe.test"] } });
    await expectFailure(admin.tenants.createTenant({ tenant: { name: "dupe" } }), { code: Status.ALREADY_EXISTS, reason: "ALREADY_EXISTS" });
    await expectFailure(admin.tenants.createTenant({ tenant: { name: "dupe-two", domains: ["dupe.test"] } }), {
      code: Status.ALREADY_EXISTS,
      reason: "ALREADY_EXISTS",
    });
    await expectFailure(admin.tenants.getTenant({ name: "dupe-two" }), { code: Status.NOT_FOUND, reason: "TENANT_NOT_FOUND" });
    // A host belongs to one tenant whatever the port: the port form would take the other's logins.
    await expectFailure(admin.tenants.createTenant({ tenant: { name: "dupe-port", domains: ["dupe.test:25565"] } }), {
      code: Status.ALREADY_EXISTS,
      reason: "ALREADY_EXISTS",
      fields: ["tenant.domains[0]"],
    });
    const ported = await admin.tenants.createTenant({ tenant: { name: "ported", domains: ["play.ported.test:25565"] } });
    await expectFailure(admin.tenants.createTenant({ tenant: { name: "unported", domains: ["play.ported.test"] } }), { code: Status.ALREADY_EXISTS, reason: "ALREADY_EXISTS" });
    // The tenant itself may list its host with and without ports.
    await admin.tenants.updateTenant({ tenant: { id: ported.tenant!.id, domains: ["play.ported.test", "play.ported.test:25565"] }, updateMask: ["domains"] });
  });

  it("reports every invalid field at once and creates nothing", async () => {
    const admin = server.as(server.adminToken);
    await expectFailure(
      admin.tenants.createTenant({
        tenant: { name: "Bad Name!", displayName: "x", domains: ["not a host"] },
        admin: { username: "ok", email: "not-an-email", password: "x" },
      }),
      { code: Status.INVALID_ARGUMENT, reason: "INVALID_INPUT", fields: ["tenant.name", "tenant.domains[0]", "admin.email", "admin.password"] },
    );
    const list = await admin.tenants.listTenants({ namePrefix: "b" });
    expect(list.tenants).toEqual([]);
  });

  it("refuses a field over its declared limit before anything else (and creates nothing)", async () => {
    const admin = server.as(server.adminToken);
    const error = await expectFailure(admin.tenants.createTenant({ tenant: { name: "limits", displayName: "x".repeat(201) } }), {
      code: Status.INVALID_ARGUMENT,
      reason: "INVALID_INPUT",
      fields: ["tenant.display_name"],
    });
    expect(error.details).toContain("at most 200 characters");
    await expectFailure(admin.tenants.getTenant({ name: "limits" }), { code: Status.NOT_FOUND, reason: "TENANT_NOT_FOUND" });
  });

  it("rejects a weak admin password with WEAK_PASSWORD", async () => {
    await expectFailure(
      server.as(server.adminToken).tenants.createTenant({ tenant: { name: "weak" }, admin: { username: "a", password: "short" } }),
      { code: Status.INVALID_ARGUMENT, reason: "WEAK_PASSWORD", fields: ["admin.password"] },
    );
  });

  it("lists tenants in name order across pages, with a prefix filter", async () => {
    const admin = server.as(server.adminToken);
    for (const name of ["page-c", "page-a", "page-b", "page-d", "other"]) await admin.tenants.createTenant({ tenant: { name } });
    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await admin.tenants.listTenants({ pageSize: 2, pageToken, namePrefix: "page-" });
      expect(page.tenants.length).toBeLessThanOrEqual(2);
      seen.push(...page.tenants.map((t) => t.name));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(seen).toEqual(["page-a", "page-b", "page-c", "page-d"]);
  });

  it("refuses a page token from another query and a page size out of range", async () => {
    const admin = server.as(server.adminToken);
    const first = await admin.tenants.listTenants({ pageSize: 1 });
    expect(first.nextPageToken).not.toBe("");
    await expectFailure(admin.tenants.listTenants({ pageSize: 1, pageToken: first.nextPageToken, namePrefix: "x" }), {
      code: Status.INVALID_ARGUMENT,
      reason: "INVALID_PAGE_TOKEN",
    });
    await expectFailure(admin.tenants.listTenants({ pageToken: "garbage" }), { code: Status.INVALID_ARGUMENT, reason: "INVALID_PAGE_TOKEN" });
    await expectFailure(admin.tenants.listTenants({ pageSize: 5000 }), { code: Status.INVALID_ARGUMENT, reason: "INVALID_INPUT", fields: ["page_size"] });
  });

  it("updates only the masked fields and rejects unknown mask paths", async () => {
    const admin = server.as(server.adminToken);
    const { tenant } = await admin.tenants.createTenant({ tenant: { name: "masked", displayName: "Before" } });
    const updated = await admin.tenants.updateTenant({
      tenant: { ...tenant!, displayName: "After", name: "ignored-name" },
      updateMask: ["display_name"],
    });
    expect(updated.tenant).toMatchObject({ name: "masked", displayName: "After" });
    await expectFailure(admin.tenants.updateTenant({ tenant: tenant!, updateMask: ["id"] }), {
      code: Status.INVALID_ARGUMENT,
      reason: "INVALID_INPUT",
      fields: ["update_mask"],
    });
    await expectFailure(admin.tenants.updateTenant({ tenant: tenant!, updateMask: [] }), { code: Status.INVALID_ARGUMENT, reason: "INVALID_INPUT" });
  });

  it("protects the system tenant from deletion, renaming and disabling", async () => {
    const admin = server.as(server.adminToken);
    const { tenant } = await admin.tenants.getTenant({ name: "system" });
    await expectFailure(admin.tenants.deleteTenant({ id: tenant!.id }), { code: Status.FAILED_PRECONDITION, reason: "PROTECTED_RESOURCE" });
    await expectFailure(admin.tenants.updateTenant({ tenant: { ...tenant!, disabled: true }, updateMask: ["disabled"] }), {
      code: Status.FAILED_PRECONDITION,
      reason: "PROTECTED_RESOURCE",
    });
  });

  it("deletes a tenant with its users, whose tokens stop verifying at once", async () => {
    const admin = server.as(server.adminToken);
    const { tenant } = await admin.tenants.createTenant({ tenant: { name: "doomed" }, admin: { username: "d", password: "doomed-password" } });
    const { accessToken } = await server.login("doomed", "d", "doomed-password");
    await server.clients.verify.verifyToken({ token: accessToken });
    await admin.tenants.deleteTenant({ id: tenant!.id });
    await expectFailure(server.clients.verify.verifyToken({ token: accessToken }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
    await expectFailure(admin.tenants.getTenant({ id: tenant!.id }), { code: Status.NOT_FOUND, reason: "TENANT_NOT_FOUND" });
  });

  it("revokes a disabled tenant's sessions for good, and lets its users log in again at once when re-enabled", async () => {
    const admin = server.as(server.adminToken);
    const { tenant } = await admin.tenants.createTenant({ tenant: { name: "paused" }, admin: { username: "p", password: "paused-password" } });
    const before = await server.login("paused", "p", "paused-password");
    await server.clients.verify.verifyToken({ token: before.accessToken });
    await admin.tenants.updateTenant({ tenant: { id: tenant!.id, disabled: true }, updateMask: ["disabled"] });
    await expectFailure(server.clients.verify.verifyToken({ token: before.accessToken }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
    await expectFailure(server.clients.refresh.refresh({ refreshToken: before.refreshToken }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
    await expectFailure(server.login("paused", "p", "paused-password"), { code: Status.UNAUTHENTICATED, reason: "TENANT_DISABLED" });
    await admin.tenants.updateTenant({ tenant: { id: tenant!.id, disabled: false }, updateMask: ["disabled"] });
    // The old session stays revoked: its refresh token does not rotate again, its access token does not verify.
    await expectFailure(server.clients.refresh.refresh({ refreshToken: before.refreshToken }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
    await expectFailure(server.clients.verify.verifyToken({ token: before.accessToken }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
    // A new login works at once, and so do its tokens.
    const after = await server.login("paused", "p", "paused-password");
    const me = (await server.as(after.accessToken).users.getMe({})).user;
    expect((await server.clients.verify.verifyToken({ token: after.accessToken })).principal?.subject).toBe(me?.id);
    expect((await server.clients.refresh.refresh({ refreshToken: after.refreshToken })).refreshToken).toMatch(/^tsr_/);
  });

  it("refuses anonymous tenant creation unless open signup is configured", async () => {
    await expectFailure(server.clients.tenants.createTenant({ tenant: { name: "anon" } }), {
      code: Status.PERMISSION_DENIED,
      reason: "TENANT_SIGNUP_DISABLED",
    });
  });
});
