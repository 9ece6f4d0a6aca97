// Deny by default: every RPC of every service, enumerated from the generated
// definitions (so a new RPC cannot be forgotten), is called with no token, an
// expired token, another tenant's admin token and an ordinary user's token.
// Each is refused unless the contract makes it public or self-service, and the
// victim's data is unchanged afterwards.
import { setTimeout as sleep } from "node:timers/promises";
import { Metadata, Status } from "nice-grpc";

import { RichClientError } from "nice-grpc-error-details";
import { ErrorInfo } from "nice-grpc-error-details";
import { errorDetailsClientMiddleware } from "nice-grpc-error-details";
import { createClientFactory } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { allowsAnonymous, readAccessTable } from "../../src/grpc/access.ts";
import { API_SERVICES } from "../../src/grpc/api.ts";
import { ADMIN_PASSWORD, startTestServer, type TestServer } from "../support/server.ts";

/** What the contract declares (options.proto's access on every method): the table the server enforces. */
const ACCESS = readAccessTable();
const accessOf = (label: string) => ACCESS.get(`/tessera.identity.v1.${label.replace(".", "/")}`)!;

/** Reachable without a token: public methods, and CreateTenant (open signup is a configuration; this server has it off, so its handler refuses anonymous callers). */
const PUBLIC = new Set(methodLabels().filter((label) => allowsAnonymous(accessOf(label))));

/**
 * Reads of the global permission catalogue (not tenant data): any tenant's
 * admin holding the permission may call them; ordinary users may not.
 */
const GLOBAL_CATALOGUE_READS = new Set([
  "PermissionService.ListMicroservices",
  "PermissionService.ListPermissions",
  // Registries are public: resolving a capability through the server's allow-list reads no tenant's data.
  "RegistryService.LookupCapability",
]);

/** RPCs any authenticated principal may call about itself. */
const SELF_SERVICE = new Set(methodLabels().filter((label) => ["self", "authenticated"].includes(accessOf(label).kind)));

function methodLabels(): string[] {
  return API_SERVICES.flatMap((service) => Object.values(service.methods as Record<string, { name: string }>).map((m) => `${service.name}.${m.name}`));
}

interface Victim {
  tenantId: string;
  userId: string;
  sessionId: string;
}

function victimRequest(service: string, method: { requestType: { fromPartial(o: object): object } }, victim: Victim): object {
  const base = method.requestType.fromPartial({}) as Record<string, unknown>;
  const fill: Record<string, unknown> = {};
  const set = (key: string, value: unknown) => {
    if (key in base) fill[key] = value;
  };
  set("tenantId", victim.tenantId);
  set("id", service === "TenantService" ? victim.tenantId : service === "UserService" ? victim.userId : crypto.randomUUID());
  set("userId", victim.userId);
  set("userIds", [victim.userId]);
  set("groupId", crypto.randomUUID());
  set("sessionId", victim.sessionId);
  set("regionId", "victim");
  set("tenant", { id: victim.tenantId, name: "pwned", displayName: "pwned" });
  set("user", { id: victim.userId, username: "pwned" });
  set("group", { id: crypto.randomUUID(), name: "pwned", permissions: ["*.*.*"] });
  set("updateMask", ["display_name", "username", "name"].filter((p) => !(service === "UserService" && p !== "username")));
  set("password", "pwned-password");
  set("newPassword", "pwned-password");
  set("name", service === "PermissionService" ? "pwned" : "");
  set("version", "9.9.9");
  set("permission", "identity.users.delete");
  set("token", "");
  return method.requestType.fromPartial(fill);
}

