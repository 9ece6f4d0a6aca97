// Refresh rotation (src/tokens/refresh-rotation.ts) against a real database:
// every test logs in fresh tenants and users and watches what a client sees
// (the token set, or the gRPC status and ErrorInfo reason it is refused with)
// and what the database then holds (the session, its refresh tokens).
import { describe, expect, it } from "vitest";
import { RevocationEventEntity } from "../../src/events/index.ts";
import { REFRESH_FORMAT } from "../../src/tokens/session-store.ts";
import { RefreshTokenEntity, SessionEntity } from "../../src/tokens/token.entity.ts";
import { grpcRefusal } from "../support/errors.ts";
import { freezeClock, useFlowDatabase, refreshTokenRow, sessionRow, SETTINGS, tokenFlows, type TokenFlows } from "../support/token-flows.ts";
import { decodePart } from "../support/tokens.ts";
import { addUser, createAccount, disableTenant, disableUser, setGrants } from "../support/unit-db.ts";

const db = useFlowDatabase();

const GRANTS = ["game.profile.*", "game.stats.read"];
const SECOND = 1000;

const refresh = (flows: TokenFlows, refreshToken: string, requested: string[] = []) => flows.rotation.refresh(db.em(), { refreshToken, requested });

const INVALID = { code: "UNAUTHENTICATED", reason: "REFRESH_TOKEN_INVALID", message: "refresh token is invalid or expired", violations: [] };
const REUSED = { code: "UNAUTHENTICATED", reason: "REFRESH_TOKEN_INVALID", message: "refresh token was already used; the session is revoked", violations: [] };
const REVOKED = { code: "UNAUTHENTICATED", reason: "SESSION_REVOKED", message: "the session is revoked", violations: [] };

/** The session was revoked for reuse, and the revocation feed was told. */
async function expectRevokedForReuse(sessionId: string) {
  const session = await sessionRow(db, sessionId);
  expect(session.revokedAt).toBeInstanceOf(Date);
  expect(session.revokeReason).toBe("refresh_token_reuse");
  const events = await db.em().find(RevocationEventEntity, { sessionId });
  expect(events.map((e) => e.kind)).toEqual(["SESSION_REVOKED"]);
}

async function expectLive(sessionId: string) {
  const session = await sessionRow(db, sessionId);
  expect(session.revokedAt).toBeNull();
  expect(await db.em().count(RevocationEventEntity, { sessionId })).toBe(0);
}

