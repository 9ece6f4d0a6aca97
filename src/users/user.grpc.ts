// UserService over gRPC: maps proto <-> domain and checks permissions.
import type { ServiceImplementation } from "nice-grpc";
import { refKey } from "../db/refs.ts";
import type { User as UserMessage, UserServiceDefinition } from "@tessera/client";
import { authorizeCall, authorizeCallSelf, authorizeCallSelfOr, hasPermission, isSelf, requirePrincipal } from "../grpc/authorize.ts";
import type { TesseraContext } from "../grpc/context.ts";
import type { TenantService } from "../tenants/index.ts";
import type { User } from "./user.entity.ts";
import type { UserService } from "./user.service.ts";
import type { PermissionService } from "../permissions/index.ts";
import { toGroupMessage } from "../permissions/index.ts";

export function toUserMessage(user: User): UserMessage {
  return {
    id: user.id,
    tenantId: refKey(user.tenant),
    username: user.username,
    email: user.email ?? "",
    displayName: user.displayName,
    disabled: user.disabled,
    createTime: user.createdAt,
    updateTime: user.updatedAt,
  };
}


export function userServiceImpl(users: UserService, tenants: TenantService, permissions: PermissionService): ServiceImplementation<typeof UserServiceDefinition, TesseraContext> {
  return {
    async createUser(request, context) {
      const tenantId = authorizeCall(context, request.tenantId);
      const user = await users.createUser(context.em, tenantId, {
        username: request.user?.username ?? "",
        email: request.user?.email ?? "",
        displayName: request.user?.displayName ?? "",
        password: request.password,
      });
      return { user: toUserMessage(user) };
    },

    async getUser(request, context) {
      const tenantId = authorizeCall(context, request.tenantId);
      return { user: toUserMessage(await users.getUser(context.em, tenantId, request)) };
    },

    async listUsers(request, context) {
      const tenantId = authorizeCall(context, request.tenantId);
      const page = await users.listUsers(context.em, tenantId, request);
      return { users: page.users.map(toUserMessage), nextPageToken: page.nextPageToken };
    },

    async updateUser(request, context) {
      const tenantId = authorizeCall(context, request.tenantId);
      const user = await users.updateUser(
        context.em,
        tenantId,
        request.user?.id ?? "",
        {
          username: request.user?.username ?? "",
          email: request.user?.email ?? "",
          displayName: request.user?.displayName ?? "",
          disabled: request.user?.disabled ?? false,
        },
        request.updateMask ?? [],
      );
      return { user: toUserMessage(user) };
    },

    async deleteUser(request, context) {
      const tenantId = authorizeCall(context, request.tenantId);
      await users.deleteUser(context.em, tenantId, request.id);
      return {};
    },

    async setPassword(request, context) {
      const principal = requirePrincipal(context);
      // Administrators reset anyone's password without the current one (their
      // own too, unless they give the current one); a user changes its own
      // with the current one and identity.self.set_password elected.
      const asAdmin = hasPermission(principal, context.access.permission) && !(isSelf(principal, { tenantId: request.tenantId, userId: request.id }) && request.currentPassword);
      const target = asAdmin
        ? { tenantId: authorizeCall(context, request.tenantId), userId: request.id }
        : authorizeCallSelfOr(context, { tenantId: request.tenantId, userId: request.id });
      await users.setPassword(
        context.em,
        target.tenantId,
        target.userId,
        { newPassword: request.newPassword, currentPassword: request.currentPassword },
        { asAdmin, address: context.peer },
      );
      return {};
    },

    async getMe(_request, context) {
      const principal = authorizeCallSelf(context);
      const user = await users.findUser(context.em, principal.tenantId, { id: principal.subject });
      const groups = await permissions.groupsOf(context.em, user.id);
      return {
        user: toUserMessage(user),
        groups: await Promise.all(groups.map((g) => toGroupMessage(context.em, permissions, g))),
        permissions: (await permissions.effectivePermissions(context.em, principal.tenantId, user.id)).permissions,
        electedPermissions: [...principal.elected].sort(),
      };
    },

    async registerUser(request, context) {
      const tenant = await tenants.findTenantByNameOrId(context.em, request.tenant);
      const user = await users.registerUser(context.em, tenant, {
        username: request.username,
        email: request.email,
        password: request.password,
        passwordConfirmation: request.passwordConfirmation,
      }, context.peer);
      return { user: toUserMessage(user) };
    },
  };
}
