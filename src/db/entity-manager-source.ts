// What a code path that may not need the database takes instead of an EntityManager.
import type { EntityManager } from "@mikro-orm/core";

/**
 * An EntityManager, or a function that makes one when first needed: a call's
 * fork is made lazily (grpc/middleware.ts), so that the calls answered from
 * caches (VerifyToken of a known token, Health) never build one.
 */
export type EntityManagerSource = EntityManager | (() => EntityManager);

export function entityManagerOf(source: EntityManagerSource): EntityManager {
  return typeof source === "function" ? source() : source;
}
