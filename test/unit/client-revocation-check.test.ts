// RevocationWatcher.check: which tokens a revocation event refuses, which it leaves alone, and
// which only the server can settle (issued within moments of a revoke-all, on another clock).
import { RevocationKind, RevocationWatcher, type TesseraClient } from "@tessera/client";
import { describe, expect, it } from "vitest";

// A whole second a minute ago: events older than the watcher's retainMs (1 h) are not remembered.
const T = Math.floor(Date.now() / 1000) * 1000 - 60_000;
const tenantId = "11111111-1111-4111-8111-111111111111";
const userId = "22222222-2222-4222-8222-222222222222";
const token = (issuedMs: number, sessionId = "s1", subject = userId) => ({ subject, tenantId, sessionId, issuedAt: new Date(Math.floor(issuedMs / 1000) * 1000) });

function watcher(failMode: "open" | "closed" = "open") {
  // Never started: events are applied by hand. The client is not used.
  return new RevocationWatcher({} as TesseraClient, { failMode, maxStaleMs: 60_000 });
}
const event = (kind: RevocationKind, at: number, extra: { sessionId?: string; userId?: string } = {}) => ({
  cursor: "1",
  kind,
  tenantId,
  userId: extra.userId ?? "",
  sessionId: extra.sessionId ?? "",
  keyId: "",
  eventTime: new Date(at),
});

describe("RevocationWatcher.check", () => {
  it("refuses a revoked session whatever its iat, and leaves other sessions alone", () => {
    const w = watcher();
    w.apply(event(RevocationKind.REVOCATION_KIND_SESSION_REVOKED, T, { sessionId: "s1", userId }));
    expect(w.check(token(T + 60_000, "s1"))?.reason).toBe("SESSION_REVOKED");
    expect(w.check(token(T - 60_000, "s2"))).toBeUndefined();
  });

  it("orders tokens around a revoke-all: before refused, after accepted, within the clock margin asked of the server", () => {
    const w = watcher();
    w.apply(event(RevocationKind.REVOCATION_KIND_USER_REVOKED, T + 500, { userId }));
    expect(w.check(token(T - 10_000))?.reason).toBe("SESSION_REVOKED");
    expect(w.check(token(T + 10_000))).toBeUndefined();
    const close = w.check(token(T + 1_200));
    expect(close).toEqual({ reason: "AMBIGUOUS", revokedAt: T + 500 });
    // Settled by the server for that revocation ...
    expect(w.check(token(T + 1_200), [T + 500])).toBeUndefined();
    // ... but a later revoke-all is another question.
    w.apply(event(RevocationKind.REVOCATION_KIND_USER_REVOKED, T + 1_900, { userId }));
    expect(w.check(token(T + 1_200), [T + 500])).toEqual({ reason: "AMBIGUOUS", revokedAt: T + 1_900 });
    // Another user of the tenant is not concerned.
    expect(w.check(token(T - 10_000, "s9", "33333333-3333-4333-8333-333333333333"))).toBeUndefined();
  });

  it("forgets nothing it needs and keeps nothing older than every token (retainMs)", () => {
    const w = watcher();
    w.apply(event(RevocationKind.REVOCATION_KIND_SESSION_REVOKED, Date.now() - 2 * 3_600_000, { sessionId: "ancient", userId }));
    w.apply(event(RevocationKind.REVOCATION_KIND_SESSION_REVOKED, T, { sessionId: "recent", userId }));
    expect(w.check(token(T, "ancient"))).toBeUndefined();
    expect(w.check(token(T, "recent"))?.reason).toBe("SESSION_REVOKED");
  });

  it("a disabled tenant refuses its users' earlier tokens", () => {
    const w = watcher();
    w.apply(event(RevocationKind.REVOCATION_KIND_TENANT_REVOKED, T));
    expect(w.check(token(T - 5_000))?.reason).toBe("SESSION_REVOKED");
    expect(w.check(token(T + 5_000))).toBeUndefined();
  });

  it("fails closed only when asked to, once the stream has been down beyond the bound", () => {
    const closed = new RevocationWatcher({} as TesseraClient, { failMode: "closed", maxStaleMs: 0 });
    expect(closed.check(token(T))?.reason).toBe("REVOCATIONS_UNAVAILABLE");
    const open = new RevocationWatcher({} as TesseraClient, { failMode: "open", maxStaleMs: 0 });
    expect(open.check(token(T))).toBeUndefined();
    expect(() => new RevocationWatcher({} as TesseraClient, {} as never)).toThrow(/failMode/);
  });

  it("tells the verifier about withdrawn keys", () => {
    const w = watcher();
    const seen: (string | undefined)[] = [];
    w.onKeysChanged((kid) => seen.push(kid));
    w.apply({ ...event(RevocationKind.REVOCATION_KIND_KEY_RETIRED, T), keyId: "k1" });
    w.apply(event(RevocationKind.REVOCATION_KIND_KEY_ADDED, T));
    expect(seen).toEqual(["k1", undefined]);
    expect(w.cursor).toBe("1");
  });
});
