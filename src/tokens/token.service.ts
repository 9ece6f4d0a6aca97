// Tokens: password login, refresh rotation with reuse detection, access-token
// verification, and session revocation. The domain face of src/tokens; no gRPC.
import { createHash, randomBytes } from "node:crypto";
import type { EntityManager } from "@mikro-orm/core";
import { failedPrecondition, notFound, permissionDenied, tooManyAttempts, unauthenticated, Violations } from "../errors.ts";
import type { Principal } from "../grpc/context.ts";
import { anyCovers, grantedPatterns, userGrants } from "../permissions/grants.ts";
import { checkPatternList, intersectPatterns } from "../permissions/match.ts";
import { nextPageToken, readPage, type PageRequest } from "../shared/pagination.ts";
import { foldKey, UUID } from "../shared/validation.ts";
import { UserEntity, type User } from "../users/user.entity.ts";
import type { PasswordHasher } from "../users/password.ts";
import { accountThrottleKey } from "../users/user.service.ts";
import { throttleKey, type LoginThrottle } from "../throttling/index.ts";
import { parseAccessToken, signJwt, verifyAccessToken, type AccessClaims } from "./jwt.ts";
import type { KeyStore } from "./keys.ts";
import { recordRevocation, type RevocationFeed } from "./revocations.ts";
import type { SessionCache, SessionState } from "./session-cache.ts";
import { RefreshTokenEntity, SessionEntity, type Session } from "./token.entity.ts";

interface VerifiedEntry {
  claims: AccessClaims;
  kid: string;
  /** The session state the principal was computed from, and the principal. */
  state?: SessionState | null;
  principal?: Principal;
}

export interface TokenSettings {
  issuer: string;
  audience: string;
  accessTokenTtlSeconds: number;
  refreshTokenTtlSeconds: number;
  refreshTokenAbsoluteTtlSeconds: number;
}

/** Password checks: the bounded argon2 pool and the failed-login throttle. */
export interface LoginDeps {
  hasher: PasswordHasher;
  throttle: LoginThrottle;
}

export interface TokenSet {
  accessToken: string;
  expiresAt: Date;
  refreshToken: string;
  refreshExpiresAt?: Date;
  sessionId: string;
  /** Elected permission patterns placed in `scope`. */
  granted: string[];
  kind: "user" | "service";
}

/** Refresh tokens: "tsr_" + 256 random bits; only their SHA-256 is stored. */
const REFRESH_PREFIX = "tsr_";
const REFRESH_FORMAT = /^tsr_[A-Za-z0-9_-]{43}$/;
const hashRefreshToken = (token: string) => createHash("sha256").update(token).digest("hex");

const MAX_REQUESTED = 100;
const VERIFIED_CACHE_MAX = 50_000;

export class TokenService {
  readonly #settings: TokenSettings;
  readonly #keys: KeyStore;
  readonly #sessions: SessionCache;
  readonly #feed: RevocationFeed;
  readonly #login: LoginDeps;
  /** Signature-verified tokens (immutable facts); revocation is checked separately on every call. */
  readonly #verified = new Map<string, VerifiedEntry>();

  constructor(settings: TokenSettings, keys: KeyStore, sessions: SessionCache, feed: RevocationFeed, login: LoginDeps) {
    this.#settings = settings;
    this.#keys = keys;
    this.#sessions = sessions;
    this.#feed = feed;
    this.#login = login;
  }

  // ---------------------------------------------------------------- issue