describe("RefreshRotation.refresh: rotation", () => {
  it("returns a new token pair for the same session, signed for its user, tenant and audience", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    const t0 = freezeClock();
    const login = await flows.login(account, ["game.stats.read", "game.profile.read"], { audience: "game-api" });
    const at = freezeClock(t0 + 10 * SECOND);

    const set = await refresh(flows, login.refreshToken);

    expect(set.sessionId).toBe(login.sessionId);
    expect(set.kind).toBe("user");
    expect(set.granted).toEqual(["game.profile.read", "game.stats.read"]);
    expect(set.refreshToken).toMatch(REFRESH_FORMAT);
    expect(set.refreshToken).not.toBe(login.refreshToken);
    expect(set.accessToken).not.toBe(login.accessToken);
    expect(set.refreshExpiresAt).toEqual(new Date(at + SETTINGS.refreshTokenTtlSeconds * SECOND));
    expect(set.expiresAt).toEqual(new Date((Math.floor(at / SECOND) + SETTINGS.accessTokenTtlSeconds) * SECOND));
    const claims = decodePart(set.accessToken, 1);
    expect(claims).toMatchObject({
      iss: SETTINGS.issuer,
      sub: account.userId,
      tid: account.tenantId,
      sid: login.sessionId,
      aud: "game-api",
      scope: "game.profile.read game.stats.read",
      knd: "user",
      upn: `${account.userId}@${account.tenantName}`,
      preferred_username: account.username,
      exp: Math.floor(at / SECOND) + SETTINGS.accessTokenTtlSeconds,
    });

    // The new access token verifies, for the session's audience.
    const principal = await flows.verification.verify(db.em(), set.accessToken, "game-api");
    expect(principal).toMatchObject({ subject: account.userId, tenantId: account.tenantId, sessionId: login.sessionId, permissions: ["game.profile.read", "game.stats.read"] });

    // The session slid forward; its elected set is unchanged; the old token is spent, the new one is not.
    const session = await sessionRow(db, login.sessionId);
    expect(session.refreshedAt).toEqual(new Date(at));
    expect(session.expiresAt).toEqual(set.refreshExpiresAt);
    expect(session.elected).toEqual(["game.stats.read", "game.profile.read"]);
    expect((await refreshTokenRow(db, login.refreshToken))?.usedAt).toEqual(new Date(at));
    const next = await refreshTokenRow(db, set.refreshToken);
    expect(next).toMatchObject({ usedAt: null, expiresAt: set.refreshExpiresAt });
    expect(next?.session.id).toBe(login.sessionId);
    await expectLive(login.sessionId);
  });

  it("keeps the UPN subject a remote login gave the session", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    const login = await flows.login(account, ["game.profile.read"], { upnSubject: "mc-0f3a9c" });
    const set = await refresh(flows, login.refreshToken);
    expect(decodePart(set.accessToken, 1).upn).toBe(`mc-0f3a9c@${account.tenantName}`);
  });

  it("chains: each new refresh token rotates in turn", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    const login = await flows.login(account, ["game.profile.read"]);
    const first = await refresh(flows, login.refreshToken);
    const second = await refresh(flows, first.refreshToken);
    const third = await refresh(flows, second.refreshToken);
    expect(new Set([login.refreshToken, first.refreshToken, second.refreshToken, third.refreshToken]).size).toBe(4);
    expect(third.sessionId).toBe(login.sessionId);
    expect(third.granted).toEqual(["game.profile.read"]);
    await expectLive(login.sessionId);
  });

  it("spends only the token presented: other sessions' tokens, of this user and of others, stay usable", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    const colleague = await addUser(db, account);
    const stranger = await createAccount(db, GRANTS);
    const mine = await flows.login(account, ["game.profile.read"]);
    const myOther = await flows.login(account, ["game.stats.read"]);
    const theirs = await flows.login(colleague, ["game.profile.read"]);
    const strangers = await flows.login(stranger, ["game.profile.read"]);

    const rotated = await refresh(flows, mine.refreshToken);

    for (const other of [myOther, theirs, strangers]) expect((await refreshTokenRow(db, other.refreshToken))?.usedAt).toBeNull();
    expect((await refresh(flows, myOther.refreshToken)).granted).toEqual(["game.stats.read"]);
    expect((await refresh(flows, theirs.refreshToken)).sessionId).toBe(theirs.sessionId);
    expect((await refresh(flows, strangers.refreshToken)).sessionId).toBe(strangers.sessionId);
    expect((await refresh(flows, rotated.refreshToken)).sessionId).toBe(mine.sessionId);
    for (const session of [mine, myOther, theirs, strangers]) await expectLive(session.sessionId);
  });

  it("rotates refreshes that arrive together (one statement on PostgreSQL) each on its own session, refusing only the one it must", async () => {
    const flows = await tokenFlows(db);
    const logins: (Awaited<ReturnType<typeof flows.login>> & { elected: string[] })[] = [];
    for (let i = 0; i < 6; i++) {
      const account = await createAccount(db, GRANTS);
      const one = [i % 2 ? "game.stats.read" : "game.profile.read"];
      const both = ["game.profile.read", "game.stats.read"];
      logins.push({ ...(await flows.login(account, one)), elected: one });
      logins.push({ ...(await flows.login(await addUser(db, account), both)), elected: both });
    }
    const disabled = await createAccount(db, GRANTS);
    const refused = await flows.login(disabled, ["game.profile.read"]);
    await disableUser(db, disabled);
    const presented = [...logins, refused].map((l) => refresh(flows, l.refreshToken));
    const results = await Promise.allSettled(presented);
    expect(await grpcRefusal(presented.at(-1)!)).toMatchObject({ reason: "USER_DISABLED" });
    expect((await refreshTokenRow(db, refused.refreshToken))?.usedAt).toBeNull();
    for (const [i, login] of logins.entries()) {
      const r = results[i]!;
      expect(r.status).toBe("fulfilled");
      const set = (r as PromiseFulfilledResult<Awaited<ReturnType<typeof refresh>>>).value;
      expect(set.sessionId).toBe(login.sessionId);
      expect(set.granted).toEqual(login.elected);
      expect(decodePart(set.accessToken, 1)).toMatchObject({ sid: login.sessionId, sub: decodePart(login.accessToken, 1).sub });
      expect((await refreshTokenRow(db, login.refreshToken))?.usedAt).toBeInstanceOf(Date);
      // Exactly one live token per session: the one this refresh returned.
      expect((await refresh(flows, set.refreshToken)).sessionId).toBe(login.sessionId);
      await expectLive(login.sessionId);
    }
  });

  it("caps the new refresh token's lifetime at the session's absolute expiry", async () => {
    const settings = { ...SETTINGS, refreshTokenTtlSeconds: 3600, refreshTokenAbsoluteTtlSeconds: 5000 };
    const flows = await tokenFlows(db, settings);
    const account = await createAccount(db, GRANTS);
    const t0 = freezeClock();
    const login = await flows.login(account, ["game.profile.read"]);
    const absolute = new Date(t0 + 5000 * SECOND);
    expect((await sessionRow(db, login.sessionId)).absoluteExpiresAt).toEqual(absolute);

    freezeClock(t0 + 1000 * SECOND); // now + TTL is before the absolute expiry
    const early = await refresh(flows, login.refreshToken);
    expect(early.refreshExpiresAt).toEqual(new Date(t0 + 4600 * SECOND));

    freezeClock(t0 + 3000 * SECOND); // now + TTL would pass it
    const late = await refresh(flows, early.refreshToken);
    expect(late.refreshExpiresAt).toEqual(absolute);
    const session = await sessionRow(db, login.sessionId);
    expect(session.expiresAt).toEqual(absolute);
    expect((await refreshTokenRow(db, late.refreshToken))?.expiresAt).toEqual(absolute);
  });
});

