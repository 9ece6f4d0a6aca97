// The oidc credential over the public gRPC API, against a real OpenID Connect
// provider (node oidc-provider on loopback) that issues real ID tokens through
// its own authorization code flow.
import { Status } from "nice-grpc";
import { RetryInfo } from "nice-grpc-error-details";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectFailure } from "../support/errors.ts";
import { startOidcProvider, type TestOidcProvider } from "../support/oidc-provider.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { decodePart } from "../support/tokens.ts";

let provider: TestOidcProvider;
let stranger: TestOidcProvider;
let server: TestServer;
let admin: TestServer["clients"];
let tenantId: string;
let staffGroupId: string;

function oidc(idToken: string, tenant = "fed", nonce = "", requestedPermissions: string[] = []) {
  return server.clients.issue.issueToken({ credential: { $case: "oidc", value: { tenant, idToken, nonce } }, requestedPermissions });
}

const trust = (issuer: string, clientId = "tessera-app", defaultGroupIds: string[] = []) => ({
  issuer,
  clientId,
  allowedAudiences: [],
  usernameClaim: "",
  defaultGroupIds,
});

beforeAll(async () => {
  provider = await startOidcProvider();
  stranger = await startOidcProvider();
  server = await startTestServer({
    TESSERA_OIDC_ALLOW_HTTP_LOOPBACK: "true",
    TESSERA_OIDC_REFETCH_COOLDOWN: "200ms",
    TESSERA_OIDC_CLOCK_TOLERANCE: "1s",
    TESSERA_REMOTE_TIMEOUT: "2s",
  });
  admin = server.as(server.adminToken);
  tenantId = (await admin.tenants.createTenant({ tenant: { name: "fed" } })).tenant!.id;
  staffGroupId = (await admin.permissions.createGroup({ tenantId, group: { name: "staff", permissions: ["identity.users.list"] } })).group!.id;
  await admin.tenants.updateTenant({ tenant: { id: tenantId, oidcIssuers: [trust(provider.issuer, "tessera-app", [staffGroupId])] }, updateMask: ["oidc_issuers"] });
  const hmac = (await admin.tenants.createTenant({ tenant: { name: "hmac" } })).tenant!.id;
  await admin.tenants.updateTenant({ tenant: { id: hmac, oidcIssuers: [trust(provider.issuer, "hmac-app")] }, updateMask: ["oidc_issuers"] });
  provider.accounts.set("alice-sub", { preferred_username: "alice", name: "Alice" });
});
afterAll(async () => {
  await server?.close();
  await provider?.close();
  await stranger?.close();
});

describe("TenantService oidc_issuers", () => {
  it("keeps a tenant's trusted issuers and validates them", async () => {
    const { tenant } = await admin.tenants.getTenant({ id: tenantId });
    expect(tenant!.oidcIssuers).toEqual([trust(provider.issuer, "tessera-app", [staffGroupId])]);
    const update = (issuers: ReturnType<typeof trust>[]) => admin.tenants.updateTenant({ tenant: { id: tenantId, oidcIssuers: issuers }, updateMask: ["oidc_issuers"] });
    await expectFailure(update([trust("http://issuer.example.com")]), { code: Status.INVALID_ARGUMENT, reason: "INVALID_INPUT", fields: ["tenant.oidc_issuers[0].issuer"] });
    await expectFailure(update([trust("https://issuer.example.com?x=1")]), { code: Status.INVALID_ARGUMENT, reason: "INVALID_INPUT", fields: ["tenant.oidc_issuers[0].issuer"] });
    await expectFailure(update([trust("https://issuer.example.com", "")]), { code: Status.INVALID_ARGUMENT, reason: "INVALID_INPUT", fields: ["tenant.oidc_issuers[0].client_id"] });
    await expectFailure(update([trust("https://a.example.com"), trust("https://a.example.com")]), { code: Status.INVALID_ARGUMENT, reason: "INVALID_INPUT", fields: ["tenant.oidc_issuers[1].issuer"] });
    await expectFailure(update([trust("https://a.example.com", "app", ["not-a-uuid"])]), { code: Status.INVALID_ARGUMENT, reason: "INVALID_INPUT", fields: ["tenant.oidc_issuers[0].default_group_ids[0]"] });
    await expectFailure(update([trust("https://a.example.com", "app", ["00000000-0000-4000-8000-000000000001"])]), { code: Status.NOT_FOUND, reason: "GROUP_NOT_FOUND" });
    // Nothing changed.
    expect((await admin.tenants.getTenant({ id: tenantId })).tenant!.oidcIssuers).toEqual([trust(provider.issuer, "tessera-app", [staffGroupId])]);
  });
});

