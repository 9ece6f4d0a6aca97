// Access-token verification (src/tokens/verification.ts) against a real
// database, with the real key store, session cache and signer: each test
// logs in a fresh tenant and user and sees the principal a token stands for,
// or the gRPC status and ErrorInfo reason it is refused with. Tokens that no
// login issues (another user's session id, an array audience) are signed with
// the real signing key.
import { describe, expect, it } from "vitest";
import { signJwt, type AccessClaims } from "../../src/tokens/jwt.ts";
import { SessionCache } from "../../src/tokens/session-cache.ts";
import { SigningKeyEntity } from "../../src/tokens/token.entity.ts";
import { TokenVerification } from "../../src/tokens/verification.ts";
import { grpcRefusal } from "../support/errors.ts";
import { freezeClock, useFlowDatabase, SETTINGS, tokenFlows, type TokenFlows } from "../support/token-flows.ts";
import { decodePart, signEd25519 } from "../support/tokens.ts";
import { addUser, createAccount, disableTenant, disableUser, setGrants, type Account } from "../support/unit-db.ts";

const db = useFlowDatabase();

const GRANTS = ["game.profile.*", "game.stats.read"];
const SECOND = 1000;

const verify = (flows: TokenFlows, token: string, audience?: string) => flows.verification.verify(db.em(), token, audience);
const refused = (reason: string, message: string) => ({ code: "UNAUTHENTICATED", reason, message, violations: [] });
const NO_SESSION = refused("SESSION_REVOKED", "the session no longer exists");

/** An access token with the claims a login would give `account`'s session, changed by `overrides`, signed with the current signing key. */
function signClaims(flows: TokenFlows, account: Account, sessionId: string, overrides: Partial<AccessClaims> = {}): string {
  const { kid, privateKey } = flows.keys.signer();
  const iat = Math.floor(Date.now() / 1000);
  const claims: AccessClaims = {
    iss: SETTINGS.issuer,
    sub: account.userId,
    aud: SETTINGS.audience,
    exp: iat + SETTINGS.accessTokenTtlSeconds,
    iat,
    jti: crypto.randomUUID(),
    tid: account.tenantId,
    sid: sessionId,
    scope: "game.profile.read",
    upn: `${account.userId}@${account.tenantName}`,
    knd: "user",
    ...overrides,
  };
  return signJwt(claims, kid, privateKey);
}

describe("TokenVerification.verify: the principal", () => {
  it("stands for the session's user and tenant, with the permissions granted now ∩ elected", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    const login = await flows.login(account, ["game.profile.*", "game.stats.read", "game.items.read"], { audience: "game-api" });
    const claims = decodePart(login.accessToken, 1);

    const principal = await verify(flows, login.accessToken, "game-api");

    expect(principal).toEqual({
      kind: "user",
      subject: account.userId,
      tenantId: account.tenantId,
      tenantName: account.tenantName,
      sessionId: login.sessionId,
      username: account.username,
      upn: `${account.userId}@${account.tenantName}`,
      permissions: ["game.profile.*", "game.stats.read"],
      elected: ["game.profile.*", "game.stats.read", "game.items.read"],
      expiresAt: new Date((claims.exp as number) * SECOND),
      audience: ["game-api"],
      token: login.accessToken,
    });
    expect(principal.expiresAt).toEqual(login.expiresAt);
  });

  it("gives an empty scope no permissions", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    const login = await flows.login(account, []);
    const principal = await verify(flows, login.accessToken);
    expect(principal.elected).toEqual([]);
    expect(principal.permissions).toEqual([]);
  });

  it("keeps a token's list of audiences", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    const login = await flows.login(account, ["game.profile.read"]);
    const token = signClaims(flows, account, login.sessionId, { aud: ["game-api", SETTINGS.audience] });
    expect((await verify(flows, token)).audience).toEqual(["game-api", SETTINGS.audience]);
    expect((await verify(flows, token, "game-api")).audience).toEqual(["game-api", SETTINGS.audience]);
  });

  it("returns the same principal while the session's state is unchanged, for each token it verified", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    const a = await flows.login(account, ["game.profile.read"]);
    const b = await flows.login(account, ["game.stats.read"]);
    const first = await verify(flows, a.accessToken);
    const other = await verify(flows, b.accessToken);
    expect(await verify(flows, a.accessToken)).toBe(first);
    expect(await verify(flows, b.accessToken)).toBe(other);
    expect(await verify(flows, a.accessToken)).toBe(first);
    expect(other).not.toBe(first);
    expect(other.permissions).toEqual(["game.stats.read"]);
  });

  it("recomputes the principal when the session's state changes: grants changed, then the cache's copy aged out", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    const login = await flows.login(account, ["game.profile.read", "game.stats.read"]);
    const t0 = freezeClock();
    const before = await verify(flows, login.accessToken);
    expect(before.permissions).toEqual(["game.profile.read", "game.stats.read"]);

    // What the revocation feed does when a group's grants change (createTokens: feed -> cache.apply).
    await setGrants(db, account, ["game.profile.*"]);
    flows.cache.apply({ kind: "GRANTS_CHANGED", tenantId: account.tenantId, sessionId: null, userId: null });
    const after = await verify(flows, login.accessToken);
    expect(after).not.toBe(before);
    expect(after.permissions).toEqual(["game.profile.read"]);
    expect(await verify(flows, login.accessToken)).toBe(after);

    // A missed event: the cached state lasts at most 30 s.
    await setGrants(db, account, GRANTS);
    freezeClock(t0 + 31 * SECOND);
    const aged = await verify(flows, login.accessToken);
    expect(aged).not.toBe(after);
    expect(aged.permissions).toEqual(["game.profile.read", "game.stats.read"]);
  });
});