describe("RefreshRotation.refresh: permissions", () => {
  it("recomputes the permissions from the user's grants now, never above the session's elected set", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    const login = await flows.login(account, ["game.profile.read", "game.stats.read"]);

    await setGrants(db, account, ["game.profile.*"]);
    const reduced = await refresh(flows, login.refreshToken);
    expect(reduced.granted).toEqual(["game.profile.read"]);
    expect(decodePart(reduced.accessToken, 1).scope).toBe("game.profile.read");
    // The session keeps what it elected: a grant given back comes back, and a wider grant does not widen it.
    expect((await sessionRow(db, login.sessionId)).elected).toEqual(["game.profile.read", "game.stats.read"]);
    await setGrants(db, account, ["game.*.*"]);
    const restored = await refresh(flows, reduced.refreshToken);
    expect(restored.granted).toEqual(["game.profile.read", "game.stats.read"]);
  });

  it("narrows to a requested subset, and the session keeps the narrower set", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    const login = await flows.login(account, ["game.profile.*", "game.stats.read"]);

    const narrowed = await refresh(flows, login.refreshToken, ["game.profile.read"]);
    expect(narrowed.granted).toEqual(["game.profile.read"]);
    expect(decodePart(narrowed.accessToken, 1).scope).toBe("game.profile.read");
    expect((await sessionRow(db, login.sessionId)).elected).toEqual(["game.profile.read"]);

    const later = await refresh(flows, narrowed.refreshToken);
    expect(later.granted).toEqual(["game.profile.read"]);
  });

  it("refuses to widen the session's set (PERMISSION_DENIED/PERMISSION_NOT_GRANTED) and leaves the token usable", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS); // granted both; the session elected one
    const login = await flows.login(account, ["game.profile.read"]);

    for (const requested of [["game.profile.read", "game.stats.read"], ["game.profile.*"]]) {
      expect(await grpcRefusal(refresh(flows, login.refreshToken, requested))).toEqual({
        code: "PERMISSION_DENIED",
        reason: "PERMISSION_NOT_GRANTED",
        message: `permission ${requested.at(-1)} is not elected in this session`,
        violations: [],
      });
    }
    expect((await refreshTokenRow(db, login.refreshToken))?.usedAt).toBeNull();
    expect((await sessionRow(db, login.sessionId)).elected).toEqual(["game.profile.read"]);
    const set = await refresh(flows, login.refreshToken);
    expect(set.granted).toEqual(["game.profile.read"]);
    await expectLive(login.sessionId);
  });
});

