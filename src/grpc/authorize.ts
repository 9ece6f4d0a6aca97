// Authorization of a call: who is calling (the principal the auth middleware
// put in the context), which permission the RPC needs, and which tenant it
// may act on. Only the system tenant's principals act across tenants.
import { permissionDenied, unauthenticated } from "../errors.ts";
import { anyPatternMatches } from "../permissions/index.ts";
import { SYSTEM_TENANT_NAME } from "../tenants/index.ts";
import type { Principal } from "../tokens/index.ts";
import type { TesseraContext } from "./context.ts";

export function requirePrincipal(context: Pick<TesseraContext, "principal">): Principal {
  if (!context.principal) throw unauthenticated("TOKEN_MISSING", "this call needs authorization: Bearer <access token>");
  return context.principal;
}

export function hasPermission(principal: Principal, permission: string): boolean {
  return anyPatternMatches(principal.permissions, permission);
}

/**
 * Checks that the caller holds `permission` and may act on `requestedTenantId`
 * (empty means its own tenant). Returns the tenant id the call acts on.
 */
export function authorize(context: Pick<TesseraContext, "principal">, permission: string, requestedTenantId = ""): string {
  const principal = requirePrincipal(context);
  const tenantId = requestedTenantId || principal.tenantId;
  if (tenantId !== principal.tenantId && principal.tenantName !== SYSTEM_TENANT_NAME) {
    throw permissionDenied("you may only act on your own tenant");
  }
  if (!hasPermission(principal, permission)) throw permissionDenied(`missing permission ${permission}`);
  return tenantId;
}

/** For cross-tenant operations (list/create/delete tenants, key rotation): system tenant only. */
export function authorizeSystem(context: Pick<TesseraContext, "principal">, permission: string): Principal {
  const principal = requirePrincipal(context);
  if (principal.tenantName !== SYSTEM_TENANT_NAME) throw permissionDenied("only the system tenant may do this");
  if (!hasPermission(principal, permission)) throw permissionDenied(`missing permission ${permission}`);
  return principal;
}

/**
 * Self-service RPCs act on the caller itself or, for administrators, on
 * another user. On itself a user needs `selfPermission` (identity.self.*,
 * granted to every user and elected by default, so that a token elected to a
 * narrow scope cannot manage the account); on anyone else `otherPermission`,
 * checked as authorize() does. Empty ids mean the caller.
 */
export function authorizeSelfOr(
  context: Pick<TesseraContext, "principal">,
  target: { tenantId: string; userId: string },
  selfPermission: string,
  otherPermission: string,
): { tenantId: string; userId: string; self: boolean } {
  const principal = requirePrincipal(context);
  if (isSelf(principal, target)) {
    requireSelfPermission(context, selfPermission);
    return { tenantId: principal.tenantId, userId: principal.subject, self: true };
  }
  return { tenantId: authorize(context, otherPermission, target.tenantId), userId: target.userId, self: false };
}

/** The calling user, holding `selfPermission` (an identity.self.* permission) in this token. */
export function requireSelfPermission(context: Pick<TesseraContext, "principal">, selfPermission: string): Principal {
  const principal = requirePrincipal(context);
  if (principal.kind !== "user") throw permissionDenied("only users have an account to manage");
  if (!hasPermission(principal, selfPermission)) throw permissionDenied(`missing permission ${selfPermission} (not elected in this token)`);
  return principal;
}

/** Is `target` (empty ids: the caller) the calling user itself? */
export function isSelf(principal: Principal, target: { tenantId: string; userId: string }): boolean {
  return principal.kind === "user" && (!target.userId || target.userId === principal.subject) && (!target.tenantId || target.tenantId === principal.tenantId);
}

// ------------------------------------------------------------------------
// The same checks with the permissions the RPC declares (context.access), so
// that handlers never repeat a permission name.

type CallAccess = Pick<TesseraContext, "principal" | "access">;

/**
 * A PERMISSION method: the caller holds the declared permission and may act
 * on `requestedTenantId` (system-only methods: the caller is a system-tenant
 * principal). Returns the tenant id the call acts on.
 */
export function authorizeCall(context: CallAccess, requestedTenantId = ""): string {
  const { permission, systemOnly } = context.access;
  if (systemOnly) {
    const principal = authorizeSystem(context, permission);
    return requestedTenantId || principal.tenantId;
  }
  return authorize(context, permission, requestedTenantId);
}

/** A SELF_OR_PERMISSION method: authorizeSelfOr with the declared permissions. */
export function authorizeCallSelfOr(context: CallAccess, target: { tenantId: string; userId: string }): { tenantId: string; userId: string; self: boolean } {
  return authorizeSelfOr(context, target, context.access.selfPermission, context.access.permission);
}

/** A SELF method: the calling user, holding the declared identity.self.* permission. */
export function authorizeCallSelf(context: CallAccess): Principal {
  return requireSelfPermission(context, context.access.selfPermission);
}
