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