  /** Password login. Unknown user and wrong password are indistinguishable, in outcome and in time. */
  async issueForPassword(
    em: EntityManager,
    input: { tenant: string; username: string; password: string; requested: string[]; audience: string; peer: string },
  ): Promise<TokenSet> {
    const v = new Violations();
    if (!input.tenant) v.add("password.tenant", "is required");
    if (!input.username) v.add("password.username", "is required");
    if (!input.password) v.add("password.password", "is required");
    if (input.username.length > 254) v.add("password.username", "is too long");
    if (input.password.length > 1024) v.add("password.password", "is too long");
    checkRequested(input.requested, "requested_permissions", v);
    checkAudience(input.audience, v);
    v.throwIfAny();

    const identifier = foldKey(input.username);
    const found = await findLoginCandidate(em, input.tenant, identifier);
    const candidate = found?.user;
    // One counter per account however it is named (username or e-mail, tenant
    // name or id); an unknown user is counted under the resolved tenant and the
    // name typed, so switching between the tenant's name and id tells nothing.
    const account = candidate ? accountThrottleKey(candidate.id) : throttleKey("unknown", found?.tenantId ?? foldKey(input.tenant), identifier);
    const { hasher, throttle } = this.#login;
    const ok = await throttle.attempt(account, input.peer, () =>
      candidate?.passwordHash ? hasher.verify(candidate.passwordHash, input.password) : hasher.verifyNobody(input.password),
    );
    if (!ok || !candidate || !found) throw unauthenticated("INVALID_CREDENTIALS", "invalid username or password");
    // Only someone who knows the password learns that the account or tenant is disabled.
    if (found.tenantDisabled) throw unauthenticated("TENANT_DISABLED", "the tenant is disabled");
    if (candidate.disabled) throw unauthenticated("USER_DISABLED", "the user is disabled");

    const elected = electPermissions(candidate.grants, input.requested);
    return this.#startSession(em, {
      tenantId: found.tenantId,
      tenantName: found.tenantName,
      user: { id: candidate.id, username: candidate.username },
      elected,
      audience: input.audience || this.#settings.audience,
      peer: input.peer,
    });
  }

  async #startSession(
    em: EntityManager,
    s: { tenantId: string; tenantName: string; user: Pick<User, "id" | "username">; elected: string[]; audience: string; peer: string },
  ): Promise<TokenSet> {
    const now = new Date();
    const refreshToken = REFRESH_PREFIX + randomBytes(32).toString("base64url");
    const refreshExpiresAt = new Date(now.getTime() + this.#settings.refreshTokenTtlSeconds * 1000);
    const sessionId = crypto.randomUUID();
    // Login latency should be argon2 and little else: the session and its first
    // refresh token go in as one statement (one round trip) rather than a
    // unit-of-work transaction of two INSERTs.
    await em.getConnection().execute(
      `with session as (
         insert into sessions (id, tenant_id, user_id, kind, subject, elected, audience, client_address,
                               created_at, refreshed_at, expires_at, absolute_expires_at)
         values (?, ?, ?, 'user', ?, ?, ?, ?, ?, ?, ?, ?) returning id)
       insert into refresh_tokens (hash, session_id, created_at, expires_at) select ?, id, ?, ? from session`,
      [
        sessionId, s.tenantId, s.user.id, s.user.id, JSON.stringify(s.elected), s.audience, s.peer.slice(0, 128),
        now, now, refreshExpiresAt, new Date(now.getTime() + this.#settings.refreshTokenAbsoluteTtlSeconds * 1000),
        hashRefreshToken(refreshToken), now, refreshExpiresAt,
      ],
      "run",
    );
    const session = { id: sessionId };
    return {
      ...this.#sign({ sub: s.user.id, tid: s.tenantId, tenantName: s.tenantName, sid: session.id, elected: s.elected, audience: s.audience, kind: "user", username: s.user.username }),
      refreshToken,
      refreshExpiresAt,
      sessionId: session.id,
      granted: s.elected,
      kind: "user",
    };
  }

  #sign(c: { sub: string; tid: string; tenantName: string; sid: string; elected: string[]; audience: string; kind: "user" | "service"; username: string }): {
    accessToken: string;
    expiresAt: Date;
  } {
    const { kid, privateKey } = this.#keys.signer();
    const iat = Math.floor(Date.now() / 1000);
    const exp = iat + this.#settings.accessTokenTtlSeconds;
    const claims: AccessClaims = {
      iss: this.#settings.issuer,
      sub: c.sub,
      aud: c.audience,
      exp,
      iat,
      jti: randomBytes(12).toString("base64url"),
      tid: c.tid,
      sid: c.sid,
      scope: c.elected.join(" "),
      upn: `${c.sub}@${c.tenantName}`,
      knd: c.kind,
      ...(c.username ? { preferred_username: c.username } : {}),
    };
    return { accessToken: signJwt(claims, kid, privateKey), expiresAt: new Date(exp * 1000) };
  }

  // -------------------------------------------------------------- refresh

  /**
   * Rotates a refresh token. The conditional UPDATE makes exactly one of any
   * number of concurrent presentations win; every other presentation of a used
   * token is reuse, and revokes the session (OAuth 2.0 Security BCP 4.14).
   */
  async refresh(em: EntityManager, input: { refreshToken: string; requested: string[] }): Promise<TokenSet> {
    const v = new Violations();
    if (!input.refreshToken) v.add("refresh_token", "is required");
    checkRequested(input.requested, "requested_permissions", v);
    v.throwIfAny();
    if (!REFRESH_FORMAT.test(input.refreshToken)) throw unauthenticated("REFRESH_TOKEN_INVALID", "refresh token is invalid");
    const hash = hashRefreshToken(input.refreshToken);
    const now = new Date();

    const outcome = await em.transactional(async (tem) => {
      const row = await tem.findOne(RefreshTokenEntity, { hash }, { populate: ["session", "session.tenant", "session.user"] });
      if (!row) return { error: "invalid" as const };
      const session = row.session;
      if (session.revokedAt) return { error: "revoked" as const };
      if (row.usedAt) {
        this.#revokeSessionRow(tem, session, "refresh_token_reuse");
        return { error: "reused" as const };
      }
      if (row.expiresAt <= now || session.absoluteExpiresAt <= now) return { error: "invalid" as const };
      const user = session.user;
      if (session.tenant.disabled) return { error: "tenant_disabled" as const };
      if (!user || user.disabled) return { error: "user_disabled" as const };
      // Narrowing may only shrink the session's elected set; a refused request leaves the token usable.
      const narrowed = input.requested.length ? input.requested : session.elected;
      for (const p of narrowed) {
        if (!anyCovers(session.elected, p)) return { error: "above_session" as const, permission: p };
      }
      // The conditional UPDATE is the linearization point: of concurrent presentations exactly one
      // claims the token; the others lost the race and count as reuse.
      const claimed = await tem.nativeUpdate(RefreshTokenEntity, { hash, usedAt: null }, { usedAt: now });
      if (claimed === 0) {
        this.#revokeSessionRow(tem, session, "refresh_token_reuse");
        return { error: "reused" as const };
      }
      const granted = await grantedPatterns(tem, user.id);
      const elected = intersectPatterns(granted, narrowed);
      const refreshToken = REFRESH_PREFIX + randomBytes(32).toString("base64url");
      const refreshExpiresAt = new Date(Math.min(now.getTime() + this.#settings.refreshTokenTtlSeconds * 1000, session.absoluteExpiresAt.getTime()));
      tem.create(RefreshTokenEntity, { hash: hashRefreshToken(refreshToken), session, expiresAt: refreshExpiresAt, usedAt: null } as never);
      session.refreshedAt = now;
      session.expiresAt = refreshExpiresAt;
      if (input.requested.length) session.elected = intersectPatterns(session.elected, input.requested);
      await tem.flush();
      return {
        set: {
          ...this.#sign({ sub: user.id, tid: session.tenant.id, tenantName: session.tenant.name, sid: session.id, elected, audience: session.audience, kind: "user", username: user.username }),
          refreshToken,
          refreshExpiresAt,
          sessionId: session.id,
          granted: elected,
          kind: "user" as const,
        },
      };
    });
    if ("set" in outcome && outcome.set) return outcome.set;
    switch (outcome.error) {
      case "reused":
        await this.#afterRevocation();
        throw unauthenticated("REFRESH_TOKEN_INVALID", "refresh token was already used; the session is revoked");
      case "revoked":
        throw unauthenticated("SESSION_REVOKED", "the session is revoked");
      case "tenant_disabled":
        throw unauthenticated("TENANT_DISABLED", "the tenant is disabled");
      case "user_disabled":
        throw unauthenticated("USER_DISABLED", "the user is disabled");
      case "above_session":
        throw permissionDenied(`permission ${outcome.permission} is not elected in this session`, "PERMISSION_NOT_GRANTED");
      default:
        throw unauthenticated("REFRESH_TOKEN_INVALID", "refresh token is invalid or expired");
    }
  }

  // --------------------------------------------------------------- verify

  /** Verifies an access token and returns its principal with permissions granted now ∩ elected. */
  async verify(em: EntityManager, token: string, audience = ""): Promise<Principal> {
    const nowSeconds = Math.floor(Date.now() / 1000);
    const expectedAudience = audience || this.#settings.audience;
    let entry = this.#verified.get(token);
    if (!entry) {
      const parsed = parseAccessToken(token);
      const key = this.#keys.cachedPublicKey(parsed.kid) ?? (await this.#keys.publicKey(em, parsed.kid));
      if (!key) throw unauthenticated("TOKEN_INVALID", "token signing key is unknown");
      const claims = verifyAccessToken(parsed, key, { issuer: this.#settings.issuer, audience: expectedAudience, nowSeconds });
      entry = { claims, kid: parsed.kid };
      if (this.#verified.size >= VERIFIED_CACHE_MAX) this.#verified.clear();
      this.#verified.set(token, entry);
    } else {
      // The signature was checked before; what can change is time, the audience asked for, and the key's publication.
      if (entry.claims.exp <= nowSeconds) {
        this.#verified.delete(token);
        throw unauthenticated("TOKEN_EXPIRED", "token has expired");
      }
      const aud = entry.claims.aud;
      if (!(Array.isArray(aud) ? aud.includes(expectedAudience) : aud === expectedAudience)) {
        throw unauthenticated("TOKEN_INVALID", "token audience is not accepted");
      }
      if (!this.#keys.cachedPublicKey(entry.kid)) throw unauthenticated("TOKEN_INVALID", "token signing key is retired");
    }
    const sid = entry.claims.sid;
    let state = UUID.test(sid) ? this.#sessions.peek(sid) : null;
    if (state === undefined) state = await this.#sessions.get(em, sid);
    // The principal is recomputed only when the session's state object changed (a revocation or grant change).
    if (entry.state !== state || !entry.principal) {
      entry.principal = principalFrom(entry.claims, token, checkSessionState(state, entry.claims));
      entry.state = state;
    } else {
      checkSessionState(state, entry.claims);
    }
    return entry.principal;
  }

  // -------------------------------------------------------------- sessions

  #revokeSessionRow(em: EntityManager, session: Session, reason: string): void {
    session.revokedAt = new Date();
    session.revokeReason = reason;
    recordRevocation(em, {
      kind: "SESSION_REVOKED",
      tenantId: typeof session.tenant === "object" ? session.tenant.id : String(session.tenant),
      userId: session.user ? (typeof session.user === "object" ? session.user.id : String(session.user)) : undefined,
      sessionId: session.id,
    });
  }

  /** After a committed revocation: make this process see it before the call returns. */
  async #afterRevocation(): Promise<void> {
    await this.#feed.poll();
  }

  async revokeSession(em: EntityManager, tenantId: string, sessionId: string, onlyUserId?: string): Promise<void> {
    if (!UUID.test(sessionId)) throw notFound("SESSION_NOT_FOUND", "session not found");
    await em.transactional(async (tem) => {
      const session = await tem.findOne(SessionEntity, { id: sessionId, tenant: tenantId, ...(onlyUserId ? { user: onlyUserId } : {}) });
      if (!session) throw notFound("SESSION_NOT_FOUND", "session not found");
      if (!session.revokedAt) this.#revokeSessionRow(tem, session, "logout");
      await tem.flush();
    });
    await this.#afterRevocation();
  }

  /** Revokes every live session of a user in the caller's transaction (user disabled, deleted, revoke all). */
  async revokeUserSessionsInTransaction(em: EntityManager, user: Pick<User, "id"> & { tenant: unknown }, reason: string): Promise<number> {
    const revoked = await em.nativeUpdate(SessionEntity, { user: user.id, revokedAt: null }, { revokedAt: new Date(), revokeReason: reason });
    const tenantId = typeof user.tenant === "object" && user.tenant ? (user.tenant as { id: string }).id : String(user.tenant);
    recordRevocation(em, { kind: "USER_REVOKED", tenantId, userId: user.id });
    return revoked;
  }

  async revokeAllSessions(em: EntityManager, tenantId: string, userId: string): Promise<number> {
    if (!UUID.test(userId)) throw notFound("USER_NOT_FOUND", "user not found");
    const count = await em.transactional(async (tem) => {
      const user = await tem.findOne(UserEntity, { id: userId, tenant: tenantId });
      if (!user) throw notFound("USER_NOT_FOUND", "user not found");
      const n = await this.revokeUserSessionsInTransaction(tem, user, "revoke_all");
      await tem.flush();
      return n;
    });
    await this.#afterRevocation();
    return count;
  }

  async listSessions(em: EntityManager, tenantId: string, userId: string, request: PageRequest): Promise<{ sessions: Session[]; nextPageToken: string }> {
    const v = new Violations();
    const query = { kind: "sessions", tenantId, userId };
    const page = readPage(request, query, v);
    v.throwIfAny();
    if (!UUID.test(userId) || !(await em.findOne(UserEntity, { id: userId, tenant: tenantId }))) {
      throw notFound("USER_NOT_FOUND", "user not found");
    }
    const where: Record<string, unknown> = { user: userId, tenant: tenantId, revokedAt: null, expiresAt: { $gt: new Date() } };
    // Keyset on (createdAt desc, id): the key is "<iso time>|<id>".
    if (page.after) {
      const [time, id] = page.after.split("|");
      const at = new Date(time ?? "");
      if (Number.isNaN(at.getTime()) || !id) throw failedPrecondition("INVALID_PAGE_TOKEN", "page_token is invalid");
      where.$or = [{ createdAt: { $lt: at } }, { createdAt: at, id: { $gt: id } }];
    }
    const rows = await em.find(SessionEntity, where, { orderBy: { createdAt: "desc", id: "asc" }, limit: page.limit + 1 });
    const { items, next } = nextPageToken(rows, page, (s) => `${s.createdAt.toISOString()}|${s.id}`, query);
    return { sessions: items, nextPageToken: next };
  }

  /**
   * Tenant disabled or deleted, in the caller's transaction: every session of
   * the tenant is revoked (re-enabling the tenant later does not bring them
   * back; its users log in again) and stops verifying at once.
   */
  async revokeTenantSessionsInTransaction(em: EntityManager, tenantId: string): Promise<void> {
    await em.nativeUpdate(SessionEntity, { tenant: tenantId, revokedAt: null }, { revokedAt: new Date(), revokeReason: "tenant_revoked" });
    recordRevocation(em, { kind: "TENANT_REVOKED", tenantId });
  }

  afterCommit(): Promise<void> {
    return this.#afterRevocation();
  }
}

interface LoginCandidate {
  tenantId: string;
  tenantName: string;
  tenantDisabled: boolean;
  user?: {
    id: string;
    username: string;
    passwordHash: string | null;
    disabled: boolean;
    /** Grant patterns of the user's groups. */
    grants: string[];
  };
}

/**
 * Everything a password login needs, in one round trip: the tenant (by name or
 * UUID), the user in it (by e-mail when the identifier has an '@', else by
 * username: usernames cannot contain one, so the lookup is unambiguous) and
 * its grants. Login latency should be argon2 and little else (bench/issue.ts),
 * so this is one SQL statement rather than three ORM queries.
 */
async function findLoginCandidate(em: EntityManager, tenant: string, identifier: string): Promise<LoginCandidate | undefined> {
  const byId = UUID.test(tenant);
  const userKey = identifier.includes("@") ? "u.email_key" : "u.username_key";
  const rows = await em.getConnection().execute<Record<string, unknown>[]>(
    `select t.id as tenant_id, t.name as tenant_name, t.disabled as tenant_disabled,
            u.id, u.username, u.password_hash, u.disabled,
            coalesce((select jsonb_agg(g.permissions) from group_members m join groups g on g.id = m.group_id where m.user_id = u.id), '[]'::jsonb) as grants
       from tenants t left join users u on u.tenant_id = t.id and ${userKey} = ?
      where ${byId ? "t.id = ?" : "t.name = ?"}
      limit 1`,
    [identifier, byId ? tenant.toLowerCase() : tenant],
  );
  const row = rows[0];
  if (!row) return undefined;
  const grants = typeof row.grants === "string" ? (JSON.parse(row.grants) as string[][]) : (row.grants as string[][]);
  return {
    tenantId: String(row.tenant_id),
    tenantName: String(row.tenant_name),
    tenantDisabled: Boolean(row.tenant_disabled),
    user: row.id
      ? {
          id: String(row.id),
          username: String(row.username),
          passwordHash: (row.password_hash as string | null) ?? null,
          disabled: Boolean(row.disabled),
          grants: userGrants(grants.flat()),
        }
      : undefined,
  };
}

function checkRequested(requested: string[], field: string, v: Violations): void {
  checkPatternList(requested, MAX_REQUESTED, field, v);
}

function checkAudience(audience: string, v: Violations): void {
  if (audience.length > 255 || /\s/.test(audience)) v.add("audience", "must be at most 255 characters without spaces");
}

/** requested ∩ granted; all granted when none requested. Asking for one not granted is refused. */
export function electPermissions(granted: string[], requested: string[]): string[] {
  if (requested.length === 0) return [...granted].sort();
  for (const p of requested) {
    if (!anyCovers(granted, p)) throw permissionDenied(`permission ${p} is not granted`, "PERMISSION_NOT_GRANTED");
  }
  return intersectPatterns(granted, requested);
}

function checkSessionState(state: SessionState | null, claims: AccessClaims): SessionState {
  if (!state || state.tenantId !== claims.tid || state.subject !== claims.sub) {
    throw unauthenticated("SESSION_REVOKED", "the session no longer exists");
  }
  if (state.revoked) throw unauthenticated("SESSION_REVOKED", "the session is revoked");
  if (state.tenantDisabled) throw unauthenticated("TENANT_DISABLED", "the tenant is disabled");
  if (state.userDisabled) throw unauthenticated("USER_DISABLED", "the user is disabled");
  return state;
}

function principalFrom(claims: AccessClaims, token: string, state: SessionState): Principal {
  const elected = claims.scope ? claims.scope.split(" ") : [];
  return {
    kind: state.kind,
    subject: claims.sub,
    tenantId: claims.tid,
    tenantName: state.tenantName,
    sessionId: claims.sid,
    username: state.username,
    permissions: intersectPatterns(state.granted, elected),
    elected,
    expiresAt: new Date(claims.exp * 1000),
    audience: Array.isArray(claims.aud) ? claims.aud : [claims.aud],
    token,
  };
}
