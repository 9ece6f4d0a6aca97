import { defineEntity, p, type InferEntity } from "@mikro-orm/core";

/**
 * A throttling counter as rate-limiter-flexible's PostgreSQL store keeps it
 * (its column names, types and order): a hashed key, the points consumed in
 * the current window, and when the window (or block) ends, in epoch ms.
 */
export const ThrottleCounterEntity = defineEntity({
  name: "ThrottleCounter",
  tableName: "throttle_counters",
  properties: {
    key: p.string().length(255).primary(),
    points: p.integer().default(0),
    expire: p.bigint("number").nullable(),
  },
});
export type ThrottleCounter = InferEntity<typeof ThrottleCounterEntity>;
