// Call authorization (src/grpc/authorize.ts) on principals built here: who may
// act on which tenant, with which permission, on itself or on another user.
import { describe, expect, it } from "vitest";
import { refusal } from "../support/errors.ts";
import { TesseraError } from "../../src/errors.ts";
import {
  authorize,
  authorizeCall,
  authorizeCallSelf,
  authorizeCallSelfOr,
  authorizeSelfOr,
  authorizeSystem,
  hasPermission,
  isSelf,
  requirePrincipal,
  requireSelfPermission,
} from "../../src/grpc/authorize.ts";

// Taken from the functions themselves, so these tests do not depend on which
// module declares Principal.
type Principal = Parameters<typeof hasPermission>[0];
type Context = Parameters<typeof requirePrincipal>[0];

/** The system tenant is known by its name (SYSTEM_TENANT_NAME in src/tenants). */
const SYSTEM_TENANT_NAME = "system";
const OWN_TENANT = "11111111-1111-4111-8111-111111111111";
const OTHER_TENANT = "22222222-2222-4222-8222-222222222222";
const SYSTEM_TENANT = "00000000-0000-4000-8000-000000000000";
const ME = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa";
const SOMEONE = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb";

function principal(overrides: Partial<Principal> = {}): Principal {
  return {
    kind: "user",
    subject: ME,
    tenantId: OWN_TENANT,
    tenantName: "acme",
    sessionId: "cccccccc-cccc-4ccc-8ccc-cccccccccccc",
    username: "alice",
    upn: `${ME}@acme`,
    permissions: [],
    elected: [],
    expiresAt: new Date("2030-01-01T00:00:00Z"),
    audience: ["tessera"],
    token: "header.payload.signature",
    ...overrides,
  };
}

const systemPrincipal = (overrides: Partial<Principal> = {}) =>
  principal({ tenantId: SYSTEM_TENANT, tenantName: SYSTEM_TENANT_NAME, username: "root", ...overrides });
const ctx = (p?: Principal): Context => (p ? { principal: p } : {});


const denied = (message: string) => ({ kind: "PERMISSION_DENIED", reason: "PERMISSION_DENIED", message });
const NO_TOKEN = { kind: "UNAUTHENTICATED", reason: "TOKEN_MISSING", message: "this call needs authorization: Bearer <access token>" };

describe("requirePrincipal", () => {
  it("returns the context's principal", () => {
    const p = principal();
    expect(requirePrincipal(ctx(p))).toBe(p);
  });

  it("refuses a call without one as UNAUTHENTICATED/TOKEN_MISSING", () => {
    expect(refusal(() => requirePrincipal({}))).toEqual(NO_TOKEN);
    expect(refusal(() => requirePrincipal({ principal: undefined }))).toEqual(NO_TOKEN);
  });
});

describe("hasPermission", () => {
  it("is true when a permission pattern of the principal covers the codename", () => {
    const p = principal({ permissions: ["game.profile.retrieve", "identity.users.*"] });
    expect(hasPermission(p, "game.profile.retrieve")).toBe(true);
    expect(hasPermission(p, "identity.users.create")).toBe(true);
    expect(hasPermission(p, "game.profile.update")).toBe(false);
    expect(hasPermission(p, "identity.groups.create")).toBe(false);
  });

  it("looks at the permissions (granted ∩ elected), not at the elected scope alone", () => {
    const p = principal({ permissions: ["game.profile.retrieve"], elected: ["*.*.*"] });
    expect(hasPermission(p, "game.profile.retrieve")).toBe(true);
    expect(hasPermission(p, "identity.tenants.delete")).toBe(false);
    expect(hasPermission(principal({ permissions: [] }), "game.profile.retrieve")).toBe(false);
  });
});