describe("RefreshRotation.refresh: refusals", () => {
  it("reports a missing refresh token and bad requested permissions as INVALID_ARGUMENT field violations", async () => {
    const flows = await tokenFlows(db);
    expect(await grpcRefusal(refresh(flows, ""))).toMatchObject({ code: "INVALID_ARGUMENT", reason: "INVALID_INPUT", violations: [{ field: "refresh_token", description: "is required" }] });
    const account = await createAccount(db, GRANTS);
    const login = await flows.login(account, ["game.profile.read"]);
    const bad = await grpcRefusal(refresh(flows, login.refreshToken, ["game.profile.read", "not a pattern"]));
    expect(bad).toMatchObject({ code: "INVALID_ARGUMENT", reason: "INVALID_INPUT" });
    expect(bad.violations.map((v) => v.field)).toEqual(["requested_permissions[1]"]);
    const both = await grpcRefusal(refresh(flows, "", ["Nope"]));
    expect(both.violations.map((v) => v.field)).toEqual(["refresh_token", "requested_permissions[0]"]);
    // Refused before anything was looked at: the token is not spent.
    expect((await refresh(flows, login.refreshToken)).sessionId).toBe(login.sessionId);
  });

  it("refuses a malformed refresh token without looking it up", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    const { refreshToken } = await flows.login(account, ["game.profile.read"]);
    const malformed = [
      "tsr_short",
      `${refreshToken}A`,
      `x${refreshToken}`,
      refreshToken.slice(0, -1),
      `${refreshToken.slice(0, -1)}=`,
      `${refreshToken.slice(0, -1)}.`,
      ` ${refreshToken}`,
      `${refreshToken}\n`,
      refreshToken.replace("tsr_", "TSR_"),
      `abc_${refreshToken.slice(4)}`,
    ];
    for (const token of malformed) {
      expect(await grpcRefusal(refresh(flows, token)), token).toEqual({ ...INVALID, message: "refresh token is invalid" });
    }
    expect((await refresh(flows, refreshToken)).granted).toEqual(["game.profile.read"]);
  });

  it("refuses a well-formed token it never issued", async () => {
    const flows = await tokenFlows(db);
    expect(await grpcRefusal(refresh(flows, `tsr_${"A".repeat(43)}`))).toEqual(INVALID);
    expect(await grpcRefusal(refresh(flows, `tsr_${"-_".repeat(21)}z`))).toEqual(INVALID);
  });

  it("refuses an expired refresh token from the moment it expires, without revoking the session", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    const t0 = freezeClock();
    const a = await flows.login(account, ["game.profile.read"]);
    const b = await flows.login(account, ["game.profile.read"]);
    expect(a.refreshExpiresAt).toEqual(new Date(t0 + SETTINGS.refreshTokenTtlSeconds * SECOND));

    freezeClock(a.refreshExpiresAt.getTime() - 1);
    expect((await refresh(flows, a.refreshToken)).sessionId).toBe(a.sessionId);
    freezeClock(b.refreshExpiresAt.getTime());
    expect(await grpcRefusal(refresh(flows, b.refreshToken))).toEqual(INVALID);
    freezeClock(b.refreshExpiresAt.getTime() + 3600 * SECOND);
    expect(await grpcRefusal(refresh(flows, b.refreshToken))).toEqual(INVALID);
    expect((await refreshTokenRow(db, b.refreshToken))?.usedAt).toBeNull();
    await expectLive(b.sessionId);
  });

  it("refuses any token of a session past its absolute lifetime, even one not yet expired itself", async () => {
    // An absolute lifetime shorter than a refresh token's: the token outlives the session.
    const flows = await tokenFlows(db, { ...SETTINGS, refreshTokenTtlSeconds: 3600, refreshTokenAbsoluteTtlSeconds: 600 });
    const account = await createAccount(db, GRANTS);
    const t0 = freezeClock();
    const a = await flows.login(account, ["game.profile.read"]);
    const b = await flows.login(account, ["game.profile.read"]);
    const absolute = t0 + 600 * SECOND;
    expect((await sessionRow(db, b.sessionId)).absoluteExpiresAt).toEqual(new Date(absolute));
    expect(b.refreshExpiresAt.getTime()).toBeGreaterThan(absolute);

    freezeClock(absolute - 1);
    const last = await refresh(flows, a.refreshToken);
    expect(last.refreshExpiresAt).toEqual(new Date(absolute));
    freezeClock(absolute);
    expect(await grpcRefusal(refresh(flows, b.refreshToken))).toEqual(INVALID);
    expect(await grpcRefusal(refresh(flows, last.refreshToken))).toEqual(INVALID);
    await expectLive(a.sessionId);
    await expectLive(b.sessionId);
  });

  it("refuses the tokens of a session whose absolute expiry was brought forward in the database", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    const t0 = freezeClock();
    const a = await flows.login(account, ["game.profile.read"]);
    const b = await flows.login(account, ["game.profile.read"]);
    const cutoff = new Date(t0 + 60 * SECOND);
    await db.em().nativeUpdate(SessionEntity, { id: { $in: [a.sessionId, b.sessionId] } }, { absoluteExpiresAt: cutoff });

    freezeClock(cutoff.getTime() - 1);
    expect((await refresh(flows, a.refreshToken)).refreshExpiresAt).toEqual(cutoff);
    freezeClock(cutoff);
    expect(await grpcRefusal(refresh(flows, b.refreshToken))).toEqual(INVALID);
    await expectLive(b.sessionId);
  });

  it("refuses the tokens of a revoked session (SESSION_REVOKED)", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    const login = await flows.login(account, ["game.profile.read"]);
    const spent = await flows.login(account, ["game.profile.read"]);
    const rotated = await refresh(flows, spent.refreshToken);
    await flows.sessions.revokeSession(db.em(), account.tenantId, login.sessionId);
    await flows.sessions.revokeSession(db.em(), account.tenantId, spent.sessionId);

    expect(await grpcRefusal(refresh(flows, login.refreshToken))).toEqual(REVOKED);
    // A spent token of a revoked session is not reuse: the session is already gone.
    expect(await grpcRefusal(refresh(flows, spent.refreshToken))).toEqual(REVOKED);
    expect(await grpcRefusal(refresh(flows, rotated.refreshToken))).toEqual(REVOKED);
    expect((await sessionRow(db, spent.sessionId)).revokeReason).toBe("logout");
  });

  it("refuses while the tenant is disabled (TENANT_DISABLED), leaving the token unspent", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    const login = await flows.login(account, ["game.profile.read"]);
    // Disabled in the database without its sessions being revoked: refresh checks for itself.
    await disableTenant(db, account);
    expect(await grpcRefusal(refresh(flows, login.refreshToken))).toEqual({ code: "UNAUTHENTICATED", reason: "TENANT_DISABLED", message: "the tenant is disabled", violations: [] });
    expect((await refreshTokenRow(db, login.refreshToken))?.usedAt).toBeNull();
    await expectLive(login.sessionId);
  });

  it("refuses while the user is disabled (USER_DISABLED), leaving the token unspent", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    const login = await flows.login(account, ["game.profile.read"]);
    await disableUser(db, account);
    expect(await grpcRefusal(refresh(flows, login.refreshToken))).toEqual({ code: "UNAUTHENTICATED", reason: "USER_DISABLED", message: "the user is disabled", violations: [] });
    expect((await refreshTokenRow(db, login.refreshToken))?.usedAt).toBeNull();
    await expectLive(login.sessionId);
  });

  it("refuses a session without a user (USER_DISABLED): refresh issues user tokens only", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    const login = await flows.login(account, ["game.profile.read"]);
    await db.em().nativeUpdate(SessionEntity, { id: login.sessionId }, { user: null, kind: "service", subject: "region-1" });
    expect(await grpcRefusal(refresh(flows, login.refreshToken))).toEqual({ code: "UNAUTHENTICATED", reason: "USER_DISABLED", message: "the user is disabled", violations: [] });
    expect((await refreshTokenRow(db, login.refreshToken))?.usedAt).toBeNull();
  });
});

