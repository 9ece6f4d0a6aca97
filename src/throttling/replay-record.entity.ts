import { defineEntity, p, type InferEntity } from "@mikro-orm/core";

/**
 * A single-use proof already used: a service assertion's `jti`, an OpenID
 * Connect ID token, remembered until it expires so that a replay is refused
 * on every replica. The key is SHA-256 of what identifies the proof (the
 * caller's kind prefix included): bounded whatever the caller sends.
 */
export const ReplayRecordEntity = defineEntity({
  name: "ReplayRecord",
  tableName: "replay_records",
  properties: {
    key: p.string().length(64).primary(),
    expiresAt: p.datetime().index(),
  },
});
export type ReplayRecord = InferEntity<typeof ReplayRecordEntity>;
