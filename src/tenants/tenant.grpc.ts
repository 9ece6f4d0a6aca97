// TenantService over gRPC: maps proto <-> domain and checks permissions.
import type { ServiceImplementation } from "nice-grpc";
import type { TenantServiceDefinition, Tenant as TenantMessage } from "@tessera/client";
import { notFound, permissionDenied } from "../errors.ts";
import { authorizeCall } from "../grpc/authorize.ts";
import type { TesseraContext } from "../grpc/context.ts";
import { toUserMessage } from "../users/index.ts";
import { SYSTEM_TENANT_NAME, type TenantRecord, type TenantService } from "./tenant.service.ts";

export function toTenantMessage(tenant: TenantRecord): TenantMessage {
  return {
    id: tenant.id,
    name: tenant.name,
    displayName: tenant.displayName,
    domains: tenant.domains,
    disabled: tenant.disabled,
    selfRegistrationEnabled: tenant.selfRegistrationEnabled,
    oidcIssuers: tenant.oidcIssuers,
    createTime: tenant.createdAt,
    updateTime: tenant.updatedAt,
  };
}

function fieldsOf(tenant: TenantMessage | undefined) {
  return {
    name: tenant?.name ?? "",
    displayName: tenant?.displayName ?? "",
    domains: tenant?.domains ?? [],
    disabled: tenant?.disabled ?? false,
    selfRegistrationEnabled: tenant?.selfRegistrationEnabled ?? false,
    oidcIssuers: tenant?.oidcIssuers ?? [],
  };
}

export function tenantServiceImpl(
  tenants: TenantService,
  options: { openTenantSignup: boolean },
): ServiceImplementation<typeof TenantServiceDefinition, TesseraContext> {
  return {
    async createTenant(request, context) {
      if (context.principal || !options.openTenantSignup) {
        if (!context.principal && !options.openTenantSignup) {
          // Anonymous and signup closed: say why, rather than just "missing token".
          throw permissionDenied("open tenant signup is disabled on this server", "TENANT_SIGNUP_DISABLED");
        }
        authorizeCall(context);
      }
      const admin = request.admin
        ? { username: request.admin.username, email: request.admin.email, password: request.admin.password }
        : undefined;
      const created = await tenants.createTenant(context.em, fieldsOf(request.tenant), admin);
      return { tenant: toTenantMessage(created.tenant), admin: created.admin ? toUserMessage(created.admin) : undefined };
    },

    async getTenant(request, context) {
      const ownTenantId = authorizeCall(context);
      const tenant = await tenants.getTenant(context.em, { id: request.id, name: request.name });
      // Other tenants are invisible to everyone but the system tenant: not found, not "forbidden".
      if (tenant.id !== ownTenantId && context.principal?.tenantName !== SYSTEM_TENANT_NAME) {
        throw notFound("TENANT_NOT_FOUND", "tenant not found");
      }
      return { tenant: toTenantMessage(tenant) };
    },

    async listTenants(request, context) {
      authorizeCall(context);
      const page = await tenants.listTenants(context.em, request);
      return { tenants: page.tenants.map(toTenantMessage), nextPageToken: page.nextPageToken };
    },

    async updateTenant(request, context) {
      const id = request.tenant?.id ?? "";
      authorizeCall(context, id);
      const tenant = await tenants.updateTenant(context.em, id, fieldsOf(request.tenant), request.updateMask ?? []);
      return { tenant: toTenantMessage(tenant) };
    },

    async deleteTenant(request, context) {
      authorizeCall(context);
      await tenants.deleteTenant(context.em, request.id);
      return {};
    },
  };
}
