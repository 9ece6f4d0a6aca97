import { defineEntity, p, type InferEntity } from "@mikro-orm/core";

/**
 * The revocation log: ordered events that local verifiers and other replicas
 * follow (WatchRevocations, cache invalidation). The id is the cursor.
 */
export const RevocationEventEntity = defineEntity({
  name: "RevocationEvent",
  tableName: "revocation_events",
  properties: {
    id: p.bigint("number").primary().autoincrement(),
    kind: p.string().length(32),
    tenantId: p.string().length(36).nullable(),
    userId: p.string().length(36).nullable(),
    sessionId: p.string().length(36).nullable(),
    keyId: p.string().length(64).nullable(),
    createdAt: p.datetime().onCreate(() => new Date()),
  },
  // Retention purges by age; the feed starts from the newest event older than its gap wait.
  indexes: [{ properties: ["createdAt"] }],
});
export type RevocationEvent = InferEntity<typeof RevocationEventEntity>;