describe("TokenVerification.verify: audience and time", () => {
  it("accepts a token for the audience it names and refuses it for any other, first and cached", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    const game = await flows.login(account, ["game.profile.read"], { audience: "game-api" });
    const plain = await flows.login(account, ["game.profile.read"]);
    const wrongAudience = refused("TOKEN_INVALID", "token audience is not accepted");

    // Not yet verified: the audience is checked with the signature.
    expect(await grpcRefusal(verify(flows, game.accessToken))).toEqual(wrongAudience);
    expect(await grpcRefusal(verify(flows, game.accessToken, "other-api"))).toEqual(wrongAudience);
    expect((await verify(flows, game.accessToken, "game-api")).sessionId).toBe(game.sessionId);
    // Verified before: checked again on every call.
    expect(await grpcRefusal(verify(flows, game.accessToken))).toEqual(wrongAudience);
    expect(await grpcRefusal(verify(flows, game.accessToken, SETTINGS.audience))).toEqual(wrongAudience);
    expect(await grpcRefusal(verify(flows, game.accessToken, "other-api"))).toEqual(wrongAudience);
    expect((await verify(flows, game.accessToken, "game-api")).sessionId).toBe(game.sessionId);

    // No audience asked for: the configured one.
    expect((await verify(flows, plain.accessToken)).sessionId).toBe(plain.sessionId);
    expect((await verify(flows, plain.accessToken, "")).sessionId).toBe(plain.sessionId);
    expect(await grpcRefusal(verify(flows, plain.accessToken, "game-api"))).toEqual(wrongAudience);
  });

  it("refuses a token from the second it expires, also one verified before", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    freezeClock();
    const login = await flows.login(account, ["game.profile.read"]);
    const exp = decodePart(login.accessToken, 1).exp as number;
    const expired = refused("TOKEN_EXPIRED", "token has expired");

    const principal = await verify(flows, login.accessToken);
    freezeClock(exp * SECOND - 1);
    expect((await verify(flows, login.accessToken)).sessionId).toBe(principal.sessionId);
    freezeClock(exp * SECOND);
    expect(await grpcRefusal(verify(flows, login.accessToken))).toEqual(expired);
    expect(await grpcRefusal(verify(flows, login.accessToken))).toEqual(expired);

    // Never verified before it expired: refused on the first presentation.
    const late = await tokenFlows(db);
    expect(await grpcRefusal(late.verification.verify(db.em(), login.accessToken))).toEqual(expired);
  });

  it("forgets an expired token: a later presentation is judged anew (here: its key has since gone)", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    freezeClock();
    const login = await flows.login(account, ["game.profile.read"]);
    const exp = decodePart(login.accessToken, 1).exp as number;
    const kid = (decodePart(login.accessToken, 0) as { kid: string }).kid;
    await verify(flows, login.accessToken);

    freezeClock(exp * SECOND);
    expect(await grpcRefusal(verify(flows, login.accessToken))).toMatchObject({ reason: "TOKEN_EXPIRED" });
    // The key leaves the set once every token it signed has expired (at the frozen time only:
    // on the real clock it is still live for the other tests).
    await db.em().nativeUpdate(SigningKeyEntity, { kid }, { expiresAt: new Date(exp * SECOND) });
    await flows.keys.reload(db.em());
    expect(await grpcRefusal(verify(flows, login.accessToken))).toEqual(refused("TOKEN_INVALID", "token signing key is unknown"));
  });
});