describe("authorize", () => {
  it("refuses a call without a principal", () => {
    expect(refusal(() => authorize({}, "identity.users.list"))).toEqual(NO_TOKEN);
    expect(refusal(() => authorize({}, "identity.users.list", OWN_TENANT))).toEqual(NO_TOKEN);
  });

  it("acts on the caller's own tenant when none is requested, or when it is requested by id", () => {
    const p = principal({ permissions: ["identity.users.list"] });
    expect(authorize(ctx(p), "identity.users.list")).toBe(OWN_TENANT);
    expect(authorize(ctx(p), "identity.users.list", "")).toBe(OWN_TENANT);
    expect(authorize(ctx(p), "identity.users.list", OWN_TENANT)).toBe(OWN_TENANT);
  });

  it("needs the permission, on its own tenant too", () => {
    const p = principal({ permissions: ["identity.users.list"] });
    expect(refusal(() => authorize(ctx(p), "identity.users.create"))).toEqual(denied("missing permission identity.users.create"));
    expect(refusal(() => authorize(ctx(p), "identity.users.create", OWN_TENANT))).toEqual(denied("missing permission identity.users.create"));
  });

  it("refuses another tenant to a principal outside the system tenant, whatever its permissions", () => {
    const p = principal({ permissions: ["*.*.*"] });
    expect(refusal(() => authorize(ctx(p), "identity.users.list", OTHER_TENANT))).toEqual(denied("you may only act on your own tenant"));
    expect(refusal(() => authorize(ctx(p), "identity.users.list", SYSTEM_TENANT))).toEqual(denied("you may only act on your own tenant"));
    // A tenant whose name merely resembles "system" is not the system tenant.
    for (const tenantName of ["System", "system ", "systems", ""]) {
      const q = principal({ tenantName, permissions: ["*.*.*"] });
      expect(refusal(() => authorize(ctx(q), "identity.users.list", OTHER_TENANT)), tenantName).toEqual(denied("you may only act on your own tenant"));
    }
  });

  it("refuses another tenant before looking at the permission", () => {
    expect(refusal(() => authorize(ctx(principal()), "identity.users.list", OTHER_TENANT))).toEqual(denied("you may only act on your own tenant"));
  });

  it("lets a system-tenant principal act on any tenant, with the permission", () => {
    const p = systemPrincipal({ permissions: ["identity.users.*"] });
    expect(authorize(ctx(p), "identity.users.list", OTHER_TENANT)).toBe(OTHER_TENANT);
    expect(authorize(ctx(p), "identity.users.list", OWN_TENANT)).toBe(OWN_TENANT);
    expect(authorize(ctx(p), "identity.users.list")).toBe(SYSTEM_TENANT);
    expect(refusal(() => authorize(ctx(p), "identity.groups.list", OTHER_TENANT))).toEqual(denied("missing permission identity.groups.list"));
    expect(refusal(() => authorize(ctx(systemPrincipal()), "identity.users.list", OTHER_TENANT))).toEqual(denied("missing permission identity.users.list"));
  });
});

describe("authorizeSystem", () => {
  it("refuses a call without a principal", () => {
    expect(refusal(() => authorizeSystem({}, "identity.tenants.create"))).toEqual(NO_TOKEN);
  });

  it("returns a system-tenant principal holding the permission", () => {
    const p = systemPrincipal({ permissions: ["identity.tenants.*"] });
    expect(authorizeSystem(ctx(p), "identity.tenants.create")).toBe(p);
    const s = systemPrincipal({ kind: "service", subject: "eu-1", username: "", permissions: ["identity.signing_keys.rotate"] });
    expect(authorizeSystem(ctx(s), "identity.signing_keys.rotate")).toBe(s);
  });

  it("refuses a system-tenant principal without the permission", () => {
    const p = systemPrincipal({ permissions: ["identity.tenants.list"] });
    expect(refusal(() => authorizeSystem(ctx(p), "identity.tenants.create"))).toEqual(denied("missing permission identity.tenants.create"));
    expect(refusal(() => authorizeSystem(ctx(systemPrincipal()), "identity.tenants.list"))).toEqual(denied("missing permission identity.tenants.list"));
    // The permission must be held now: being elected in the scope is not enough.
    const elected = systemPrincipal({ permissions: [], elected: ["identity.tenants.*"] });
    expect(refusal(() => authorizeSystem(ctx(elected), "identity.tenants.create"))).toEqual(denied("missing permission identity.tenants.create"));
  });

  it("refuses every other tenant's principal, even one holding *.*.*", () => {
    for (const p of [
      principal({ permissions: ["*.*.*"] }),
      principal({ permissions: ["identity.tenants.create"] }),
      principal({ tenantName: "System", permissions: ["*.*.*"] }),
      // The system tenant is known by its name, not by an id the caller could pick.
      principal({ tenantId: SYSTEM_TENANT, tenantName: "acme", permissions: ["*.*.*"] }),
      principal({ kind: "service", permissions: ["*.*.*"] }),
    ]) {
      expect(refusal(() => authorizeSystem(ctx(p), "identity.tenants.create"))).toEqual(denied("only the system tenant may do this"));
    }
  });
});