describe("RefreshRotation.refresh: reuse detection", () => {
  it("refuses a spent token presented again and revokes the whole session", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    const login = await flows.login(account, ["game.profile.read"]);
    const next = await refresh(flows, login.refreshToken);
    await flows.verification.verify(db.em(), next.accessToken);

    expect(await grpcRefusal(refresh(flows, login.refreshToken))).toEqual(REUSED);
    await expectRevokedForReuse(login.sessionId);
    // Both the thief's and the victim's tokens are dead.
    expect(await grpcRefusal(refresh(flows, next.refreshToken))).toEqual(REVOKED);
    expect(await grpcRefusal(refresh(flows, login.refreshToken))).toEqual(REVOKED);
    const fresh = await tokenFlows(db);
    expect(await grpcRefusal(fresh.verification.verify(db.em(), next.accessToken))).toMatchObject({ code: "UNAUTHENTICATED", reason: "SESSION_REVOKED" });
  });

  it("judges a spent token as reuse before its expiry or the permissions asked for", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    const t0 = freezeClock();
    const wider = await flows.login(account, ["game.profile.read"]);
    const expired = await flows.login(account, ["game.profile.read"]);
    const disabled = await flows.login(account, ["game.profile.read"]);
    for (const login of [wider, expired, disabled]) await refresh(flows, login.refreshToken);

    expect(await grpcRefusal(refresh(flows, wider.refreshToken, ["game.stats.read"]))).toEqual(REUSED);
    await expectRevokedForReuse(wider.sessionId);

    freezeClock(t0 + (SETTINGS.refreshTokenTtlSeconds + 60) * SECOND);
    expect(await grpcRefusal(refresh(flows, expired.refreshToken))).toEqual(REUSED);
    await expectRevokedForReuse(expired.sessionId);

    await disableUser(db, account);
    expect(await grpcRefusal(refresh(flows, disabled.refreshToken))).toEqual(REUSED);
    await expectRevokedForReuse(disabled.sessionId);
  });

  it("lets exactly one of two concurrent presentations of a token win; the other revokes the session", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    const login = await flows.login(account, ["game.profile.read"]);
    const results = await Promise.allSettled([refresh(flows, login.refreshToken), refresh(flows, login.refreshToken)]);
    const won = results.filter((r) => r.status === "fulfilled");
    const lost = results.filter((r) => r.status === "rejected");
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect(await grpcRefusal(Promise.reject(lost[0]!.reason))).toEqual(REUSED);
    await expectRevokedForReuse(login.sessionId);
    expect(await grpcRefusal(refresh(flows, won[0]!.value.refreshToken))).toEqual(REVOKED);
  });

  it("treats a presentation that loses the claim to a concurrent winner as reuse", async () => {
    // PGlite runs one transaction at a time, so two presentations never interleave here. A trigger
    // plays the concurrent winner: when this presentation's claims (the UPDATEs that spend the
    // token: the one-statement path's, then the two-statement path's after it read the token as
    // unspent) arrive, each changes no row, as a claim that lost under PostgreSQL's READ COMMITTED.
    const sql = (statement: string) => db.orm.em.getConnection().execute(statement);
    await sql("create table if not exists test_race_tokens (hash varchar(64) primary key, losses int not null)");
    await sql(`create or replace function test_lose_race() returns trigger language plpgsql as $$
      begin
        update test_race_tokens set losses = losses - 1 where hash = old.hash and losses > 0;
        if found then
          return null;
        end if;
        return new;
      end $$`);
    await sql("drop trigger if exists test_lose_race on refresh_tokens");
    await sql(`create trigger test_lose_race before update on refresh_tokens for each row
      when (old.used_at is null and new.used_at is not null) execute function test_lose_race()`);
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    const login = await flows.login(account, ["game.profile.read"]);
    const bystander = await flows.login(account, ["game.profile.read"]);
    const row = await refreshTokenRow(db, login.refreshToken);
    await db.orm.em.getConnection().execute("insert into test_race_tokens (hash, losses) values (?, 2)", [row!.hash]);

    expect(await grpcRefusal(refresh(flows, login.refreshToken))).toEqual(REUSED);
    await expectRevokedForReuse(login.sessionId);
    expect(await db.em().count(RefreshTokenEntity, { session: login.sessionId })).toBe(1); // no new token was issued
    expect((await refresh(flows, bystander.refreshToken)).sessionId).toBe(bystander.sessionId);
  });
});

