// The refresh and verify flows check by check: each test here fails when one
// check of refresh-rotation.ts or verification.ts is removed (see the comment
// above each test for the check it holds). Real servers, real channels; two
// tests also reach into the server's own database, where the API cannot build
// the state a check exists for (said where they do).
import { setTimeout as sleep } from "node:timers/promises";
import { Status } from "nice-grpc";
import { ErrorInfo, RichClientError } from "nice-grpc-error-details";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { IssueTokenResponse } from "@tessera/client";
import { signJwt, type AccessClaims } from "../../src/tokens/jwt.ts";
import { KeyStore } from "../../src/tokens/keys.ts";
import { loadOrCreateMasterKey } from "../../src/tokens/master-key.ts";
import { expectFailure } from "../support/errors.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { decodePart } from "../support/tokens.ts";

const REFRESH_TOKEN_INVALID = { code: Status.UNAUTHENTICATED, reason: "REFRESH_TOKEN_INVALID" };
const SESSION_REVOKED = { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" };
const USER_DISABLED = { code: Status.UNAUTHENTICATED, reason: "USER_DISABLED" };

/** Refresh tokens live 2 s (sliding), sessions 4 s (absolute): for the tests of lifetimes. */
let capped: TestServer;
/** Default lifetimes, one argon2 at a time (for the login/disable race); its signing key is retired by the last test. */
let plain: TestServer;

interface Tenant {
  id: string;
  users: Record<string, string>;
}
const tenants = new Map<TestServer, Tenant>();

/** A tenant "club" with the given users (password: "<username>-password"), remembered in `tenants`. */
async function seed(server: TestServer, usernames: string[]): Promise<void> {
  const admin = server.as(server.adminToken);
  const { tenant } = await admin.tenants.createTenant({ tenant: { name: "club" }, admin: { username: "chair", password: "chair-password" } });
  const users: Record<string, string> = {};
  for (const username of usernames) {
    users[username] = (await admin.users.createUser({ tenantId: tenant!.id, user: { username }, password: `${username}-password` })).user!.id;
  }
  tenants.set(server, { id: tenant!.id, users });
}

const login = (server: TestServer, username: string, requested?: string[]) => server.login("club", username, `${username}-password`, requested);

async function setDisabled(server: TestServer, username: string, disabled: boolean): Promise<void> {
  const tenant = tenants.get(server)!;
  const admin = server.as(server.adminToken);
  const { user } = await admin.users.getUser({ tenantId: tenant.id, id: tenant.users[username]! });
  await admin.users.updateUser({ tenantId: tenant.id, user: { ...user!, disabled }, updateMask: ["disabled"] });
}

async function sleepUntil(at: Date | number, marginMs = 150): Promise<void> {
  const ms = (typeof at === "number" ? at : at.getTime()) + marginMs - Date.now();
  if (ms > 0) await sleep(ms);
}

/** When the session started (ListSessions' create_time, the instant its absolute cap is counted from). */
async function sessionCreated(server: TestServer, issued: IssueTokenResponse): Promise<number> {
  const { sessions } = await server.as(issued.accessToken).issue.listSessions({});
  const session = sessions.find((s) => s.id === issued.sessionId);
  expect(session, "the session is listed").toBeDefined();
  return session!.createTime!.getTime();
}

/**
 * Signs claims with the server's current signing key, unsealed from its
 * database with its master key: the only way to get a well-signed token whose
 * claims the server did not choose (there is no such way over the API).
 */
async function signWithServerKey(server: TestServer, claims: AccessClaims): Promise<string> {
  const keys = new KeyStore({
    masterKey: loadOrCreateMasterKey(server.config.masterKey, server.config.dataDir),
    accessTokenTtlSeconds: server.config.accessTokenTtlSeconds,
    publishLeadSeconds: server.config.keyPublishLeadSeconds,
  });
  await keys.reload(server.tessera.orm.em.fork());
  const { kid, privateKey } = keys.signer();
  return signJwt(claims, kid, privateKey);
}

beforeAll(async () => {
  [capped, plain] = await Promise.all([
    // Strict rotation (no grace window): every re-presentation is reuse. The grace window has its own tests (refresh-grace.test.ts).
    startTestServer({ TESSERA_REFRESH_TOKEN_TTL: "2s", TESSERA_REFRESH_TOKEN_ABSOLUTE_TTL: "4s", TESSERA_REFRESH_GRACE: "0" }),
    startTestServer({ TESSERA_PASSWORD_HASH_CONCURRENCY: "1", TESSERA_REFRESH_GRACE: "0" }),
  ]);
  await Promise.all([seed(capped, ["alice"]), seed(plain, ["alice", "bob", "carol", "racer", "filler"])]);
});
afterAll(async () => {
  await Promise.all([capped?.close(), plain?.close()]);
});

// Concurrent: these mostly sleep, each on a session of its own.
describe.concurrent("Refresh: lifetimes", () => {
  // Holds `row.expiresAt <= now`: refused after the token's 2 s, while the session's 4 s cap is still ahead.
  it("refuses a refresh token presented after its sliding lifetime, before its session's cap", async () => {
    const issued = await login(capped, "alice");
    const created = await sessionCreated(capped, issued);
    expect(issued.refreshExpireTime!.getTime()).toBe(created + 2000);
    await sleepUntil(issued.refreshExpireTime!);
    await expectFailure(capped.clients.refresh.refresh({ refreshToken: issued.refreshToken }), REFRESH_TOKEN_INVALID);
    expect(Date.now(), "refused before the session's absolute cap").toBeLessThan(created + 4000);
    // The refusal does not end the session: its access token still verifies.
    await capped.clients.verify.verifyToken({ token: issued.accessToken });
  });

  // Holds the clamp `Math.min(now + refreshTokenTtl, session.absoluteExpiresAt)`; the refusal after the
  // cap holds the two expiry checks together (either one alone refuses here: see the cap-moved test).
  it("keeps a session alive by refreshing, never past its absolute cap, and refuses it after the cap", async () => {
    const issued = await login(capped, "alice");
    const created = await sessionCreated(capped, issued);
    const cap = created + 4000;

    await sleepUntil(created + 1000, 0);
    const first = await capped.clients.refresh.refresh({ refreshToken: issued.refreshToken });
    expect(first.refreshExpireTime!.getTime()).toBeGreaterThan(issued.refreshExpireTime!.getTime());
    expect(first.refreshExpireTime!.getTime()).toBeLessThanOrEqual(cap);

    // Past the login token's expiry the session lives on through the rotated token; now + 2 s
    // would be past the cap, so the next token expires at the cap exactly.
    await sleepUntil(issued.refreshExpireTime!, 100);
    const second = await capped.clients.refresh.refresh({ refreshToken: first.refreshToken });
    expect(second.sessionId).toBe(issued.sessionId);
    expect(second.refreshExpireTime!.getTime()).toBe(cap);

    await sleepUntil(cap);
    await expectFailure(capped.clients.refresh.refresh({ refreshToken: second.refreshToken }), REFRESH_TOKEN_INVALID);
  });

  // Holds `if (row.usedAt)` on its own, the other way: a used token replayed after its own expiry is
  // still reuse (without the check it is merely expired, and the session lives on).
  it("detects reuse of a used refresh token replayed after it expired, while its successor is live", async () => {
    const issued = await login(capped, "alice");
    await sleep(1000);
    const next = await capped.clients.refresh.refresh({ refreshToken: issued.refreshToken });
    await sleepUntil(issued.refreshExpireTime!, 100);
    await expectFailure(capped.clients.refresh.refresh({ refreshToken: issued.refreshToken }), REFRESH_TOKEN_INVALID);
    expect(Date.now(), "the successor was still live when the replay was refused").toBeLessThan(next.refreshExpireTime!.getTime());
    await expectFailure(capped.clients.refresh.refresh({ refreshToken: next.refreshToken }), SESSION_REVOKED);
    await expectFailure(capped.clients.verify.verifyToken({ token: next.accessToken }), SESSION_REVOKED);
  });

  // Holds `session.absoluteExpiresAt <= now` on its own. Over the API a refresh token never outlives
  // its session's cap (login: sliding <= absolute, config.ts; refresh: the clamp), so the token's own
  // expiry refuses first and the cap check cannot be told apart; only a session whose cap is moved
  // earlier in the database (as here) has a live refresh token past its cap.
  it("refuses a live refresh token whose session is past its absolute cap (cap moved in the database)", async () => {
    const issued = await login(plain, "alice");
    await plain.tessera.orm.em
      .fork()
      .getConnection()
      .execute("update sessions set absolute_expires_at = ? where id = ?", [new Date(Date.now() - 1000), issued.sessionId], "run");
    await expectFailure(plain.clients.refresh.refresh({ refreshToken: issued.refreshToken }), REFRESH_TOKEN_INVALID);
  });
});

describe("Refresh: rotation", () => {
  // Holds the rotation UPDATE's where-clause `{ hash, usedAt: null }`: with `{}` (or `{ usedAt: null }`)
  // one refresh would mark every unused refresh token in the database used.
  it("spends only the presented token: refreshing one session leaves another session's token live", async () => {
    const a = await login(plain, "alice");
    const b = await login(plain, "bob");
    const c = await login(plain, "alice");
    const a1 = await plain.clients.refresh.refresh({ refreshToken: a.refreshToken });
    const b1 = await plain.clients.refresh.refresh({ refreshToken: b.refreshToken });
    expect(b1.sessionId).toBe(b.sessionId);
    const a2 = await plain.clients.refresh.refresh({ refreshToken: a1.refreshToken });
    expect(a2.sessionId).toBe(a.sessionId);
    const c1 = await plain.clients.refresh.refresh({ refreshToken: c.refreshToken });
    expect(c1.sessionId).toBe(c.sessionId);
    for (const token of [a2.accessToken, b1.accessToken, c1.accessToken]) await plain.clients.verify.verifyToken({ token });
  });

  // A used token presented again revokes the session: the successor's refresh then gives
  // SESSION_REVOKED, and so do the session's access tokens. (Either reuse check alone refuses a plain
  // replay; the next two tests hold `if (row.usedAt)` on its own.)
  it("revokes the session when a used refresh token is presented again", async () => {
    const issued = await login(plain, "alice");
    const next = await plain.clients.refresh.refresh({ refreshToken: issued.refreshToken });
    await expectFailure(plain.clients.refresh.refresh({ refreshToken: issued.refreshToken }), REFRESH_TOKEN_INVALID);
    await expectFailure(plain.clients.refresh.refresh({ refreshToken: next.refreshToken }), SESSION_REVOKED);
    for (const token of [issued.accessToken, next.accessToken]) await expectFailure(plain.clients.verify.verifyToken({ token }), SESSION_REVOKED);
  });

  // Holds `if (row.usedAt)` on its own: without it the conditional UPDATE still catches a plain replay,
  // but a replay that another check refuses first (here: asking for more than the session elected)
  // would get PERMISSION_DENIED and leave the session, and the thief's successor token, alive.
  it("detects reuse before any other refusal: a used token asking for more than the session is still reuse", async () => {
    const issued = await login(plain, "alice");
    const next = await plain.clients.refresh.refresh({ refreshToken: issued.refreshToken });
    await expectFailure(plain.clients.refresh.refresh({ refreshToken: issued.refreshToken, requestedPermissions: ["identity.users.delete"] }), REFRESH_TOKEN_INVALID);
    await expectFailure(plain.clients.refresh.refresh({ refreshToken: next.refreshToken }), SESSION_REVOKED);
    await expectFailure(plain.clients.verify.verifyToken({ token: next.accessToken }), SESSION_REVOKED);
  });

  // Holds the race branch `if (claimed === 0)` and `usedAt: null` in the UPDATE's where-clause: on
  // PostgreSQL concurrent presentations all read the token unused, and only the conditional UPDATE
  // tells the losers apart. (The embedded PGlite runs one transaction at a time, so there the losers
  // are caught by the `row.usedAt` check instead: run with TEST_DATABASE_URL for this one to bite.)
  it("lets exactly one of 8 concurrent presentations win, and ends the session revoked", async () => {
    for (let round = 0; round < 3; round++) {
      const issued = await login(plain, "bob");
      const results = await Promise.allSettled(Array.from({ length: 8 }, () => plain.clients.refresh.refresh({ refreshToken: issued.refreshToken })));
      const won = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
      expect(won, `round ${round}: winners`).toHaveLength(1);
      // A loser that read the token before the session was revoked is told of reuse; one that read after, of the revocation.
      const lost = results.flatMap((r) => (r.status === "rejected" ? [failureOf(r.reason)] : []));
      expect(lost).toHaveLength(7);
      for (const failure of lost) expect(failure).toMatch(/^UNAUTHENTICATED (REFRESH_TOKEN_INVALID|SESSION_REVOKED)$/);
      expect(lost).toContain("UNAUTHENTICATED REFRESH_TOKEN_INVALID");
      const winner = won[0]!;
      await expectFailure(plain.clients.refresh.refresh({ refreshToken: winner.refreshToken }), SESSION_REVOKED);
      await expectFailure(plain.clients.verify.verifyToken({ token: winner.accessToken }), SESSION_REVOKED);
      await expectFailure(plain.clients.verify.verifyToken({ token: issued.accessToken }), SESSION_REVOKED);
    }
  });
});

describe("VerifyToken", () => {
  // Holds `state.tenantId !== claims.tid || state.subject !== claims.sub` (each half): a token naming
  // a live session must name that session's tenant and subject. The server never signs such a
  // token, so the test signs them with the server's own key (from its database).
  it("refuses a well-signed token whose sub or tid is not its session's", async () => {
    const tenant = tenants.get(plain)!;
    const issued = await login(plain, "alice");
    const claims = decodePart(issued.accessToken, 1) as unknown as AccessClaims;
    // The control: the same claims re-signed verify, so what is refused below is the binding alone.
    const resigned = await signWithServerKey(plain, { ...claims, jti: "resigned-control" });
    const { principal } = await plain.clients.verify.verifyToken({ token: resigned });
    expect(principal).toMatchObject({ subject: tenant.users.alice, tenantId: tenant.id, sessionId: issued.sessionId });

    const otherSubject = await signWithServerKey(plain, { ...claims, jti: "other-sub", sub: tenant.users.bob!, upn: `${tenant.users.bob}@club` });
    const otherTenant = await signWithServerKey(plain, { ...claims, jti: "other-tid", tid: systemTenantId(plain) });
    for (const token of [otherSubject, otherTenant]) {
      const failure = await expectFailure(plain.clients.verify.verifyToken({ token }), SESSION_REVOKED);
      expect(failure.details).toBe("the session no longer exists");
    }
    // The real token is untouched by all this.
    await plain.clients.verify.verifyToken({ token: issued.accessToken });
  });

  // The cached path after a disable: the USER_REVOKED event drops the cached session state and
  // `state.revoked` refuses (disabling revokes the sessions, so the reason is SESSION_REVOKED, not
  // USER_DISABLED); Refresh refuses on `session.revokedAt` the same way.
  it("refuses a verified (cached) token and its refresh token once the user is disabled", async () => {
    const issued = await login(plain, "bob");
    await plain.clients.verify.verifyToken({ token: issued.accessToken });
    await plain.clients.verify.verifyToken({ token: issued.accessToken });
    await setDisabled(plain, "bob", true);
    try {
      await expectFailure(plain.clients.verify.verifyToken({ token: issued.accessToken }), SESSION_REVOKED);
      await expectFailure(plain.clients.refresh.refresh({ refreshToken: issued.refreshToken }), SESSION_REVOKED);
    } finally {
      await setDisabled(plain, "bob", false);
    }
    // Re-enabling the user does not bring the session back.
    await expectFailure(plain.clients.verify.verifyToken({ token: issued.accessToken }), SESSION_REVOKED);
  });

  // Holds the disabled-user backstops themselves, `state.userDisabled` (verify) and `user.disabled`
  // (refresh), which the previous test cannot reach: a session that a disable did not revoke. The
  // API does make one, by a race: a login reads the user (enabled), waits for its argon2 slot (one at
  // a time on this server, behind a queue of other logins), and the disable commits meanwhile,
  // revoking every session but the one this login is about to insert.
  // Holds SessionStore.start's locked insert: a login that checked the password just before a
  // concurrent disable used to insert a session the disable never revoked (re-enabling the user
  // brought it back). Logins are queued behind one argon2 slot so that the disable lands between
  // a login's check and its insert; whatever the timing, no attempt may keep a live session.
  it("never lets a login racing a disable keep a live session", async () => {
    const tenant = tenants.get(plain)!;
    const admin = plain.as(plain.adminToken);
    const outcomes: string[] = [];
    for (const delayMs of [10, 30, 60, 90, 120, 160, 200, 260]) {
      await setDisabled(plain, "racer", false);
      const queue = Array.from({ length: 12 }, () => login(plain, "filler"));
      const racing = login(plain, "racer").then(
        (ok) => ok,
        (error: unknown) => error,
      );
      await sleep(delayMs);
      await setDisabled(plain, "racer", true);
      const [result] = await Promise.all([racing, Promise.all(queue)]);
      if (result instanceof Error) {
        outcomes.push(failureOf(result));
        continue;
      }
      // A session that started before the disable was revoked by it.
      const { sessions } = await admin.issue.listSessions({ tenantId: tenant.id, userId: tenant.users.racer! });
      expect(sessions.map((x) => x.id), "the raced session is not live").not.toContain((result as IssueTokenResponse).sessionId);
      await expectFailure(plain.clients.refresh.refresh({ refreshToken: (result as IssueTokenResponse).refreshToken }), SESSION_REVOKED);
      outcomes.push("revoked");
    }
    for (const outcome of outcomes) expect(["revoked", "UNAUTHENTICATED USER_DISABLED", "UNAUTHENTICATED INVALID_CREDENTIALS"]).toContain(outcome);
    // Re-enabling brings none of them back.
    await setDisabled(plain, "racer", false);
    expect((await admin.issue.listSessions({ tenantId: tenant.id, userId: tenant.users.racer! })).sessions).toEqual([]);
  });

  // Holds the retired-key check on the cached path (`!this.#keys.cachedPublicKey(entry.kid)`): a
  // token verified once is in the verified-token cache, which skips the key lookup. Last on its
  // server: every token that server signed so far dies with the key.
  it("refuses a verified (cached) token once its signing key is retired at once", async () => {
    const issued = await login(plain, "carol");
    const unverified = await login(plain, "carol");
    const oldKid = decodePart(issued.accessToken, 0).kid;
    await plain.clients.verify.verifyToken({ token: issued.accessToken });
    await plain.clients.verify.verifyToken({ token: issued.accessToken });
    const { keyId } = await plain.as(plain.adminToken).issue.rotateSigningKey({ retireCurrentNow: true });
    expect(keyId).not.toBe(oldKid);

    const cached = await expectFailure(plain.clients.verify.verifyToken({ token: issued.accessToken }), { code: Status.UNAUTHENTICATED, reason: "TOKEN_INVALID" });
    expect(cached.details).toBe("token signing key is retired");
    const fresh = await expectFailure(plain.clients.verify.verifyToken({ token: unverified.accessToken }), { code: Status.UNAUTHENTICATED, reason: "TOKEN_INVALID" });
    expect(fresh.details).toBe("token signing key is unknown");

    // The new key signs at once; the server's admin token died with the old key, so log in again.
    const after = await login(plain, "carol");
    expect(decodePart(after.accessToken, 0).kid).toBe(keyId);
    await plain.clients.verify.verifyToken({ token: after.accessToken });
    plain.adminToken = (await plain.login("system", "admin", plain.config.adminPassword!)).accessToken;
  });
});

function systemTenantId(server: TestServer): string {
  return String(decodePart(server.adminToken, 1).tid);
}

/** "<status> <ErrorInfo reason>" of a failed call. */
function failureOf(error: unknown): string {
  if (!(error instanceof RichClientError)) return String(error);
  const info = error.extra.find((d): d is ErrorInfo => d.$type === ErrorInfo.$type);
  return `${Status[error.code]} ${info?.reason ?? "-"}`;
}
