// PermissionService over gRPC: maps proto <-> domain and checks permissions.
import type { EntityManager } from "@mikro-orm/core";
import type { ServiceImplementation } from "nice-grpc";
import { refKey } from "../db/refs.ts";
import type { Group as GroupMessage, PermissionServiceDefinition } from "@tessera/client";
import { authorizeCall, authorizeCallSelfOr } from "../grpc/authorize.ts";
import type { Principal, TesseraContext } from "../grpc/context.ts";
import type { Group } from "./permission.entity.ts";
import type { GroupFields, PermissionService, Registration, RegistrationResult } from "./permission.service.ts";

export async function toGroupMessage(em: EntityManager, permissions: PermissionService, group: Group): Promise<GroupMessage> {
  return {
    id: group.id,
    tenantId: refKey(group.tenant),
    name: group.name,
    description: group.description,
    permissions: group.permissions,
    default: group.isDefault,
    autoGrantPatterns: group.autoGrantPatterns,
    memberCount: await permissions.memberCount(em, group),
    createTime: group.createdAt,
    updateTime: group.updatedAt,
  };
}

function fieldsOf(group: GroupMessage | undefined): GroupFields {
  return {
    name: group?.name ?? "",
    description: group?.description ?? "",
    permissions: group?.permissions ?? [],
    isDefault: group?.default ?? false,
    autoGrantPatterns: group?.autoGrantPatterns ?? [],
  };
}

/** The owner a principal registers microservices as (MicroserviceEntity.owner). */
export function microserviceOwner(principal: Pick<Principal, "kind" | "subject" | "tenantId">): string {
  return principal.kind === "user" ? `user:${principal.subject}` : `service:${principal.tenantId}/${principal.subject}`;
}

/**
 * RegisterMicroservice for any transport (gRPC, AMQP): the caller must be a
 * system-tenant principal holding identity.microservices.register (the
 * catalogue is global), and only the principal that first registered a name
 * may register it again.
 */
export async function registerMicroserviceAs(
  permissions: PermissionService,
  em: EntityManager,
  caller: Pick<TesseraContext, "principal" | "access">,
  registration: Registration,
): Promise<RegistrationResult> {
  authorizeCall(caller);
  const principal = caller.principal!;
  return permissions.registerMicroservice(em, registration, microserviceOwner(principal));
}

export function permissionServiceImpl(permissions: PermissionService): ServiceImplementation<typeof PermissionServiceDefinition, TesseraContext> {
  const message = (em: EntityManager, group: Group) => toGroupMessage(em, permissions, group);
  return {
    async registerMicroservice(request, context) {
      const result = await registerMicroserviceAs(permissions, context.em, context, request);
      return {
        microservice: { name: result.microservice.name, version: result.microservice.version, permissions: result.permissions, updateTime: result.microservice.updatedAt },
        changed: result.changed,
        removedPermissions: result.removed,
      };
    },

    async listMicroservices(request, context) {
      authorizeCall(context);
      const page = await permissions.listMicroservices(context.em, request);
      return {
        microservices: page.items.map(({ microservice, permissions: specs }) => ({
          name: microservice.name,
          version: microservice.version,
          permissions: specs,
          updateTime: microservice.updatedAt,
        })),
        nextPageToken: page.nextPageToken,
      };
    },

    async listPermissions(request, context) {
      authorizeCall(context);
      return permissions.listPermissions(context.em, request);
    },

    async createGroup(request, context) {
      const tenantId = authorizeCall(context, request.tenantId);
      return { group: await message(context.em, await permissions.createGroup(context.em, tenantId, fieldsOf(request.group))) };
    },

    async getGroup(request, context) {
      const tenantId = authorizeCall(context, request.tenantId);
      const group = await permissions.findGroup(context.em, tenantId, request.id ? { id: request.id } : { name: request.name });
      return { group: await message(context.em, group) };
    },

    async listGroups(request, context) {
      const tenantId = authorizeCall(context, request.tenantId);
      const page = await permissions.listGroups(context.em, tenantId, request);
      return { groups: await Promise.all(page.groups.map((g) => message(context.em, g))), nextPageToken: page.nextPageToken };
    },

    async updateGroup(request, context) {
      const tenantId = authorizeCall(context, request.tenantId);
      const group = await permissions.updateGroup(context.em, tenantId, request.group?.id ?? "", fieldsOf(request.group), request.updateMask ?? []);
      return { group: await message(context.em, group) };
    },

    async deleteGroup(request, context) {
      const tenantId = authorizeCall(context, request.tenantId);
      await permissions.deleteGroup(context.em, tenantId, request.id);
      return {};
    },

    async addGroupMembers(request, context) {
      const tenantId = authorizeCall(context, request.tenantId);
      await permissions.addMembers(context.em, tenantId, request.groupId, request.userIds);
      return {};
    },

    async removeGroupMembers(request, context) {
      const tenantId = authorizeCall(context, request.tenantId);
      await permissions.removeMembers(context.em, tenantId, request.groupId, request.userIds);
      return {};
    },

    async getEffectivePermissions(request, context) {
      const target = authorizeCallSelfOr(context, request);
      return permissions.effectivePermissions(context.em, target.tenantId, target.userId);
    },
  };
}
