// What a user is granted now: the union of its groups' grant patterns.
import type { EntityManager } from "@mikro-orm/core";
import { GroupMemberEntity } from "./permission.entity.ts";
import { patternMatches } from "./match.ts";

export async function grantedPatterns(em: EntityManager, userId: string): Promise<string[]> {
  const memberships = await em.find(GroupMemberEntity, { user: userId }, { populate: ["group"] });
  const patterns = new Set<string>();
  for (const m of memberships) for (const p of m.group.permissions) patterns.add(p);
  return [...patterns].sort();
}

/**
 * Does some grant cover everything `requested` covers? patternMatches is
 * segment-wise, so a requested `*` is covered only by a granted `*`.
 */
export function anyCovers(grants: readonly string[], requested: string): boolean {
  return grants.some((g) => patternMatches(g, requested));
}
