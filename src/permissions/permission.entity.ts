import { defineEntity, p, type InferEntity } from "@mikro-orm/core";
import { TenantEntity } from "../tenants/index.ts";
import { UserEntity } from "../users/index.ts";

/** A microservice that registered its permissions (global catalogue, OpenMatchmaking). */
export const MicroserviceEntity = defineEntity({
  name: "Microservice",
  tableName: "microservices",
  properties: {
    name: p.string().length(100).primary(),
    version: p.string().length(64),
    /**
     * The principal that first registered the name ("user:<uuid>", later
     * "service:<tenant>/<capability>"); only it may register new versions.
     * Null for names registered before owners were recorded: the next
     * registrant claims them.
     */
    owner: p.string().length(200).nullable(),
    createdAt: p.datetime().onCreate(() => new Date()),
    updatedAt: p.datetime().onCreate(() => new Date()).onUpdate(() => new Date()),
  },
});
export type Microservice = InferEntity<typeof MicroserviceEntity>;

/** A registered permission `{microservice}.{resource}.{action}`. */
export const PermissionEntity = defineEntity({
  name: "Permission",
  tableName: "permissions",
  properties: {
    codename: p.string().length(200).primary(),
    microservice: () => p.manyToOne(MicroserviceEntity).deleteRule("cascade"),
    description: p.string().length(500).default(""),
  },
});
export type Permission = InferEntity<typeof PermissionEntity>;

/** A per-tenant group granting permission patterns to its members. */
export const GroupEntity = defineEntity({
  name: "Group",
  tableName: "groups",
  properties: {
    id: p.uuid().primary(),
    tenant: () => p.manyToOne(TenantEntity).deleteRule("cascade"),
    name: p.string().length(100),
    description: p.string().length(500).default(""),
    /** Granted patterns: codenames or `*` per segment. */
    permissions: p.json<string[]>(),
    /** New users of the tenant join it. */
    isDefault: p.boolean().default(false),
    /** Newly registered permissions matching these patterns are added to `permissions`. */
    autoGrantPatterns: p.json<string[]>(),
    /** Protected groups (the system administrators) cannot be deleted. */
    protected: p.boolean().default(false),
    createdAt: p.datetime().onCreate(() => new Date()),
    updatedAt: p.datetime().onCreate(() => new Date()).onUpdate(() => new Date()),
  },
  uniques: [{ properties: ["tenant", "name"] }],
});
export type Group = InferEntity<typeof GroupEntity>;

export const GroupMemberEntity = defineEntity({
  name: "GroupMember",
  tableName: "group_members",
  properties: {
    group: () => p.manyToOne(GroupEntity).primary().deleteRule("cascade"),
    user: () => p.manyToOne(UserEntity).primary().deleteRule("cascade"),
    createdAt: p.datetime().onCreate(() => new Date()),
  },
  indexes: [{ properties: ["user"] }],
});
export type GroupMember = InferEntity<typeof GroupMemberEntity>;