describe("RefreshRotation.refresh: grace window", () => {
  const GRACE = { ...SETTINGS, refreshGraceSeconds: 5 };

  it("gives a re-presentation within the window the same successor, with the session's current election", async () => {
    const flows = await tokenFlows(db, GRACE);
    const account = await createAccount(db, GRANTS);
    const t0 = freezeClock();
    const login = await flows.login(account, GRANTS);
    const first = await refresh(flows, login.refreshToken, ["game.stats.read"]);
    freezeClock(t0 + 5 * SECOND);
    const retry = await refresh(flows, login.refreshToken, ["game.stats.read"]);
    expect(retry.refreshToken).toBe(first.refreshToken);
    expect(retry.refreshExpiresAt).toEqual(first.refreshExpiresAt);
    expect(retry.granted).toEqual(["game.stats.read"]);
    expect(decodePart(retry.accessToken, 1)).toMatchObject({ sub: account.userId, sid: login.sessionId, scope: "game.stats.read" });
    await expectLive(login.sessionId);
    // One live chain: the successor rotates once more.
    await refresh(flows, retry.refreshToken);
  });

  it("treats a re-presentation just after the window as reuse", async () => {
    const flows = await tokenFlows(db, GRACE);
    const account = await createAccount(db, GRANTS);
    const t0 = freezeClock();
    const login = await flows.login(account, GRANTS);
    await refresh(flows, login.refreshToken);
    freezeClock(t0 + 5 * SECOND + 1);
    expect(await grpcRefusal(refresh(flows, login.refreshToken))).toEqual(REUSED);
    await expectRevokedForReuse(login.sessionId);
  });

  it("treats an older token as reuse once its successor is spent, within the window", async () => {
    const flows = await tokenFlows(db, GRACE);
    const account = await createAccount(db, GRANTS);
    freezeClock();
    const login = await flows.login(account, GRANTS);
    const second = await refresh(flows, login.refreshToken);
    await refresh(flows, second.refreshToken);
    expect(await grpcRefusal(refresh(flows, login.refreshToken))).toEqual(REUSED);
    await expectRevokedForReuse(login.sessionId);
  });

  it("does not hand out a successor that has expired with its session's absolute lifetime, within the window too", async () => {
    const flows = await tokenFlows(db, { ...GRACE, refreshTokenAbsoluteTtlSeconds: 10 });
    const account = await createAccount(db, GRANTS);
    const t0 = freezeClock();
    const login = await flows.login(account, GRANTS);
    freezeClock(t0 + 8 * SECOND);
    const next = await refresh(flows, login.refreshToken);
    expect(next.refreshExpiresAt!.getTime()).toBeLessThanOrEqual(t0 + 10 * SECOND + SECOND);
    freezeClock(t0 + 11 * SECOND);
    expect(await grpcRefusal(refresh(flows, login.refreshToken))).toEqual(REUSED);
  });

  it("refuses a re-presentation for a disabled user or a revoked session", async () => {
    const flows = await tokenFlows(db, GRACE);
    const account = await createAccount(db, GRANTS);
    const login = await flows.login(account, GRANTS);
    await refresh(flows, login.refreshToken);
    await disableUser(db, account);
    expect((await grpcRefusal(refresh(flows, login.refreshToken))).reason).toBe("USER_DISABLED");
    const other = await createAccount(db, GRANTS);
    const second = await flows.login(other, GRANTS);
    await refresh(flows, second.refreshToken);
    await db.em().nativeUpdate(SessionEntity, { id: second.sessionId }, { revokedAt: new Date() });
    expect(await grpcRefusal(refresh(flows, second.refreshToken))).toEqual(REVOKED);
  });
});