describe("TokenVerification.verify: keys", () => {
  it("refuses a token whose kid no key has, also with a valid signature by some other key", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    const login = await flows.login(account, ["game.profile.read"]);
    const claims = decodePart(login.accessToken, 1);
    const forged = signEd25519({ alg: "EdDSA", kid: "no-such-key", typ: "at+jwt" }, claims);
    expect(await grpcRefusal(verify(flows, forged))).toEqual(refused("TOKEN_INVALID", "token signing key is unknown"));
    const realKid = (decodePart(login.accessToken, 0) as { kid: string }).kid;
    const wrongKey = signEd25519({ alg: "EdDSA", kid: realKid, typ: "at+jwt" }, claims);
    expect(await grpcRefusal(verify(flows, wrongKey))).toEqual(refused("TOKEN_INVALID", "token signature is invalid"));
    expect(await grpcRefusal(verify(flows, "not.a.token"))).toMatchObject({ code: "UNAUTHENTICATED", reason: "TOKEN_INVALID" });
  });

  it("finds a key another replica added, by reloading the key set", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    const login = await flows.login(account, ["game.profile.read"]);
    // Another replica rotates; its new key signs at once (no publication lead).
    const replica = await tokenFlows(db);
    const { kid } = await replica.keys.rotate(db.em());
    const token = replica.signer.sign({ sub: account.userId, tid: account.tenantId, tenantName: account.tenantName, sid: login.sessionId, elected: ["game.profile.read"], audience: SETTINGS.audience, kind: "user", username: account.username }).accessToken;
    expect((decodePart(token, 0) as { kid: string }).kid).toBe(kid);

    // This replica reloads at most every 5 s: until then the key is unknown to it.
    const t0 = freezeClock();
    expect(await grpcRefusal(verify(flows, token))).toEqual(refused("TOKEN_INVALID", "token signing key is unknown"));
    freezeClock(t0 + 6 * SECOND);
    expect((await verify(flows, token)).sessionId).toBe(login.sessionId);
    // The token it had verified with the previous key still verifies (that key is retired, still published).
    expect((await verify(flows, login.accessToken)).sessionId).toBe(login.sessionId);
  });

  it("refuses a verified token once its key is retired at once (compromised key)", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    const login = await flows.login(account, ["game.profile.read"]);
    const other = await flows.login(account, ["game.profile.read"]);
    await verify(flows, login.accessToken);

    await flows.keys.rotate(db.em(), { retireCurrentNow: true });

    expect(await grpcRefusal(verify(flows, login.accessToken))).toEqual(refused("TOKEN_INVALID", "token signing key is retired"));
    expect(await grpcRefusal(verify(flows, other.accessToken))).toEqual(refused("TOKEN_INVALID", "token signing key is unknown"));
    // The new key's tokens verify.
    const fresh = await flows.login(account, ["game.profile.read"]);
    expect((await verify(flows, fresh.accessToken)).sessionId).toBe(fresh.sessionId);
  });
});