describe("requireSelfPermission", () => {
  it("refuses a call without a principal", () => {
    expect(refusal(() => requireSelfPermission({}, "identity.self.retrieve"))).toEqual(NO_TOKEN);
  });

  it("returns the calling user holding the self permission in this token", () => {
    const p = principal({ permissions: ["identity.self.*"] });
    expect(requireSelfPermission(ctx(p), "identity.self.set_password")).toBe(p);
    const exact = principal({ permissions: ["identity.self.retrieve"] });
    expect(requireSelfPermission(ctx(exact), "identity.self.retrieve")).toBe(exact);
  });

  it("refuses a user whose token does not carry it", () => {
    const p = principal({ permissions: ["identity.self.retrieve", "identity.users.*"] });
    expect(refusal(() => requireSelfPermission(ctx(p), "identity.self.set_password"))).toEqual(
      denied("missing permission identity.self.set_password (not elected in this token)"),
    );
  });

  it("refuses services: they have no account to manage", () => {
    const s = principal({ kind: "service", subject: "eu-1", username: "", permissions: ["*.*.*"] });
    expect(refusal(() => requireSelfPermission(ctx(s), "identity.self.retrieve"))).toEqual(denied("only users have an account to manage"));
    expect(refusal(() => requireSelfPermission(ctx({ ...s, permissions: [] }), "identity.self.retrieve"))).toEqual(denied("only users have an account to manage"));
  });
});

describe("isSelf", () => {
  const user = principal();
  it.each([
    [{ tenantId: "", userId: "" }, true],
    [{ tenantId: OWN_TENANT, userId: "" }, true],
    [{ tenantId: "", userId: ME }, true],
    [{ tenantId: OWN_TENANT, userId: ME }, true],
    [{ tenantId: "", userId: SOMEONE }, false],
    [{ tenantId: OWN_TENANT, userId: SOMEONE }, false],
    [{ tenantId: OTHER_TENANT, userId: "" }, false],
    [{ tenantId: OTHER_TENANT, userId: ME }, false],
    [{ tenantId: OTHER_TENANT, userId: SOMEONE }, false],
  ])("for a user, target %o is itself: %s", (target, expected) => {
    expect(isSelf(user, target)).toBe(expected);
  });

  it("is never true for a service, not even with its own subject and tenant", () => {
    const s = principal({ kind: "service", subject: "eu-1" });
    for (const target of [
      { tenantId: "", userId: "" },
      { tenantId: OWN_TENANT, userId: "eu-1" },
      { tenantId: "", userId: "eu-1" },
    ]) {
      expect(isSelf(s, target)).toBe(false);
    }
  });
});

