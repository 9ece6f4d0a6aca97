// Throttling: failed-credential counters and request-rate limits, kept in the
// shared database or Redis. What other domains may use.
export { openLimiterStore, type LimiterStore } from "./limiter-store.ts";
export { LoginThrottle, throttleKey, type LoginThrottleSettings } from "./login-throttle.ts";
export { RateLimit } from "./rate-limit.ts";
export { ThrottleCounterEntity } from "./throttle-counter.entity.ts";
export { ReplayRecordEntity } from "./replay-record.entity.ts";
export { ReplayStore } from "./replay-store.ts";
