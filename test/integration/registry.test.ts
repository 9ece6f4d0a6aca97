// The Region System over the public API, with this server's own registry
// (TESSERA_REGISTRY_SELF): regions and capabilities, the signed document and
// DNS zone, service assertions (VerifyToken), token exchange (IssueToken),
// revocation at once, and the user flow (a user's own key for one of its groups).
import { Status } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PrincipalKind } from "@tessera/client";
import { expectFailure } from "../support/errors.ts";
import { serviceKey, signAssertion, type ServiceKey } from "../support/assertions.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { decodePart } from "../support/tokens.ts";

const SELF = "https://id.tessera.test/registry.json";
/** The receiver assertions are signed for (VerifyToken's audience; never this server's issuer, which is token exchange's). */
const AUD = "reports";
let server: TestServer;
let admin: TestServer["clients"];
let key: ServiceKey;
const inAnHour = () => new Date(Date.now() + 3600_000);

beforeAll(async () => {
  server = await startTestServer({ TESSERA_REGISTRY_SELF: SELF, TESSERA_ISSUER: "https://id.tessera.test" });
  admin = server.as(server.adminToken);
  // The capability's permissions are those of the tenant's group of the same name.
  await admin.permissions.registerMicroservice({ name: "billing", version: "1.0.0", permissions: [{ codename: "billing.invoices.retrieve", description: "" }, { codename: "billing.invoices.create", description: "" }] });
  await admin.permissions.createGroup({ group: { name: "billing-reader", permissions: ["billing.invoices.retrieve"], default: false, autoGrantPatterns: [], description: "" } } as never);
  await admin.registry.createRegion({ region: { id: "billing-api", alias: "Billing API", active: true } as never });
  key = serviceKey("Ed25519");
  await admin.registry.publishCapability({ regionId: "billing-api", capability: "billing-reader", publicKey: key.publicJwk, expireTime: inAnHour() });
}, 60_000);

afterAll(async () => {
  await server?.close();
});

const assertion = (overrides: Partial<Parameters<typeof signAssertion>[1]> = {}, k = key) =>
  signAssertion(k, { region: "billing-api", capability: "billing-reader", registry: SELF, aud: AUD, ...overrides });