describe("authorizeSelfOr", () => {
  const SELF = "identity.self.retrieve";
  const OTHER = "identity.users.get";

  it("refuses a call without a principal", () => {
    expect(refusal(() => authorizeSelfOr({}, { tenantId: "", userId: "" }, SELF, OTHER))).toEqual(NO_TOKEN);
  });

  it("acts on the caller itself (empty or own ids) with the self permission, and returns its ids", () => {
    const p = principal({ permissions: ["identity.self.*"] });
    for (const target of [
      { tenantId: "", userId: "" },
      { tenantId: OWN_TENANT, userId: ME },
      { tenantId: "", userId: ME },
      { tenantId: OWN_TENANT, userId: "" },
    ]) {
      expect(authorizeSelfOr(ctx(p), target, SELF, OTHER)).toEqual({ tenantId: OWN_TENANT, userId: ME, self: true });
    }
  });

  it("on itself needs the self permission, not the other one", () => {
    const p = principal({ permissions: [OTHER, "identity.users.*"] });
    expect(refusal(() => authorizeSelfOr(ctx(p), { tenantId: "", userId: "" }, SELF, OTHER))).toEqual(
      denied(`missing permission ${SELF} (not elected in this token)`),
    );
    expect(refusal(() => authorizeSelfOr(ctx(p), { tenantId: OWN_TENANT, userId: ME }, SELF, OTHER))).toEqual(
      denied(`missing permission ${SELF} (not elected in this token)`),
    );
  });

  it("on another user of its tenant needs the other permission, not the self one", () => {
    const admin = principal({ permissions: [OTHER] });
    expect(authorizeSelfOr(ctx(admin), { tenantId: "", userId: SOMEONE }, SELF, OTHER)).toEqual({ tenantId: OWN_TENANT, userId: SOMEONE, self: false });
    expect(authorizeSelfOr(ctx(admin), { tenantId: OWN_TENANT, userId: SOMEONE }, SELF, OTHER)).toEqual({
      tenantId: OWN_TENANT,
      userId: SOMEONE,
      self: false,
    });
    const selfOnly = principal({ permissions: ["identity.self.*"] });
    expect(refusal(() => authorizeSelfOr(ctx(selfOnly), { tenantId: "", userId: SOMEONE }, SELF, OTHER))).toEqual(denied(`missing permission ${OTHER}`));
  });

  it("on another tenant's user is refused outside the system tenant, allowed in it", () => {
    const admin = principal({ permissions: ["*.*.*"] });
    expect(refusal(() => authorizeSelfOr(ctx(admin), { tenantId: OTHER_TENANT, userId: SOMEONE }, SELF, OTHER))).toEqual(
      denied("you may only act on your own tenant"),
    );
    // Its own user id in another tenant is another user.
    expect(refusal(() => authorizeSelfOr(ctx(admin), { tenantId: OTHER_TENANT, userId: ME }, SELF, OTHER))).toEqual(
      denied("you may only act on your own tenant"),
    );
    const root = systemPrincipal({ permissions: [OTHER] });
    expect(authorizeSelfOr(ctx(root), { tenantId: OTHER_TENANT, userId: SOMEONE }, SELF, OTHER)).toEqual({
      tenantId: OTHER_TENANT,
      userId: SOMEONE,
      self: false,
    });
    expect(refusal(() => authorizeSelfOr(ctx(systemPrincipal()), { tenantId: OTHER_TENANT, userId: SOMEONE }, SELF, OTHER))).toEqual(
      denied(`missing permission ${OTHER}`),
    );
  });

  it("treats a service as acting on others: the other permission, in its own tenant", () => {
    const s = principal({ kind: "service", subject: "eu-1", username: "", permissions: [OTHER] });
    expect(authorizeSelfOr(ctx(s), { tenantId: "", userId: SOMEONE }, SELF, OTHER)).toEqual({ tenantId: OWN_TENANT, userId: SOMEONE, self: false });
    expect(authorizeSelfOr(ctx(s), { tenantId: "", userId: "" }, SELF, OTHER)).toEqual({ tenantId: OWN_TENANT, userId: "", self: false });
    const selfOnly = { ...s, permissions: ["identity.self.*"] };
    expect(refusal(() => authorizeSelfOr(ctx(selfOnly), { tenantId: "", userId: "" }, SELF, OTHER))).toEqual(denied(`missing permission ${OTHER}`));
  });
});