async function call(server: TestServer, service: (typeof API_SERVICES)[number], methodName: string, request: object, token?: string): Promise<Status> {
  const client = createClientFactory().use(errorDetailsClientMiddleware).create(service as never, server.channel) as Record<string, (r: object, o: object) => unknown>;
  const metadata = token ? Metadata({ authorization: `Bearer ${token}` }) : Metadata();
  const method = (service.methods as Record<string, { responseStream: boolean }>)[methodName]!;
  const signal = AbortSignal.timeout(3000);
  try {
    if (method.responseStream) {
      for await (const _ of client[methodName]!(request, { metadata, signal }) as AsyncIterable<unknown>) break;
    } else {
      await client[methodName]!(request, { metadata, signal });
    }
    return Status.OK;
  } catch (error) {
    if (error instanceof RichClientError || (error as { code?: number }).code !== undefined) return (error as RichClientError).code;
    throw error;
  }
}

let server: TestServer;
let victim: Victim;
let expiredToken: string;

/**
 * Tokens on this server live 3 s (so that one can expire in the setup): the
 * callers below log in again whenever theirs is more than a second old, so a
 * slow machine cannot turn a permission check into an expiry.
 */
function freshToken(tenant: string, username: string, password: string): () => Promise<string> {
  let token = "";
  let at = 0;
  return async () => {
    if (Date.now() - at > 1000) {
      token = (await server.login(tenant, username, password)).accessToken;
      at = Date.now();
    }
    return token;
  };
}
const rivalAdminToken = freshToken("rival", "rival-admin", "rival-password");
const userToken = freshToken("victim", "plain", "plain-password");

beforeAll(async () => {
  server = await startTestServer({ TESSERA_ACCESS_TOKEN_TTL: "3s" });
  const admin = server.as(server.adminToken);
  const { tenant } = await admin.tenants.createTenant({
    tenant: { name: "victim", displayName: "Victim" },
    admin: { username: "victim-admin", password: "victim-password" },
  });
  const login = await server.login("victim", "victim-admin", "victim-password");
  const me = await server.as(login.accessToken).users.getMe({});
  victim = { tenantId: tenant!.id, userId: me.user!.id, sessionId: login.sessionId };
  // Tokens live 3 s here: on a busy machine the set-up's password hashes can outlast the first one.
  const admin2 = server.as((await server.login("system", "admin", ADMIN_PASSWORD)).accessToken);
  await admin2.tenants.createTenant({ tenant: { name: "rival" }, admin: { username: "rival-admin", password: "rival-password" } });
  await admin2.users.createUser({ tenantId: victim.tenantId, user: { username: "plain" }, password: "plain-password" });
  expiredToken = (await server.login("victim", "plain", "plain-password")).accessToken;
  await sleep(3100);
}, 60_000);
afterAll(() => server?.close());

type MethodDef = { name: string; requestType: { fromPartial(o: object): object }; responseStream: boolean };
const methods = API_SERVICES.flatMap((service) =>
  Object.entries(service.methods as unknown as Record<string, MethodDef>).map(([name, def]) => ({ service, name, def, label: `${service.name}.${def.name}` })),
);

