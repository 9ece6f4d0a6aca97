// The revocation log and its feed: what the rest of the code may use.
export { RevocationEventEntity, type RevocationEvent } from "./revocation-event.entity.ts";
export { recordRevocation, RevocationRecorder, type RevocationKind, type RevocationRecord } from "./revocation-log.ts";
export { GAP_WAIT_MS, RevocationFeed } from "./revocation-feed.ts";