// The same checks driven by the RPC's declared access (context.access).
describe("authorizeCall, authorizeCallSelfOr, authorizeCallSelf", () => {
  type CallContext = Parameters<typeof authorizeCall>[0];
  type Access = CallContext["access"];
  const access = (overrides: Partial<Access> = {}): Access => ({
    kind: "permission",
    permission: "identity.users.list",
    selfPermission: "",
    systemOnly: false,
    anonymousWhenConfigured: false,
    ...overrides,
  });
  const call = (p: Principal | undefined, a: Access): CallContext => ({ principal: p, access: a });

  it("checks the declared permission and tenant as authorize() does", () => {
    const p = principal({ permissions: ["identity.users.list"] });
    expect(authorizeCall(call(p, access()))).toBe(OWN_TENANT);
    expect(authorizeCall(call(p, access()), OWN_TENANT)).toBe(OWN_TENANT);
    expect(refusal(() => authorizeCall(call(p, access()), OTHER_TENANT))).toEqual(denied("you may only act on your own tenant"));
    expect(refusal(() => authorizeCall(call(p, access({ permission: "identity.users.create" }))))).toEqual(denied("missing permission identity.users.create"));
    expect(refusal(() => authorizeCall(call(undefined, access())))).toEqual(NO_TOKEN);
    const root = systemPrincipal({ permissions: ["identity.users.list"] });
    expect(authorizeCall(call(root, access()), OTHER_TENANT)).toBe(OTHER_TENANT);
  });

  it("for a system-only method, checks as authorizeSystem() does and acts on the system tenant", () => {
    const systemOnly = access({ permission: "identity.tenants.list", systemOnly: true });
    const root = systemPrincipal({ permissions: ["identity.tenants.*"] });
    expect(authorizeCall(call(root, systemOnly))).toBe(SYSTEM_TENANT);
    expect(refusal(() => authorizeCall(call(systemPrincipal(), systemOnly)))).toEqual(denied("missing permission identity.tenants.list"));
    expect(refusal(() => authorizeCall(call(principal({ permissions: ["*.*.*"] }), systemOnly)))).toEqual(denied("only the system tenant may do this"));
    expect(refusal(() => authorizeCall(call(undefined, systemOnly)))).toEqual(NO_TOKEN);
    // Naming a tenant skips none of it.
    expect(authorizeCall(call(root, systemOnly), OTHER_TENANT)).toBe(OTHER_TENANT);
    expect(refusal(() => authorizeCall(call(principal({ permissions: ["*.*.*"] }), systemOnly), OTHER_TENANT))).toEqual(denied("only the system tenant may do this"));
    expect(refusal(() => authorizeCall(call(systemPrincipal(), systemOnly), OTHER_TENANT))).toEqual(denied("missing permission identity.tenants.list"));
    expect(refusal(() => authorizeCall(call(undefined, systemOnly), OTHER_TENANT))).toEqual(NO_TOKEN);
  });

  it("authorizeCallSelfOr uses the declared self and other permissions", () => {
    const a = access({ kind: "self-or-permission", permission: "identity.users.get", selfPermission: "identity.self.retrieve" });
    const me = principal({ permissions: ["identity.self.retrieve"] });
    expect(authorizeCallSelfOr(call(me, a), { tenantId: "", userId: "" })).toEqual({ tenantId: OWN_TENANT, userId: ME, self: true });
    expect(refusal(() => authorizeCallSelfOr(call(me, a), { tenantId: "", userId: SOMEONE }))).toEqual(denied("missing permission identity.users.get"));
    const admin = principal({ permissions: ["identity.users.get"] });
    expect(authorizeCallSelfOr(call(admin, a), { tenantId: "", userId: SOMEONE })).toEqual({ tenantId: OWN_TENANT, userId: SOMEONE, self: false });
    expect(refusal(() => authorizeCallSelfOr(call(admin, a), { tenantId: "", userId: "" }))).toEqual(
      denied("missing permission identity.self.retrieve (not elected in this token)"),
    );
  });

  it("authorizeCallSelf needs the declared identity.self.* permission", () => {
    const a = access({ kind: "self", permission: "", selfPermission: "identity.self.set_password" });
    const me = principal({ permissions: ["identity.self.set_password"] });
    expect(authorizeCallSelf(call(me, a))).toBe(me);
    expect(refusal(() => authorizeCallSelf(call(principal({ permissions: ["identity.self.retrieve"] }), a)))).toEqual(
      denied("missing permission identity.self.set_password (not elected in this token)"),
    );
    expect(refusal(() => authorizeCallSelf(call(principal({ kind: "service", permissions: ["*.*.*"] }), a)))).toEqual(denied("only users have an account to manage"));
    expect(refusal(() => authorizeCallSelf(call(undefined, a)))).toEqual(NO_TOKEN);
  });
});