describe("IssueToken (oidc)", () => {
  it("logs a user in with a real ID token, keyed by (issuer, sub), into the issuer's default groups", async () => {
    const nonce = "n-0S6_WzA2Mj";
    const idToken = await provider.idToken({ accountId: "alice-sub", nonce });
    const res = await oidc(idToken, "fed", nonce);
    const host = new URL(provider.issuer).host;
    const claims = decodePart(res.accessToken, 1);
    expect(claims).toMatchObject({ tid: tenantId, preferred_username: `alice@${host}`, upn: `${claims.sub}@fed` });
    expect(res.grantedPermissions).toContain("identity.users.list");
    const me = await server.as(res.accessToken).users.getMe({});
    expect(me.user).toMatchObject({ username: `alice@${host}`, displayName: "alice" });
    expect(me.groups.map((g) => g.name).sort()).toEqual(["Game client", "staff"]);

    // The same subject again, renamed at the issuer: the same user, renamed; refresh needs no issuer.
    provider.accounts.set("alice-sub", { preferred_username: "alice.w" });
    const again = await oidc(await provider.idToken({ accountId: "alice-sub" }));
    expect(decodePart(again.accessToken, 1)).toMatchObject({ sub: claims.sub, preferred_username: `alice.w@${host}` });
    const refreshed = await server.clients.refresh.refresh({ refreshToken: again.refreshToken });
    expect(decodePart(refreshed.accessToken, 1).sub).toBe(claims.sub);
  });

  it("logs in once with an ID token: again, or at another tenant trusting the same issuer and client, it is refused", async () => {
    const twin = (await admin.tenants.createTenant({ tenant: { name: "fed-twin" } })).tenant!.id;
    await admin.tenants.updateTenant({ tenant: { id: twin, oidcIssuers: [trust(provider.issuer)] }, updateMask: ["oidc_issuers"] });
    const idToken = await provider.idToken({ accountId: "carol-sub" });
    await oidc(idToken);
    const replay = await expectFailure(oidc(idToken), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
    expect(replay.details).toContain("already used");
    await expectFailure(oidc(idToken, "fed-twin"), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
    // A fresh login of the same user (its own nonce: without jti and nonce, two tokens of one second are one token) logs in at the other tenant.
    await oidc(await provider.idToken({ accountId: "carol-sub", nonce: "carol-fresh-nonce" }), "fed-twin", "carol-fresh-nonce");
  });

  it("ends the sessions of an issuer's users when the tenant stops trusting it", async () => {
    const gone = (await admin.tenants.createTenant({ tenant: { name: "fed-gone" } })).tenant!.id;
    await admin.tenants.updateTenant({ tenant: { id: gone, oidcIssuers: [trust(provider.issuer)] }, updateMask: ["oidc_issuers"] });
    const login = await oidc(await provider.idToken({ accountId: "dave-sub" }), "fed-gone");
    await server.clients.verify.verifyToken({ token: login.accessToken });
    // Same issuer, another client id: no longer the trust those logins came through.
    await admin.tenants.updateTenant({ tenant: { id: gone, oidcIssuers: [trust(provider.issuer, "another-app")] }, updateMask: ["oidc_issuers"] });
    await expectFailure(server.clients.verify.verifyToken({ token: login.accessToken }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
    await expectFailure(server.clients.refresh.refresh({ refreshToken: login.refreshToken }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
  });

  it("checks the nonce", async () => {
    const idToken = await provider.idToken({ accountId: "alice-sub", nonce: "the-nonce" });
    await expectFailure(oidc(idToken, "fed", "another-nonce"), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
    await expectFailure(oidc(idToken, "fed", ""), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
    await oidc(idToken, "fed", "the-nonce");
  });

  it("refuses a token for another client (wrong audience)", async () => {
    const idToken = await provider.idToken({ clientId: "other-app", accountId: "alice-sub" });
    const error = await expectFailure(oidc(idToken), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
    expect(error.details).toContain("aud");
  });

  it("refuses a token from an issuer the tenant does not trust, and a tenant that does not exist, alike", async () => {
    const idToken = await stranger.idToken({ accountId: "alice-sub" });
    await expectFailure(oidc(idToken), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
    const trusted = await provider.idToken({ accountId: "alice-sub" });
    await expectFailure(oidc(trusted, "no-such-tenant"), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
  });

  it("refuses a tampered token", async () => {
    const idToken = await provider.idToken({ accountId: "alice-sub" });
    const [header, payload, signature] = idToken.split(".");
    const claims = JSON.parse(Buffer.from(payload!, "base64url").toString("utf8")) as Record<string, unknown>;
    const forged = Buffer.from(JSON.stringify({ ...claims, sub: "mallory-sub" })).toString("base64url");
    await expectFailure(oidc(`${header}.${forged}.${signature}`), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
    const flipped = `${signature!.slice(0, 10)}${signature![10] === "A" ? "B" : "A"}${signature!.slice(11)}`;
    await expectFailure(oidc(`${header}.${payload}.${flipped}`), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
    // alg none, the signature stripped.
    const none = Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url");
    const unsigned = await expectFailure(oidc(`${none}.${payload}.`), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
    expect(unsigned.details).toContain("ERR_JOSE_ALG_NOT_ALLOWED");
  });

  it("refuses an ID token signed with HMAC (the client secret), though the provider issued it", async () => {
    const idToken = await provider.idToken({ clientId: "hmac-app", accountId: "alice-sub" });
    expect(decodePart(idToken, 0).alg).toBe("HS256");
    const error = await expectFailure(oidc(idToken, "hmac"), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
    expect(error.details).toContain("ERR_JOSE_ALG_NOT_ALLOWED");
  });

  it("refuses an expired token", async () => {
    provider.setIdTokenTtl(1);
    try {
      const idToken = await provider.idToken({ accountId: "alice-sub" });
      await new Promise((resolve) => setTimeout(resolve, 2500));
      const error = await expectFailure(oidc(idToken), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
      expect(error.details).toContain("ERR_JWT_EXPIRED");
    } finally {
      provider.setIdTokenTtl(3600);
    }
  });

  it("follows the issuer's key rotation: a new kid refetches the key set, the retired key is refused", async () => {
    const before = await provider.idToken({ accountId: "alice-sub" });
    await oidc(before);
    await provider.rotateKey();
    await new Promise((resolve) => setTimeout(resolve, 300)); // past the refetch cooldown
    const after = await provider.idToken({ accountId: "alice-sub" });
    expect(decodePart(after, 0).kid).not.toBe(decodePart(before, 0).kid);
    await oidc(after);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await expectFailure(oidc(before), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
  });

  it("answers UPSTREAM_UNAVAILABLE with RetryInfo when the issuer cannot be reached, and does not count it as a failure", async () => {
    const gone = await startOidcProvider();
    const idToken = await gone.idToken({ accountId: "bob-sub" });
    await gone.close();
    const down = (await admin.tenants.createTenant({ tenant: { name: "down", oidcIssuers: [trust(gone.issuer)] } })).tenant!.id;
    expect(down).toBeTruthy();
    for (let i = 0; i < 12; i++) {
      const error = await expectFailure(oidc(idToken, "down"), { code: Status.UNAVAILABLE, reason: "UPSTREAM_UNAVAILABLE" });
      expect(error.extra.some((d) => d.$type === RetryInfo.$type)).toBe(true);
    }
  });

  it("throttles failed logins per address like password logins", async () => {
    const idToken = await stranger.idToken({ accountId: "guess-sub" });
    let blocked = false;
    for (let i = 0; i < 12 && !blocked; i++) {
      const error = await oidc(idToken).then(() => undefined, (e: unknown) => e as { code: Status });
      expect(error).toBeDefined();
      blocked = error!.code === Status.RESOURCE_EXHAUSTED;
    }
    expect(blocked).toBe(true);
  });
});