describe("TokenVerification.verify: the session", () => {
  it("refuses a token whose session does not exist, or is not a session id", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    expect(await grpcRefusal(verify(flows, signClaims(flows, account, crypto.randomUUID())))).toEqual(NO_SESSION);
    expect(await grpcRefusal(verify(flows, signClaims(flows, account, "not-a-session-id")))).toEqual(NO_SESSION);
    expect(await grpcRefusal(verify(flows, signClaims(flows, account, "")))).toEqual(NO_SESSION);
  });

  it("refuses a token naming another user's or another tenant's session (SESSION_REVOKED)", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    const colleague = await addUser(db, account);
    const stranger = await createAccount(db, GRANTS);
    const mine = await flows.login(account, ["game.profile.read"]);

    // Properly signed, but the sid is someone else's session.
    const asColleague = signClaims(flows, colleague, mine.sessionId);
    const otherTenant = signClaims(flows, { ...account, tenantId: stranger.tenantId, tenantName: stranger.tenantName }, mine.sessionId);
    const stranger_ = signClaims(flows, stranger, mine.sessionId);
    for (const token of [asColleague, otherTenant, stranger_]) expect(await grpcRefusal(verify(flows, token))).toEqual(NO_SESSION);
    // The same claims for the right user and tenant verify.
    expect((await verify(flows, signClaims(flows, account, mine.sessionId))).sessionId).toBe(mine.sessionId);
    // And after the session state is cached, the mismatch is still refused.
    expect(await grpcRefusal(verify(flows, asColleague))).toEqual(NO_SESSION);
  });

  it("refuses a revoked session's token, before and after having verified it", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    const early = await flows.login(account, ["game.profile.read"]);
    const late = await flows.login(account, ["game.profile.read"]);
    const revoked = refused("SESSION_REVOKED", "the session is revoked");

    await flows.sessions.revokeSession(db.em(), account.tenantId, early.sessionId);
    expect(await grpcRefusal(verify(flows, early.accessToken))).toEqual(revoked);

    const principal = await verify(flows, late.accessToken);
    expect(principal.sessionId).toBe(late.sessionId);
    await flows.sessions.revokeSession(db.em(), account.tenantId, late.sessionId);
    // What the revocation feed does with the event the revocation recorded.
    flows.cache.apply({ kind: "SESSION_REVOKED", sessionId: late.sessionId, tenantId: account.tenantId, userId: account.userId });
    expect(await grpcRefusal(verify(flows, late.accessToken))).toEqual(revoked);
    expect(await grpcRefusal(verify(flows, late.accessToken))).toEqual(revoked);
  });

  it("refuses while the tenant is disabled (TENANT_DISABLED)", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    const login = await flows.login(account, ["game.profile.read"]);
    await verify(flows, login.accessToken);
    // Disabled in the database without its sessions being revoked: verification checks for itself.
    await disableTenant(db, account);
    flows.cache.apply({ kind: "TENANT_REVOKED", tenantId: account.tenantId, sessionId: null, userId: null });
    expect(await grpcRefusal(verify(flows, login.accessToken))).toEqual(refused("TENANT_DISABLED", "the tenant is disabled"));
  });

  it("refuses while the user is disabled (USER_DISABLED)", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    const login = await flows.login(account, ["game.profile.read"]);
    await disableUser(db, account);
    expect(await grpcRefusal(verify(flows, login.accessToken))).toEqual(refused("USER_DISABLED", "the user is disabled"));
    // A verifier with its own cache (another replica) sees the same.
    const replica = new TokenVerification(flows.keys, new SessionCache(), SETTINGS);
    expect(await grpcRefusal(replica.verify(db.em(), login.accessToken))).toEqual(refused("USER_DISABLED", "the user is disabled"));
  });
});

describe("TokenVerification: the verified-token cache", () => {
  it("keeps at most its bound (oldest out first) and drops expired tokens from the front; an evicted token still verifies", async () => {
    const flows = await tokenFlows(db);
    const account = await createAccount(db, GRANTS);
    const verification = new TokenVerification(flows.keys, flows.cache, SETTINGS, 3);
    const logins = [];
    for (let i = 0; i < 5; i++) logins.push(await flows.login(account, ["game.profile.read"]));
    for (const login of logins) await verification.verify(db.em(), login.accessToken);
    expect(verification.cachedTokens).toBe(3);
    // The first token was pushed out: it is checked again (signature and all) and accepted.
    expect((await verification.verify(db.em(), logins[0]!.accessToken)).sessionId).toBe(logins[0]!.sessionId);
    expect(verification.cachedTokens).toBe(3);

    // Past their exp, the kept tokens go from the front when the next one is kept.
    const now = freezeClock(Date.now() + (SETTINGS.accessTokenTtlSeconds + 1) * SECOND);
    const late = signClaims(flows, account, logins[1]!.sessionId, { iat: Math.floor(now / 1000), exp: Math.floor(now / 1000) + 60 });
    await verification.verify(db.em(), late);
    expect(verification.cachedTokens).toBe(1);

    // Bound 0: nothing kept, every token verified each time.
    const none = new TokenVerification(flows.keys, flows.cache, SETTINGS, 0);
    await none.verify(db.em(), late);
    expect(none.cachedTokens).toBe(0);
  });
});
