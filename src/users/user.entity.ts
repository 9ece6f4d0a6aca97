import { defineEntity, p, type InferEntity } from "@mikro-orm/core";
import { TenantEntity } from "../tenants/index.ts";

export const UserEntity = defineEntity({
  name: "User",
  tableName: "users",
  properties: {
    id: p.uuid().primary(),
    tenant: () => p.manyToOne(TenantEntity).deleteRule("cascade"),
    username: p.string().length(64),
    /** Case-folded username: uniqueness and login lookups ignore case. */
    usernameKey: p.string().length(64),
    email: p.string().length(254).nullable(),
    /** Case-folded e-mail, unique in the tenant when set. */
    emailKey: p.string().length(254).nullable(),
    displayName: p.string().length(200).default(""),
    /** argon2id PHC string; null for users who log in through a remote system only. */
    passwordHash: p.string().length(255).nullable().hidden().lazy(),
    disabled: p.boolean().default(false),
    /** The bootstrap administrator cannot be deleted. */
    protected: p.boolean().default(false),
    createdAt: p.datetime().onCreate(() => new Date()),
    updatedAt: p.datetime().onCreate(() => new Date()).onUpdate(() => new Date()),
  },
  uniques: [
    { properties: ["tenant", "usernameKey"] },
    { properties: ["tenant", "emailKey"] },
  ],
});
export type User = InferEntity<typeof UserEntity>;

/**
 * A user's identity at a remote authentication system: the Minecraft UUID
 * (issuer "minecraft") or an OpenID Connect issuer's `sub`. A remote login
 * finds its user by (tenant, issuer, subject), never by the changeable name.
 */
export const ExternalIdentityEntity = defineEntity({
  name: "ExternalIdentity",
  tableName: "external_identities",
  properties: {
    tenant: () => p.manyToOne(TenantEntity).primary().deleteRule("cascade"),
    issuer: p.string().length(255).primary(),
    subject: p.string().length(255).primary(),
    user: () => p.manyToOne(UserEntity).unique().deleteRule("cascade"),
    /** The name the remote system gave at the last login. */
    name: p.string().length(255),
    createdAt: p.datetime().onCreate(() => new Date()),
    lastLoginAt: p.datetime().onCreate(() => new Date()),
  },
});
export type ExternalIdentity = InferEntity<typeof ExternalIdentityEntity>;