describe("deny by default", () => {
  it("enumerates every RPC of the seven services", () => {
    expect(new Set(API_SERVICES.map((s) => s.name))).toEqual(
      new Set(["TenantService", "UserService", "PermissionService", "IssueService", "RefreshService", "VerifyService", "RegistryService"]),
    );
    expect(methods.length).toBeGreaterThan(40);
    expect([...PUBLIC].sort()).toEqual([
      "IssueService.CreateMinecraftChallenge",
      "IssueService.IssueToken",
      "RefreshService.Refresh",
      "RegistryService.GetRegistryDocument",
      "TenantService.CreateTenant",
      "UserService.RegisterUser",
      "VerifyService.GetJwks",
      "VerifyService.VerifyToken",
    ]);
    expect([...SELF_SERVICE].sort()).toEqual(["UserService.GetMe", "VerifyService.CheckPermission"]);
  });

  it.each(methods.filter((m) => !PUBLIC.has(m.label)).map((m) => [m.label, m] as const))("%s refuses a call without a token", async (_label, m) => {
    const request = victimRequest(m.service.name, m.def, victim);
    expect(Status[await call(server, m.service, m.name, request)]).toBe("UNAUTHENTICATED");
  });

  it.each(methods.filter((m) => !PUBLIC.has(m.label)).map((m) => [m.label, m] as const))("%s refuses an expired token", async (_label, m) => {
    const request = victimRequest(m.service.name, m.def, victim);
    expect(Status[await call(server, m.service, m.name, request, expiredToken)]).toBe("UNAUTHENTICATED");
  });

  it.each(methods.filter((m) => !PUBLIC.has(m.label) && !SELF_SERVICE.has(m.label) && !GLOBAL_CATALOGUE_READS.has(m.label)).map((m) => [m.label, m] as const))(
    "%s refuses another tenant's admin acting on the victim tenant",
    async (_label, m) => {
      const request = victimRequest(m.service.name, m.def, victim);
      expect(["PERMISSION_DENIED", "NOT_FOUND", "UNIMPLEMENTED"]).toContain(Status[await call(server, m.service, m.name, request, await rivalAdminToken())]);
    },
  );

  it.each(methods.filter((m) => !PUBLIC.has(m.label) && !SELF_SERVICE.has(m.label)).map((m) => [m.label, m] as const))(
    "%s refuses an ordinary user of the victim tenant",
    async (_label, m) => {
      const request = victimRequest(m.service.name, m.def, victim);
      expect(["PERMISSION_DENIED", "NOT_FOUND", "UNIMPLEMENTED"]).toContain(Status[await call(server, m.service, m.name, request, await userToken())]);
    },
  );

  it.each([...PUBLIC].map((label) => [label, methods.find((m) => m.label === label)!] as const))(
    "%s refuses a presented expired or forged token instead of treating the call as anonymous",
    async (_label, m) => {
      const request = victimRequest(m.service.name, m.def, victim);
      for (const [token, reason] of [
        [expiredToken, "TOKEN_EXPIRED"],
        ["not.a.jwt", "TOKEN_INVALID"],
      ] as const) {
        const client = createClientFactory().use(errorDetailsClientMiddleware).create(m.service as never, server.channel) as Record<string, (r: object, o: object) => Promise<unknown>>;
        const error = await client[m.name]!(request, { metadata: Metadata({ authorization: `Bearer ${token}` }) }).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(RichClientError);
        expect(Status[(error as RichClientError).code]).toBe("UNAUTHENTICATED");
        expect((error as RichClientError).extra.find((d): d is ErrorInfo => d.$type === ErrorInfo.$type)?.reason).toBe(reason);
      }
    },
  );

  it("left the victim tenant, its admin and its session untouched", async () => {
    const admin = server.as((await server.login("system", "admin", ADMIN_PASSWORD)).accessToken);
    expect((await admin.tenants.getTenant({ id: victim.tenantId })).tenant).toMatchObject({ name: "victim", displayName: "Victim", disabled: false });
    expect((await admin.users.getUser({ tenantId: victim.tenantId, id: victim.userId })).user).toMatchObject({ username: "victim-admin", disabled: false });
    await server.login("victim", "victim-admin", "victim-password");
    const sessions = await admin.issue.listSessions({ tenantId: victim.tenantId, userId: victim.userId });
    expect(sessions.sessions.map((s) => s.id)).toContain(victim.sessionId);
  });

  it("reports a missing token with reason TOKEN_MISSING and a bad header with TOKEN_INVALID", async () => {
    for (const [metadata, reason] of [
      [Metadata(), "TOKEN_MISSING"],
      [Metadata({ authorization: "Basic YWRtaW46YWRtaW4=" }), "TOKEN_INVALID"],
      [Metadata({ authorization: "Bearer not.a.jwt" }), "TOKEN_INVALID"],
    ] as const) {
      const error = await server.clients.users.getMe({}, { metadata }).catch((e: RichClientError) => e);
      expect(error).toBeInstanceOf(RichClientError);
      expect((error as RichClientError).extra.find((d): d is ErrorInfo => d.$type === ErrorInfo.$type)?.reason).toBe(reason);
    }
  });
});

