// The administrators group every tenant gets: all permissions within the
// tenant, holding the tenant's first admin. The system tenant's is protected.
import type { EntityManager } from "@mikro-orm/core";
import type { Tenant } from "../tenants/index.ts";
import type { User } from "../users/index.ts";
import { ADMIN_GRANTS, ADMIN_GROUP_NAME } from "./identity-permissions.ts";
import { GroupEntity, GroupMemberEntity } from "./permission.entity.ts";

export function createAdminGroup(em: EntityManager, tenant: Tenant, admin: User | undefined, isProtected: boolean): void {
  const group = em.create(GroupEntity, {
    id: crypto.randomUUID(),
    tenant,
    name: ADMIN_GROUP_NAME,
    description: "Administrators of this tenant",
    permissions: [...ADMIN_GRANTS],
    isDefault: false,
    autoGrantPatterns: [],
    protected: isProtected,
  });
  if (admin) em.create(GroupMemberEntity, { group, user: admin });
}