describe("service assertions of this server's own registry", () => {
  it("verify as the service, with its capability's group permissions and region meta, once", async () => {
    const token = assertion();
    const { principal } = await server.clients.verify.verifyToken({ token, audience: AUD });
    expect(principal).toMatchObject({ kind: PrincipalKind.PRINCIPAL_KIND_SERVICE, subject: "billing-api", tenantName: "system", sessionId: "", permissions: ["billing.invoices.retrieve"] });
    expect(principal?.region).toMatchObject({ id: "billing-api", capability: "billing-reader", registry: SELF });
    await expectFailure(server.clients.verify.verifyToken({ token, audience: AUD }), { code: Status.UNAUTHENTICATED, reason: "ASSERTION_REPLAYED" });
  });

  it("exchange for a short-lived access token without a refresh token, refused at once when revoked", async () => {
    const k = serviceKey("P-521");
    await admin.registry.createRegion({ region: { id: "report-svc", alias: "", active: true } as never });
    const published = await admin.registry.publishCapability({ regionId: "report-svc", capability: "billing-reader", publicKey: k.publicPem, expireTime: inAnHour() });
    expect(published.capability?.algorithm).toBe("ES512");
    const issued = await server.clients.issue.issueToken({
      credential: { $case: "serviceAssertion", value: { assertion: signAssertion(k, { region: "report-svc", capability: "billing-reader", registry: SELF, aud: "https://id.tessera.test" }) } },
      requestedPermissions: [],
      audience: "",
    });
    expect(issued).toMatchObject({ refreshToken: "", principalKind: PrincipalKind.PRINCIPAL_KIND_SERVICE, grantedPermissions: ["billing.invoices.retrieve"], sessionId: published.capability?.id });
    expect(decodePart(issued.accessToken, 1)).toMatchObject({ sub: "report-svc", regionmeta: { id: "report-svc", capability: "billing-reader" } });
    const { principal } = await server.clients.verify.verifyToken({ token: issued.accessToken, audience: "" });
    expect(principal).toMatchObject({ subject: "report-svc", kind: PrincipalKind.PRINCIPAL_KIND_SERVICE, permissions: ["billing.invoices.retrieve"] });
    expect(principal?.region?.id).toBe("report-svc");
    await admin.registry.revokeCapability({ regionId: "report-svc", capability: "billing-reader" });
    await expectFailure(server.clients.verify.verifyToken({ token: issued.accessToken, audience: "" }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
    await expectFailure(
      server.clients.verify.verifyToken({ token: signAssertion(k, { region: "report-svc", capability: "billing-reader", registry: SELF, aud: AUD }), audience: AUD }),
      { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" },
    );
  });

  it("refuses what does not verify", async () => {
    const verify = (token: string) => server.clients.verify.verifyToken({ token, audience: AUD });
    await expectFailure(verify(assertion({ registry: "https://evil.test/registry.json" })), { code: Status.UNAUTHENTICATED, reason: "REGISTRY_NOT_ALLOWED" });
    await expectFailure(verify(assertion({ registry: `${SELF}?x=1` })), { code: Status.UNAUTHENTICATED, reason: "REGISTRY_NOT_ALLOWED" });
    await expectFailure(verify(assertion({ aud: "someone-else" })), { code: Status.UNAUTHENTICATED, reason: "TOKEN_INVALID" });
    await expectFailure(verify(assertion({ expires: Math.floor(Date.now() / 1000) - 1 })), { code: Status.UNAUTHENTICATED, reason: "TOKEN_EXPIRED" });
    await expectFailure(verify(assertion({ iat: Math.floor(Date.now() / 1000) - 120, lifetimeSeconds: 60 })), { code: Status.UNAUTHENTICATED, reason: "TOKEN_EXPIRED" });
    await expectFailure(verify(assertion({ lifetimeSeconds: 3600 })), { code: Status.UNAUTHENTICATED, reason: "TOKEN_INVALID" });
    await expectFailure(verify(assertion({}, serviceKey("Ed25519"))), { code: Status.UNAUTHENTICATED, reason: "TOKEN_INVALID" });
    await expectFailure(verify(assertion({ capability: "nope" })), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
    const good = assertion();
    const [h, p] = good.split(".");
    const tampered = `${h}.${Buffer.from(JSON.stringify({ ...decodePart(good, 1), data: { admin: true } })).toString("base64url")}.${good.split(".")[2]}`;
    await expectFailure(verify(tampered), { code: Status.UNAUTHENTICATED, reason: "TOKEN_INVALID" });
    expect(p).toBeTruthy();
    // Nothing of a refused assertion was remembered: the good one still verifies once.
    await server.clients.verify.verifyToken({ token: good, audience: AUD });
  });

  it("rotates a capability's key: the old key stops verifying at once", async () => {
    const next = serviceKey("P-256");
    await admin.registry.createRegion({ region: { id: "rotating-svc", alias: "", active: true } as never });
    await admin.registry.publishCapability({ regionId: "rotating-svc", capability: "billing-reader", publicKey: key.publicJwk, expireTime: inAnHour() });
    const before = { region: "rotating-svc" };
    await server.clients.verify.verifyToken({ token: assertion(before), audience: AUD });
    await admin.registry.publishCapability({ regionId: "rotating-svc", capability: "billing-reader", publicKey: next.publicJwk, expireTime: inAnHour() });
    await expectFailure(server.clients.verify.verifyToken({ token: assertion(before), audience: AUD }), { code: Status.UNAUTHENTICATED, reason: "TOKEN_INVALID" });
    await server.clients.verify.verifyToken({ token: assertion(before, next), audience: AUD });
  });

  it("deactivating the region refuses its assertions at once", async () => {
    const k = serviceKey();
    await admin.registry.createRegion({ region: { id: "short-lived-svc", alias: "", active: true } as never });
    await admin.registry.publishCapability({ regionId: "short-lived-svc", capability: "billing-reader", publicKey: k.publicJwk, expireTime: inAnHour() });
    await server.clients.verify.verifyToken({ token: assertion({ region: "short-lived-svc" }, k), audience: AUD });
    await admin.registry.updateRegion({ region: { id: "short-lived-svc", active: false } as never, updateMask: ["active"] });
    await expectFailure(server.clients.verify.verifyToken({ token: assertion({ region: "short-lived-svc" }, k), audience: AUD }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
  });
});

describe("registry management", () => {
  it("validates input", async () => {
    await expectFailure(admin.registry.createRegion({ region: { id: "Bad_Id", alias: "", active: true } as never }), { code: Status.INVALID_ARGUMENT, reason: "INVALID_INPUT", fields: ["region.id"] });
    await expectFailure(admin.registry.createRegion({ region: { id: "billing-api", alias: "", active: true } as never }), { code: Status.ALREADY_EXISTS, reason: "ALREADY_EXISTS" });
    await expectFailure(
      admin.registry.publishCapability({ regionId: "billing-api", capability: "x", publicKey: "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----", expireTime: inAnHour() }),
      { code: Status.INVALID_ARGUMENT, reason: "INVALID_INPUT", fields: ["public_key"] },
    );
    await expectFailure(
      admin.registry.publishCapability({ regionId: "billing-api", capability: "x", publicKey: key.publicJwk, expireTime: new Date(Date.now() - 1000) }),
      { code: Status.INVALID_ARGUMENT, reason: "INVALID_INPUT", fields: ["expire_time"] },
    );
    await expectFailure(
      admin.registry.publishCapability({ regionId: "no-such-region", capability: "x", publicKey: key.publicJwk, expireTime: inAnHour() }),
      { code: Status.NOT_FOUND, reason: "REGION_NOT_FOUND" },
    );
  });

  it("publishes the same records as a signed document and a DNS zone", async () => {
    const doc = await server.clients.registry.getRegistryDocument({});
    expect(doc.regions.length).toBeGreaterThan(0);
    const http = await fetch(`http://127.0.0.1:${server.tessera.httpPort}/registry.json`);
    expect(http.status).toBe(200);
    expect(http.headers.get("cache-control")).toMatch(/max-age=\d+/);
    const etag = http.headers.get("etag")!;
    expect(await http.json()).toEqual({ regions: doc.regions, capabilities: doc.capabilities });
    const again = await fetch(`http://127.0.0.1:${server.tessera.httpPort}/registry.json`, { headers: { "if-none-match": etag } });
    expect(again.status).toBe(304);
    const zone = await admin.registry.exportDnsZone({ host: "registry.tessera.test" });
    const cap = zone.records.find((r) => r.name === "billing-reader.capability.billing-api.registry.tessera.test");
    expect(cap?.values.every((v) => Buffer.byteLength(v) <= 255)).toBe(true);
    expect(doc.capabilities).toContain(cap?.values.join(""));
    expect(zone.zoneFile).toContain("billing-reader.capability.billing-api.registry.tessera.test. ");
  });
});

describe("a user's own key (the seed's user flow)", () => {
  it("publishes for one of its groups and signs assertions that verify as itself, until it leaves, is disabled or revokes", async () => {
    const created = await admin.users.createUser({ user: { username: "sally" } as never, password: "sally-password-1" } as never);
    const userId = created.user!.id;
    const group = await admin.permissions.createGroup({ group: { name: "staff_members", permissions: ["billing.invoices.retrieve"], default: false, autoGrantPatterns: [], description: "" } } as never);
    await admin.permissions.addGroupMembers({ groupId: group.group!.id, userIds: [userId] } as never);
    const sally = server.as((await server.login("system", "sally", "sally-password-1")).accessToken);
    const own = serviceKey("P-384");
    // Not one of its groups, or another region: refused.
    await expectFailure(sally.registry.publishCapability({ regionId: "", capability: "billing-reader", publicKey: own.publicJwk, expireTime: inAnHour() } as never), { code: Status.PERMISSION_DENIED, reason: "PERMISSION_DENIED" });
    await expectFailure(sally.registry.publishCapability({ regionId: "billing-api", capability: "staff_members", publicKey: own.publicJwk, expireTime: inAnHour() } as never), { code: Status.PERMISSION_DENIED, reason: "PERMISSION_DENIED" });
    const published = await sally.registry.publishCapability({ regionId: "", capability: "staff_members", publicKey: own.publicJwk, expireTime: inAnHour() } as never);
    expect(published.capability).toMatchObject({ regionId: userId, capability: "staff_members", algorithm: "ES384" });
    const mine = (overrides = {}) => signAssertion(own, { region: userId, capability: "staff_members", registry: SELF, aud: AUD, ...overrides });
    const { principal } = await server.clients.verify.verifyToken({ token: mine(), audience: AUD });
    expect(principal).toMatchObject({ kind: PrincipalKind.PRINCIPAL_KIND_USER, subject: userId, username: "sally", permissions: ["billing.invoices.retrieve"] });
    // Out of the group: its key carries nothing.
    await admin.permissions.removeGroupMembers({ groupId: group.group!.id, userIds: [userId] } as never);
    expect((await server.clients.verify.verifyToken({ token: mine(), audience: AUD })).principal?.permissions).toEqual([]);
    await admin.permissions.addGroupMembers({ groupId: group.group!.id, userIds: [userId] } as never);
    // Disabled: refused at once; its keys are revoked like its sessions, so enabled again it publishes again.
    await admin.users.updateUser({ user: { id: userId, disabled: true } as never, updateMask: ["disabled"] } as never);
    await expectFailure(server.clients.verify.verifyToken({ token: mine(), audience: AUD }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
    await admin.users.updateUser({ user: { id: userId, disabled: false } as never, updateMask: ["disabled"] } as never);
    await expectFailure(server.clients.verify.verifyToken({ token: mine(), audience: AUD }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
    const again = server.as((await server.login("system", "sally", "sally-password-1")).accessToken);
    await again.registry.publishCapability({ regionId: "", capability: "staff_members", publicKey: own.publicJwk, expireTime: inAnHour() } as never);
    await server.clients.verify.verifyToken({ token: mine(), audience: AUD });
    await again.registry.revokeCapability({ regionId: "", capability: "staff_members" } as never);
    await expectFailure(server.clients.verify.verifyToken({ token: mine(), audience: AUD }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
  });
});

describe("the README walkthrough", () => {
  it("creates a region, publishes a key made by service-key, verifies and exchanges its assertions, and serves the document", { timeout: 120_000 }, async () => {
    const { execFile } = await import("node:child_process");
    const { readFileSync, rmSync } = await import("node:fs");
    const { promisify } = await import("node:util");
    const walkthrough = await startTestServer({ TESSERA_REGISTRY_SELF: "https://id.example.com/registry.json" });
    try {
      const section = readFileSync("README.md", "utf8").split(/^## Services proving who they are \(Region System\)$/m)[1]!.split(/^## /m)[0]!;
      const block = [...section.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1]!).find((b) => b.includes("service-key -- new"))!;
      // The test starts the server itself; the rest runs as printed, against the test server.
      const script = block
        .split("\n")
        .filter((line) => !line.includes("npm start"))
        .join("\n")
        .replaceAll("http://127.0.0.1:50051", `http://${walkthrough.address}`)
        .replaceAll("http://127.0.0.1:8080", `http://127.0.0.1:${walkthrough.tessera.httpPort}`);
      const { stdout } = await promisify(execFile)("/bin/sh", ["-c", `set -e\n${script}`], { env: { ...process.env, TOKEN: walkthrough.adminToken } });
      const documents = stdout.trim().split(/\n(?=\{)/).map((doc) => JSON.parse(doc) as Record<string, unknown>);
      expect(documents[1]).toMatchObject({ region: { id: "billing-api" } });
      expect(documents[2]).toMatchObject({ capability: { regionId: "billing-api", capability: "billing-reader", algorithm: "EdDSA" } });
      expect(documents[3]).toMatchObject({ principal: { kind: "PRINCIPAL_KIND_SERVICE", subject: "billing-api", permissions: ["identity.users.list"], audience: ["reports"] } });
      expect(documents[4]).toMatchObject({ principalKind: "PRINCIPAL_KIND_SERVICE", grantedPermissions: ["identity.users.list"] });
      expect((documents[5] as { capabilities: string[] }).capabilities).toHaveLength(1);
    } finally {
      rmSync("billing-api.key", { force: true });
      await walkthrough.close();
    }
  });
});

describe("what publishing cannot do", () => {
  it("a publisher cannot give a capability more than it holds, nor publish into a user's own region", async () => {
    // A tenant whose key manager may publish, but holds nothing of the administrators group.
    const { tenant } = await admin.tenants.createTenant({ tenant: { name: "keyshop" }, admin: { username: "boss", password: "boss-password-1" } } as never);
    const boss = server.as((await server.login("keyshop", "boss", "boss-password-1")).accessToken);
    const manager = await boss.users.createUser({ user: { username: "keys" }, password: "keys-password-1" } as never);
    const managers = await boss.permissions.createGroup({ group: { name: "key-managers", permissions: ["identity.capabilities.publish", "identity.regions.create"] } } as never);
    await boss.permissions.addGroupMembers({ groupId: managers.group!.id, userIds: [manager.user!.id] } as never);
    const keys = server.as((await server.login("keyshop", "keys", "keys-password-1")).accessToken);
    await keys.registry.createRegion({ region: { id: "keyshop-svc", alias: "", active: true } } as never);
    const k = serviceKey();
    await expectFailure(keys.registry.publishCapability({ regionId: "keyshop-svc", capability: "administrators", publicKey: k.publicJwk, expireTime: inAnHour() } as never), {
      code: Status.PERMISSION_DENIED,
      reason: "PERMISSION_DENIED",
    });
    // A capability named after no group carries nothing, even once such a group appears: groups are bound when published.
    const published = await keys.registry.publishCapability({ regionId: "keyshop-svc", capability: "late-group", publicKey: k.publicJwk, expireTime: inAnHour() } as never);
    await boss.permissions.createGroup({ group: { name: "late-group", permissions: ["identity.users.list"] } } as never);
    const token = signAssertion(k, { region: "keyshop-svc", capability: "late-group", registry: SELF, aud: AUD });
    const { principal } = await server.clients.verify.verifyToken({ token, audience: AUD });
    expect(principal).toMatchObject({ tenantId: tenant!.id, subject: "keyshop-svc", permissions: [] });
    expect(published.capability?.id).toBeTruthy();
    // A user's own region: only that user publishes there (anyone else's key would verify as the user).
    const sally = await boss.users.createUser({ user: { username: "sam" }, password: "sam-password-12" } as never);
    await boss.permissions.addGroupMembers({ groupId: managers.group!.id, userIds: [sally.user!.id] } as never);
    const sam = server.as((await server.login("keyshop", "sam", "sam-password-12")).accessToken);
    await sam.registry.publishCapability({ regionId: "", capability: "key-managers", publicKey: serviceKey().publicJwk, expireTime: inAnHour() } as never);
    await expectFailure(boss.registry.publishCapability({ regionId: sally.user!.id, capability: "key-managers", publicKey: k.publicJwk, expireTime: inAnHour() } as never), {
      code: Status.PERMISSION_DENIED,
      reason: "PERMISSION_DENIED",
    });
  });

  it("a user's keys end with RevokeAllSessions and SetPassword, as its sessions do", async () => {
    await admin.users.createUser({ user: { username: "ursula" }, password: "ursula-password-1" } as never);
    const groups = await admin.permissions.listGroups({ pageSize: 100 } as never);
    const staff = groups.groups.find((g) => g.name === "staff_members")!;
    const ursulaId = (await admin.users.listUsers({ filter: "ursula", pageSize: 10 } as never)).users.find((u) => u.username === "ursula")!.id;
    await admin.permissions.addGroupMembers({ groupId: staff.id, userIds: [ursulaId] } as never);
    const own = serviceKey();
    const publish = async () => {
      const ursula = server.as((await server.login("system", "ursula", "ursula-password-1")).accessToken);
      await ursula.registry.publishCapability({ regionId: "", capability: "staff_members", publicKey: own.publicJwk, expireTime: inAnHour() } as never);
      return ursula;
    };
    const hers = () => signAssertion(own, { region: ursulaId, capability: "staff_members", registry: SELF, aud: AUD });
    const ursula = await publish();
    await server.clients.verify.verifyToken({ token: hers(), audience: AUD });
    await ursula.issue.revokeAllSessions({} as never);
    await expectFailure(server.clients.verify.verifyToken({ token: hers(), audience: AUD }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
    await publish();
    await server.clients.verify.verifyToken({ token: hers(), audience: AUD });
    await admin.users.setPassword({ id: ursulaId, newPassword: "ursula-password-1" } as never);
    await expectFailure(server.clients.verify.verifyToken({ token: hers(), audience: AUD }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
  });

  it("a region deactivated and activated again does not bring its capabilities back", async () => {
    const k = serviceKey();
    await admin.registry.createRegion({ region: { id: "flapping-svc", alias: "", active: true } } as never);
    await admin.registry.publishCapability({ regionId: "flapping-svc", capability: "billing-reader", publicKey: k.publicJwk, expireTime: inAnHour() } as never);
    const exchanged = await server.clients.issue.issueToken({
      credential: { $case: "serviceAssertion", value: { assertion: signAssertion(k, { region: "flapping-svc", capability: "billing-reader", registry: SELF, aud: "https://id.tessera.test" }) } },
    } as never);
    await admin.registry.updateRegion({ region: { id: "flapping-svc", active: false }, updateMask: ["active"] } as never);
    await admin.registry.updateRegion({ region: { id: "flapping-svc", active: true }, updateMask: ["active"] } as never);
    await expectFailure(server.clients.verify.verifyToken({ token: exchanged.accessToken, audience: "" }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
    await expectFailure(server.clients.verify.verifyToken({ token: signAssertion(k, { region: "flapping-svc", capability: "billing-reader", registry: SELF, aud: AUD }), audience: AUD }), {
      code: Status.UNAUTHENTICATED,
      reason: "SESSION_REVOKED",
    });
  });

  it("LookupCapability through this server's registry answers about the caller's tenant, and checks the reference's kind", async () => {
    const boss = server.as((await server.login("keyshop", "boss", "boss-password-1")).accessToken);
    await boss.permissions.createGroup({ group: { name: "lookers", permissions: ["identity.capabilities.lookup"] } } as never).catch(() => undefined);
    const bossSelf = await boss.users.getMe({});
    const lookers = (await boss.permissions.listGroups({ pageSize: 100 } as never)).groups.find((g) => g.name === "lookers")!;
    await boss.permissions.addGroupMembers({ groupId: lookers.id, userIds: [bossSelf.user!.id] } as never).catch(() => undefined);
    const lookup = (client: typeof admin, region: string, kind: "httpsUrl" | "dnsHost" = "httpsUrl") =>
      client.registry.lookupCapability({ registry: { kind: { $case: kind, value: SELF } }, regionId: region, capability: "billing-reader" } as never);
    expect((await lookup(admin, "billing-api")).capability?.regionId).toBe("billing-api");
    await expectFailure(lookup(boss, "billing-api"), { code: Status.NOT_FOUND, reason: "CAPABILITY_NOT_FOUND" });
    await expectFailure(lookup(admin, "billing-api", "dnsHost"), { code: Status.INVALID_ARGUMENT, reason: "INVALID_INPUT", fields: ["registry.dns_host"] });
  });
});

describe("registry write limits", () => {
  it("limits a user's own key publications per hour (RATE_LIMITED with RetryInfo)", async () => {
    const limited = await startTestServer({ TESSERA_REGISTRY_SELF: SELF, TESSERA_KEY_PUBLISHES_PER_USER: "2" });
    try {
      const boss = limited.as(limited.adminToken);
      const group = await boss.permissions.createGroup({ group: { name: "staff_members", permissions: [] } } as never);
      const user = await boss.users.createUser({ user: { username: "pat" }, password: "pat-password-123" } as never);
      await boss.permissions.addGroupMembers({ groupId: group.group!.id, userIds: [user.user!.id] } as never);
      const pat = limited.as((await limited.login("system", "pat", "pat-password-123")).accessToken);
      const publish = () => pat.registry.publishCapability({ regionId: "", capability: "staff_members", publicKey: serviceKey().publicJwk, expireTime: inAnHour() } as never);
      await publish();
      await publish();
      const refused = await expectFailure(publish(), { code: Status.RESOURCE_EXHAUSTED, reason: "RATE_LIMITED" });
      expect(refused.extra.some((d) => d.$type === "google.rpc.RetryInfo")).toBe(true);
      // The administrators' writes are counted per tenant, not per user.
      await boss.registry.createRegion({ region: { id: "still-fine", alias: "", active: true } } as never);
    } finally {
      await limited.close();
    }
  });
});
