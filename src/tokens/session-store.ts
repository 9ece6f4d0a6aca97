// Sessions and their refresh tokens in the database: the login insert, the
// revocations (one session, a user's, a tenant's), listing. Refresh tokens are
// "tsr_" + 256 random bits; only their SHA-256 is stored.
import { hash, randomBytes } from "node:crypto";
import type { EntityManager } from "@mikro-orm/core";
import { recordRevocation } from "../events/index.ts";
import { failedPrecondition, notFound, unauthenticated, Violations } from "../errors.ts";
import { refKey } from "../db/refs.ts";
import { nextPageToken, readPage, type PageRequest } from "../shared/pagination.ts";
import { UUID } from "../shared/validation.ts";
import { UserEntity, type User } from "../users/index.ts";
import type { TokenSettings } from "./access-token-signer.ts";
import { SessionEntity, type Session } from "./token.entity.ts";

const REFRESH_PREFIX = "tsr_";
/** The shape of a refresh token; anything else is refused before any lookup. */
export const REFRESH_FORMAT = /^tsr_[A-Za-z0-9_-]{43}$/;
export const hashRefreshToken = (token: string) => hash("sha256", token, "hex");
export const newRefreshToken = () => REFRESH_PREFIX + randomBytes(32).toString("base64url");

export interface NewSession {
  /** Chosen by the caller, which signs the access token (it carries the id) before the session is stored. */
  sessionId: string;
  tenantId: string;
  user: Pick<User, "id" | "username">;
  /**
   * The password hash the login verified: the session starts only if it is
   * still the user's. Null for a remote login (no password was checked).
   */
  passwordHash: string | null;
  /** The subject part of the tokens' `upn` when it is not the user id (remote logins). */
  upnSubject?: string;
  /** An OpenID Connect login: the tenant must still trust this issuer with this client. */
  oidcTrust?: { issuer: string; clientId: string };
  elected: string[];
  audience: string;
  peer: string;
}

/** What the store needs of the settings: lifetimes and the per-user cap on live sessions (0 = none). */
export type SessionSettings = TokenSettings & { maxSessionsPerUser?: number };

export class SessionStore {
  readonly #settings: SessionSettings;
  #userRevokedHooks: ((em: EntityManager, tenantId: string, userId: string) => Promise<void>)[] = [];

  /** Work to do, in the same transaction, whenever every session of a user is revoked (disable, delete, password change, revoke all). */
  onUserSessionsRevoked(hook: (em: EntityManager, tenantId: string, userId: string) => Promise<void>): void {
    this.#userRevokedHooks.push(hook);
  }

  constructor(settings: SessionSettings) {
    this.#settings = settings;
  }

