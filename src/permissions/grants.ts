// What a user is granted now: the union of its groups' grant patterns, plus
// the self-service permissions every user holds on its own account.
import type { EntityManager } from "@mikro-orm/core";
import { GroupMemberEntity } from "./permission.entity.ts";
import { patternMatches, withoutRedundant } from "./match.ts";
import { SELF_GRANTS } from "./identity-permissions.ts";

/** A user's grants from its groups' patterns: the one definition, for the login query and the ORM path alike. */
export function userGrants(groupPatterns: Iterable<string>): string[] {
  return withoutRedundant([...groupPatterns, ...SELF_GRANTS]);
}

/**
 * A user's group grant patterns as one SQL expression (a jsonb array of the
 * groups' pattern arrays), for the raw statements of the hot paths (login,
 * refresh) that read them in the same round trip as the rest; turn the value
 * into grants with grantsFromSql. `userId` is the SQL of the user's id column.
 */
export function groupPatternsSql(userId: string): string {
  return `coalesce((select jsonb_agg(g.permissions) from group_members m join groups g on g.id = m.group_id where m.user_id = ${userId}), '[]'::jsonb)`;
}

/** The grants from a groupPatternsSql column, as the driver returns jsonb (parsed, or as text). */
export function grantsFromSql(value: unknown): string[] {
  const lists = (typeof value === "string" ? JSON.parse(value) : value) as string[][];
  return userGrants(lists.flat());
}

export async function grantedPatterns(em: EntityManager, userId: string): Promise<string[]> {
  const memberships = await em.find(GroupMemberEntity, { user: userId }, { populate: ["group"] });
  return userGrants(memberships.flatMap((m) => m.group.permissions));
}

/**
 * Does some grant cover everything `requested` covers? patternMatches is
 * segment-wise, so a requested `*` is covered only by a granted `*`.
 */
export function anyCovers(grants: readonly string[], requested: string): boolean {
  return grants.some((g) => patternMatches(g, requested));
}
