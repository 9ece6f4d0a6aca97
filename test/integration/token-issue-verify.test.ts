import { generateKeyPairSync } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { createLocalJWKSet, jwtVerify } from "jose";
import { Status } from "nice-grpc";
import { RetryInfo } from "nice-grpc-error-details";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PrincipalKind } from "@tessera/client";
import { expectFailure } from "../support/errors.ts";
import { ADMIN_PASSWORD, startTestServer, type TestServer } from "../support/server.ts";
import { decodePart, signEd25519, signHs256, unsigned } from "../support/tokens.ts";

let server: TestServer;
let admin: TestServer["clients"];
let tenantId: string;

beforeAll(async () => {
  server = await startTestServer();
  admin = server.as(server.adminToken);
  tenantId = (await admin.tenants.createTenant({ tenant: { name: "shop" }, admin: { username: "owner", password: "owner-password" } })).tenant!.id;
  await admin.users.createUser({ tenantId, user: { username: "clerk", email: "clerk@shop.test" }, password: "clerk-password" });
});
afterAll(() => server?.close());

describe("IssueToken (password)", () => {
  it("returns an RFC 9068 access token with every required claim, verifiable with the JWKS", async () => {
    const res = await server.clients.issue.issueToken({ credential: { $case: "password", value: { tenant: "shop", username: "owner", password: "owner-password" } } });
    expect(decodePart(res.accessToken, 0)).toEqual({ alg: "EdDSA", kid: expect.any(String), typ: "at+jwt" });
    const claims = decodePart(res.accessToken, 1);
    for (const claim of ["iss", "sub", "aud", "exp", "iat", "jti", "tid", "sid", "scope", "upn"]) expect(claims).toHaveProperty(claim);
    expect(claims).toMatchObject({ iss: "tessera", aud: "tessera", tid: tenantId, sid: res.sessionId, upn: `${claims.sub}@shop`, scope: "*.*.*" });
    expect((claims.exp as number) - (claims.iat as number)).toBe(300);
    expect(res).toMatchObject({ tokenType: "Bearer", principalKind: PrincipalKind.PRINCIPAL_KIND_USER, grantedPermissions: ["*.*.*"] });
    expect(res.expireTime!.getTime()).toBe((claims.exp as number) * 1000);

    // Independent verification with jose against both JWKS endpoints.
    const { keys } = await server.clients.verify.getJwks({});
    const http = (await (await fetch(`http://127.0.0.1:${server.tessera.httpPort}/.well-known/jwks.json`)).json()) as { keys: object[] };
    expect(http.keys).toEqual(keys.map((k) => ({ ...k })));
    const verified = await jwtVerify(res.accessToken, createLocalJWKSet({ keys: keys.map((k) => ({ ...k })) }), { typ: "at+jwt", issuer: "tessera", audience: "tessera", algorithms: ["EdDSA"] });
    expect(verified.payload.sub).toBe(claims.sub);
  });

  it("returns an opaque refresh token of at least 256 random bits", async () => {
    const a = await server.login("shop", "owner", "owner-password");
    const b = await server.login("shop", "owner", "owner-password");
    expect(a.refreshToken).toMatch(/^tsr_[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(a.refreshToken.slice(4), "base64url").length).toBeGreaterThanOrEqual(32);
    expect(a.refreshToken).not.toBe(b.refreshToken);
    expect(a.refreshToken.split(".")).toHaveLength(1);
  });

  it("elects a subset of the granted permissions, and refuses one that is not granted", async () => {
    const elected = await server.login("shop", "owner", "owner-password", ["identity.users.list"]);
    expect(decodePart(elected.accessToken, 1).scope).toBe("identity.users.list");
    const owner = server.as(elected.accessToken);
    await owner.users.listUsers({});
    await expectFailure(owner.users.createUser({ user: { username: "x" }, password: "x-password" }), { code: Status.PERMISSION_DENIED, reason: "PERMISSION_DENIED" });
    // The clerk belongs to no group: nothing is granted.
    await expectFailure(server.login("shop", "clerk", "clerk-password", ["identity.users.list"]), { code: Status.PERMISSION_DENIED, reason: "PERMISSION_NOT_GRANTED" });
    await expectFailure(server.login("shop", "clerk", "clerk-password", ["not a permission"]), {
      code: Status.INVALID_ARGUMENT,
      reason: "INVALID_INPUT",
      fields: ["requested_permissions[0]"],
    });
  });

  it("gives unknown users, unknown tenants and wrong passwords the same answer", async () => {
    const answers = [];
    for (const [tenant, username, password] of [
      ["shop", "owner", "wrong-password"],
      ["shop", "nobody", "owner-password"],
      ["nowhere", "owner", "owner-password"],
    ] as const) {
      const error = await expectFailure(server.login(tenant, username, password), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
      answers.push(error.details);
    }
    expect(new Set(answers).size).toBe(1);
  });

  it("logs in by e-mail as well as username", async () => {
    await server.login("shop", "CLERK@shop.test", "clerk-password");
  });

  it("throttles repeated failures per account with RetryInfo, even for the right password, without locking other accounts", async () => {
    await admin.users.createUser({ tenantId, user: { username: "target" }, password: "target-password" });
    for (let i = 0; i < 10; i++) {
      await expectFailure(server.login("shop", "target", `wrong-${i}-password`), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
    }
    const blocked = await expectFailure(server.login("shop", "target", "target-password"), { code: Status.RESOURCE_EXHAUSTED, reason: "TOO_MANY_ATTEMPTS" });
    const retry = blocked.extra.find((d): d is RetryInfo => d.$type === RetryInfo.$type);
    expect(Number(retry?.retryDelay?.seconds ?? 0)).toBeGreaterThan(60);
    await server.login("shop", "owner", "owner-password");
  });

  it("counts a burst of concurrent guesses before any is checked, by username and e-mail alike", async () => {
    await admin.users.createUser({ tenantId, user: { username: "burst", email: "burst@shop.test" }, password: "burst-password" });
    const guesses = Array.from({ length: 16 }, (_, i) =>
      server.login("shop", i % 2 ? "burst" : "BURST@shop.test", `guess-${i}-password`).then(
        () => "ok",
        (error: { details?: string; code?: number }) => (error.code === Status.RESOURCE_EXHAUSTED ? "throttled" : error.code === Status.UNAUTHENTICATED ? "invalid" : String(error.details)),
      ),
    );
    const outcomes = await Promise.all(guesses);
    // Ten failures per account (TESSERA_LOGIN_FAILURES_PER_ACCOUNT); the other six never reach argon2.
    expect(outcomes.filter((o) => o === "invalid")).toHaveLength(10);
    expect(outcomes.filter((o) => o === "throttled")).toHaveLength(6);
    await expectFailure(server.login("shop", "burst", "burst-password"), { code: Status.RESOURCE_EXHAUSTED, reason: "TOO_MANY_ATTEMPTS" });
  });

  it("throttles a caller address that sprays many accounts, even for a right password elsewhere", async () => {
    // A server of its own: its address limit would otherwise lock this file's other tests out.
    const sprayed = await startTestServer({ TESSERA_LOGIN_FAILURES_PER_ADDRESS: "6" });
    try {
      for (let i = 0; i < 6; i++) {
        // Different accounts, known and unknown: no account limit is reached (10 each).
        const username = i % 2 ? "admin" : `nobody-${i}`;
        await expectFailure(sprayed.login("system", username, `wrong-${i}-password`), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
      }
      const blocked = await expectFailure(sprayed.login("system", "admin", ADMIN_PASSWORD), { code: Status.RESOURCE_EXHAUSTED, reason: "TOO_MANY_ATTEMPTS" });
      expect(blocked.extra.some((d) => d.$type === RetryInfo.$type)).toBe(true);
      // Tokens already issued keep working: only logins are throttled.
      await sprayed.clients.verify.verifyToken({ token: sprayed.adminToken });
    } finally {
      await sprayed.close();
    }
  });

  it("refuses disabled users and tenants, telling only holders of the right password", async () => {
    const { tenant } = await admin.tenants.createTenant({ tenant: { name: "closing" }, admin: { username: "boss", password: "boss-password" } });
    const { user } = await admin.users.createUser({ tenantId, user: { username: "banned" }, password: "banned-password" });
    await admin.users.updateUser({ tenantId, user: { ...user!, disabled: true }, updateMask: ["disabled"] });
    await expectFailure(server.login("shop", "banned", "banned-password"), { code: Status.UNAUTHENTICATED, reason: "USER_DISABLED" });
    await expectFailure(server.login("shop", "banned", "wrong-password"), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });

    const session = await server.login("closing", "boss", "boss-password");
    await admin.tenants.updateTenant({ tenant: { ...tenant!, disabled: true }, updateMask: ["disabled"] });
    await expectFailure(server.login("closing", "boss", "boss-password"), { code: Status.UNAUTHENTICATED, reason: "TENANT_DISABLED" });
    // Disabling the tenant revoked its sessions, as disabling a user revokes the user's.
    await expectFailure(server.clients.verify.verifyToken({ token: session.accessToken }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
    await expectFailure(server.clients.refresh.refresh({ refreshToken: session.refreshToken }), { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" });
  });

  it("never issues an access token too large for any verifier, and leaves no session behind", async () => {
    const admin = server.as(server.adminToken);
    const sessionsBefore = (await admin.issue.listSessions({ pageSize: 1000 })).sessions.length;
    const wide = Array.from({ length: 40 }, (_, i) => `svc${String(i).padStart(2, "0")}${"x".repeat(180)}.res.act`);
    await expectFailure(server.login("system", "admin", ADMIN_PASSWORD, wide), { code: Status.INVALID_ARGUMENT, reason: "INVALID_INPUT", fields: ["requested_permissions"] });
    expect((await admin.issue.listSessions({ pageSize: 1000 })).sessions.length).toBe(sessionsBefore);
  });

  it("requires exactly one credential", async () => {
    await expectFailure(server.clients.issue.issueToken({}), { code: Status.INVALID_ARGUMENT, reason: "INVALID_INPUT", fields: ["credential"] });
    await expectFailure(server.clients.issue.issueToken({ credential: { $case: "password", value: { tenant: "", username: "", password: "" } } }), {
      code: Status.INVALID_ARGUMENT,
      reason: "INVALID_INPUT",
      fields: ["password.tenant", "password.username", "password.password"],
    });
  });

  it("says which settings enable service assertions when no registry is trusted", async () => {
    const failure = await expectFailure(server.clients.issue.issueToken({ credential: { $case: "serviceAssertion", value: { assertion: "a.b.c" } } }), {
      code: Status.INVALID_ARGUMENT,
      reason: "INVALID_INPUT",
      fields: ["credential.service_assertion"],
    });
    expect(failure.details).toMatch(/TESSERA_REGISTRY_SELF or TESSERA_REGISTRIES/);
  });
});

describe("VerifyToken", () => {
  it("returns the principal with permissions granted now ∩ elected", async () => {
    const login = await server.login("shop", "owner", "owner-password", ["identity.users.*"]);
    const { principal } = await server.clients.verify.verifyToken({ token: login.accessToken });
    const claims = decodePart(login.accessToken, 1);
    expect(principal).toMatchObject({
      kind: PrincipalKind.PRINCIPAL_KIND_USER,
      subject: claims.sub,
      tenantId,
      tenantName: "shop",
      sessionId: login.sessionId,
      permissions: ["identity.users.*"],
      upn: `${claims.sub}@shop`,
      username: "owner",
      audience: ["tessera"],
    });
    expect(principal!.expireTime!.getTime()).toBe((claims.exp as number) * 1000);
  });

  it("answers CheckPermission with allowed true or false", async () => {
    const login = await server.login("shop", "owner", "owner-password", ["identity.users.*"]);
    const owner = server.as(login.accessToken);
    expect((await owner.verify.checkPermission({ permission: "identity.users.delete" })).allowed).toBe(true);
    expect((await owner.verify.checkPermission({ permission: "identity.tenants.delete" })).allowed).toBe(false);
    // Checking another token with the caller's bearer.
    const clerk = await server.login("shop", "clerk", "clerk-password");
    expect((await owner.verify.checkPermission({ token: clerk.accessToken, permission: "identity.users.list" })).allowed).toBe(false);
    await expectFailure(owner.verify.checkPermission({ permission: "identity.*.*" }), { code: Status.INVALID_ARGUMENT, reason: "INVALID_INPUT", fields: ["permission"] });
  });

  it("rejects a token for another audience", async () => {
    const login = await server.login("shop", "owner", "owner-password");
    await expectFailure(server.clients.verify.verifyToken({ token: login.accessToken, audience: "billing" }), { code: Status.UNAUTHENTICATED, reason: "TOKEN_INVALID" });
    const billing = await server.clients.issue.issueToken({ credential: { $case: "password", value: { tenant: "shop", username: "owner", password: "owner-password" } }, audience: "billing" });
    await server.clients.verify.verifyToken({ token: billing.accessToken, audience: "billing" });
    await expectFailure(server.clients.verify.verifyToken({ token: billing.accessToken }), { code: Status.UNAUTHENTICATED, reason: "TOKEN_INVALID" });
  });

  describe("rejects forged and malformed tokens with TOKEN_INVALID", () => {
    const forge = async (): Promise<Record<string, string>> => {
      const { accessToken } = await server.login("system", "admin", ADMIN_PASSWORD);
      const header = decodePart(accessToken, 0);
      const claims = decodePart(accessToken, 1);
      const { keys } = await server.clients.verify.getJwks({});
      const publicKeyBytes = Buffer.from(keys[0]!.x, "base64url");
      const { exp: _exp, ...noExp } = claims;
      const [h, p, s] = accessToken.split(".") as [string, string, string];
      const tampered = Buffer.from(JSON.stringify({ ...claims, scope: "*.*.*", sub: "someone-else" })).toString("base64url");
      return {
        "alg none": unsigned({ ...header, alg: "none" }, claims),
        "HS256 keyed with the public key": signHs256({ ...header, alg: "HS256" }, claims, publicKeyBytes),
        "HS256 keyed with the JWK JSON": signHs256({ ...header, alg: "HS256" }, claims, JSON.stringify(keys[0])),
        "a foreign Ed25519 key with the real kid": signEd25519(header, claims),
        "an unknown kid": signEd25519({ ...header, kid: "no-such-key" }, claims),
        "a jku header": signEd25519({ ...header, jku: "https://evil.test/jwks.json" }, claims),
        "an embedded jwk header": signEd25519({ ...header, jwk: generateKeyPairSync("ed25519").publicKey.export({ format: "jwk" }) }, claims),
        "an x5u header": signEd25519({ ...header, x5u: "https://evil.test/cert.pem" }, claims),
        "missing exp": signEd25519(header, noExp),
        "a wrong issuer": signEd25519(header, { ...claims, iss: "evil" }),
        "typ JWT instead of at+jwt": signEd25519({ ...header, typ: "JWT" }, claims),
        "a payload tampered after signing": `${h}.${tampered}.${s}`,
        "a truncated signature": `${h}.${p}.${s.slice(0, 40)}`,
        "two segments": `${h}.${p}`,
        "garbage": "definitely-not-a-token",
        "over 8 KiB": signEd25519(header, { ...claims, pad: "x".repeat(9000) }),
      };
    };

    it.each([
      "alg none",
      "HS256 keyed with the public key",
      "HS256 keyed with the JWK JSON",
      "a foreign Ed25519 key with the real kid",
      "an unknown kid",
      "a jku header",
      "an embedded jwk header",
      "an x5u header",
      "missing exp",
      "a wrong issuer",
      "typ JWT instead of at+jwt",
      "a payload tampered after signing",
      "a truncated signature",
      "two segments",
      "garbage",
      "over 8 KiB",
    ])("%s", async (name) => {
      const token = (await forge())[name]!;
      if (token.length > 8192) {
        // Over the declared limit of VerifyTokenRequest.token: refused before any parsing.
        await expectFailure(server.clients.verify.verifyToken({ token }), { code: Status.INVALID_ARGUMENT, reason: "INVALID_INPUT", fields: ["token"] });
      } else {
        await expectFailure(server.clients.verify.verifyToken({ token }), { code: Status.UNAUTHENTICATED, reason: "TOKEN_INVALID" });
      }
      // The same token as a bearer credential is refused too.
      if (token.length < 8000 && /^[A-Za-z0-9._-]+$/.test(token)) {
        await expectFailure(server.as(token).users.getMe({}), { code: Status.UNAUTHENTICATED, reason: "TOKEN_INVALID" });
      }
    });
  });

  it("rejects a refresh token presented as an access token", async () => {
    const { refreshToken } = await server.login("shop", "owner", "owner-password");
    await expectFailure(server.clients.verify.verifyToken({ token: refreshToken }), { code: Status.UNAUTHENTICATED, reason: "TOKEN_INVALID" });
    await expectFailure(server.as(refreshToken).users.getMe({}), { code: Status.UNAUTHENTICATED, reason: "TOKEN_INVALID" });
  });
});

describe("expiry", () => {
  let short: TestServer;
  beforeAll(async () => {
    // 3 s: the login and the first verification must fit in it on a busy machine.
    short = await startTestServer({ TESSERA_ACCESS_TOKEN_TTL: "3s" });
  });
  afterAll(() => short?.close());

  it("rejects an expired access token with TOKEN_EXPIRED, also from the verification cache", async () => {
    const { accessToken } = await short.login("system", "admin", ADMIN_PASSWORD);
    await short.clients.verify.verifyToken({ token: accessToken });
    // Until just past its exp (whole seconds), however long the calls above took.
    const { exp } = JSON.parse(Buffer.from(accessToken.split(".")[1]!, "base64url").toString()) as { exp: number };
    await sleep(Math.max(0, exp * 1000 + 1100 - Date.now()));
    await expectFailure(short.clients.verify.verifyToken({ token: accessToken }), { code: Status.UNAUTHENTICATED, reason: "TOKEN_EXPIRED" });
    await expectFailure(short.as(accessToken).users.getMe({}), { code: Status.UNAUTHENTICATED, reason: "TOKEN_EXPIRED" });
  });
});