  /**
   * Starts a session with its first refresh token. Login latency should be
   * argon2 and little else: both rows go in as one statement (one round trip)
   * rather than a unit-of-work transaction of two INSERTs.
   *
   * The statement inserts only while the user and tenant are enabled and the
   * password is the one the login verified, holding a share lock on both rows:
   * a login that checked the password before a concurrent disable or password
   * change either starts its session before that change (which then revokes
   * it, as it revokes every session) or waits for it and starts none. Without
   * this, a login racing a disable kept a live session the disable never saw.
   */
  async start(em: EntityManager, s: NewSession): Promise<{ refreshToken: string; refreshExpiresAt: Date }> {
    const now = new Date();
    const refreshToken = newRefreshToken();
    const refreshExpiresAt = new Date(now.getTime() + this.#settings.refreshTokenTtlSeconds * 1000);
    const sessionId = s.sessionId;
    const max = this.#settings.maxSessionsPerUser ?? 0;
    // With a cap, the statement also counts the user's live sessions (its own
    // snapshot: without the one it inserts), so that a login two or more
    // under the cap costs no second round trip.
    const rows = await em.getConnection().execute<{ live?: number | string }[]>(
      `with owner as (
         select u.id from users u join tenants t on t.id = u.tenant_id
          where u.id = ? and t.id = ? and not u.disabled and not t.disabled and ${s.passwordHash === null ? "? is null" : "u.password_hash = ?"}
            and (?::jsonb is null or t.oidc_issuers @> ?::jsonb)
          for share of u, t),
       session as (
         insert into sessions (id, tenant_id, user_id, kind, subject, elected, audience, client_address, upn_subject,
                               created_at, refreshed_at, expires_at, absolute_expires_at)
         select ?, ?, owner.id, 'user', owner.id, ?, ?, ?, ?, ?, ?, ?, ? from owner returning id)
       insert into refresh_tokens (hash, session_id, created_at, expires_at) select ?, id, ?, ? from session
       returning ${max > 0 ? "(select count(*) from sessions where user_id = ? and revoked_at is null and expires_at > ?)" : "1"} as live`,
      [
        s.user.id, s.tenantId, s.passwordHash,
        ...(() => {
          const trust = s.oidcTrust ? JSON.stringify([{ issuer: s.oidcTrust.issuer, clientId: s.oidcTrust.clientId }]) : null;
          return [trust, trust];
        })(),
        sessionId, s.tenantId, JSON.stringify(s.elected), s.audience, s.peer.slice(0, 128), s.upnSubject ?? null,
        now, now, refreshExpiresAt, new Date(now.getTime() + this.#settings.refreshTokenAbsoluteTtlSeconds * 1000),
        hashRefreshToken(refreshToken), now, refreshExpiresAt,
        ...(max > 0 ? [s.user.id, now] : []),
      ],
      "all",
    );
    if (rows.length === 0) {
      // Disabled, or the password changed, after the check: as if the login had come a moment later.
      throw unauthenticated("INVALID_CREDENTIALS", "the account changed during the login; try again");
    }
    // At the cap, not only over it: two logins racing one under the cap both run it.
    if (max > 0 && Number(rows[0]!.live) + 1 >= max) await this.#capSessions(em, s.tenantId, s.user.id, now, max);
    return { refreshToken, refreshExpiresAt };
  }

  /**
   * Past TESSERA_MAX_SESSIONS_PER_USER live sessions, the user's oldest are
   * revoked (reason session_limit), recorded for every replica's verifiers:
   * a login loop (a script, a leaked password) cannot grow the table or a
   * user's session list without bound. Run by a login whose insert brought
   * the user to the cap or over it (by its own snapshot's count). Concurrent
   * logins converge: each revokes whatever is beyond the newest N. Only three
   * or more logins racing from two or more under the cap can all skip it and
   * leave the user over the cap (by one less than their number, at most),
   * until its next login; a cap of 1 is always kept.
   */
  async #capSessions(em: EntityManager, tenantId: string, userId: string, now: Date, max: number): Promise<void> {
    await em.transactional(async (tem) => {
      const revoked = await tem.getConnection().execute<{ id: string }[]>(
        `update sessions set revoked_at = ?, revoke_reason = 'session_limit'
          where id in (select id from sessions where user_id = ? and revoked_at is null and expires_at > ?
                        order by created_at desc, id desc offset ?)
          returning id`,
        [now, userId, now, max],
        "all",
        tem.getTransactionContext(),
      );
      for (const { id } of revoked) recordRevocation(tem, { kind: "SESSION_REVOKED", tenantId, userId, sessionId: id });
    });
  }

  /** Marks a loaded session revoked and records it, in the caller's unit of work. */
  revokeRow(em: EntityManager, session: Session, reason: string): void {
    session.revokedAt = new Date();
    session.revokeReason = reason;
    recordRevocation(em, {
      kind: "SESSION_REVOKED",
      tenantId: refKey(session.tenant),
      userId: session.user ? refKey(session.user) : undefined,
      sessionId: session.id,
    });
  }

  async revokeSession(em: EntityManager, tenantId: string, sessionId: string, onlyUserId?: string): Promise<void> {
    if (!UUID.test(sessionId)) throw notFound("SESSION_NOT_FOUND", "session not found");
    await em.transactional(async (tem) => {
      const session = await tem.findOne(SessionEntity, { id: sessionId, tenant: tenantId, ...(onlyUserId ? { user: onlyUserId } : {}) });
      if (!session) throw notFound("SESSION_NOT_FOUND", "session not found");
      if (!session.revokedAt) this.revokeRow(tem, session, "logout");
      await tem.flush();
    });
  }

  /** Revokes every live session of a user in the caller's transaction (user disabled, deleted, revoke all). */
  async revokeUserSessionsInTransaction(em: EntityManager, user: Pick<User, "id"> & { tenant: unknown }, reason: string): Promise<number> {
    const revoked = await em.nativeUpdate(SessionEntity, { user: user.id, revokedAt: null }, { revokedAt: new Date(), revokeReason: reason });
    recordRevocation(em, { kind: "USER_REVOKED", tenantId: refKey(user.tenant), userId: user.id });
    for (const hook of this.#userRevokedHooks) await hook(em, refKey(user.tenant), user.id);
    return revoked;
  }

  async revokeAllSessions(em: EntityManager, tenantId: string, userId: string): Promise<number> {
    if (!UUID.test(userId)) throw notFound("USER_NOT_FOUND", "user not found");
    return em.transactional(async (tem) => {
      const user = await tem.findOne(UserEntity, { id: userId, tenant: tenantId });
      if (!user) throw notFound("USER_NOT_FOUND", "user not found");
      const n = await this.revokeUserSessionsInTransaction(tem, user, "revoke_all");
      await tem.flush();
      return n;
    });
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

  async listSessions(em: EntityManager, tenantId: string, userId: string, request: PageRequest): Promise<{ sessions: Session[]; nextPageToken: string }> {
    const v = new Violations();
    const query = { kind: "sessions", tenantId, userId };
    const page = readPage(request, query, v);
    v.throwIfAny();
    if (!UUID.test(userId) || !(await em.findOne(UserEntity, { id: userId, tenant: tenantId }))) {
      throw notFound("USER_NOT_FOUND", "user not found");
    }
    const where: Record<string, unknown> = { user: userId, tenant: tenantId, revokedAt: null, expiresAt: { $gt: new Date() } };
    // Keyset on (createdAt desc, id): the key is "<iso time>|<id>" (page tokens are authenticated).
    if (page.after) {
      const [time, id] = page.after.split("|");
      const at = new Date(time ?? "");
      if (Number.isNaN(at.getTime()) || !id || !UUID.test(id)) throw failedPrecondition("INVALID_PAGE_TOKEN", "page_token is invalid");
      where.$or = [{ createdAt: { $lt: at } }, { createdAt: at, id: { $gt: id } }];
    }
    const rows = await em.find(SessionEntity, where, { orderBy: { createdAt: "desc", id: "asc" }, limit: page.limit + 1 });
    const { items, next } = nextPageToken(rows, page, (s) => `${s.createdAt.toISOString()}|${s.id}`, query);
    return { sessions: items, nextPageToken: next };
  }
}
