// Refresh rotation with reuse detection (OAuth 2.0 Security BCP 4.14): a
// refresh token is spent by the presentation that wins the conditional
// UPDATE; every other presentation of a spent token is reuse and revokes the
// whole session.
import type { EntityManager } from "@mikro-orm/core";
import { permissionDenied, unauthenticated, Violations } from "../errors.ts";
import { anyCovers, grantedPatterns, intersectPatterns } from "../permissions/index.ts";
import type { AccessTokenSigner, TokenSet, TokenSettings } from "./access-token-signer.ts";
import { checkRequested } from "./password-login.ts";
import { hashRefreshToken, newRefreshToken, REFRESH_FORMAT, type SessionStore } from "./session-store.ts";
import { RefreshTokenEntity } from "./token.entity.ts";

export class RefreshRotation {
  readonly #signer: AccessTokenSigner;
  readonly #sessions: SessionStore;
  readonly #settings: TokenSettings;

  constructor(signer: AccessTokenSigner, sessions: SessionStore, settings: TokenSettings) {
    this.#signer = signer;
    this.#sessions = sessions;
    this.#settings = settings;
  }

  /**
   * Rotates a refresh token. The conditional UPDATE makes exactly one of any
   * number of concurrent presentations win; every other presentation of a used
   * token is reuse, and revokes the session.
   */
  async refresh(em: EntityManager, input: { refreshToken: string; requested: string[] }): Promise<TokenSet> {
    const v = new Violations();
    if (!input.refreshToken) v.add("refresh_token", "is required");
    checkRequested(input.requested, "requested_permissions", v);
    v.throwIfAny();
    if (!REFRESH_FORMAT.test(input.refreshToken)) throw unauthenticated("REFRESH_TOKEN_INVALID", "refresh token is invalid");
    const hash = hashRefreshToken(input.refreshToken);
    const now = new Date();

    // Failures are returned from inside the transaction, not thrown: a throw
    // would roll it back, and a detected reuse must commit the revocation of
    // the session it makes. The outcome becomes an error after the commit.
    const outcome = await em.transactional(async (tem) => {
      const row = await tem.findOne(RefreshTokenEntity, { hash }, { populate: ["session", "session.tenant", "session.user"] });
      if (!row) return { error: "invalid" as const };
      const session = row.session;
      if (session.revokedAt) return { error: "revoked" as const };
      if (row.usedAt) {
        this.#sessions.revokeRow(tem, session, "refresh_token_reuse");
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
        this.#sessions.revokeRow(tem, session, "refresh_token_reuse");
        return { error: "reused" as const };
      }
      const granted = await grantedPatterns(tem, user.id);
      const elected = intersectPatterns(granted, narrowed);
      const refreshToken = newRefreshToken();
      const refreshExpiresAt = new Date(Math.min(now.getTime() + this.#settings.refreshTokenTtlSeconds * 1000, session.absoluteExpiresAt.getTime()));
      tem.create(RefreshTokenEntity, { hash: hashRefreshToken(refreshToken), session, expiresAt: refreshExpiresAt, usedAt: null, createdAt: now });
      session.refreshedAt = now;
      session.expiresAt = refreshExpiresAt;
      if (input.requested.length) session.elected = intersectPatterns(session.elected, input.requested);
      await tem.flush();
      return {
        set: {
          ...this.#signer.sign({ sub: user.id, tid: session.tenant.id, tenantName: session.tenant.name, sid: session.id, elected, audience: session.audience, kind: "user", username: user.username, upnSubject: session.upnSubject ?? undefined }),
          refreshToken,
          refreshExpiresAt,
          sessionId: session.id,
          granted: elected,
          kind: "user" as const,
        },
      };
    });
    if (outcome.set) return outcome.set;
    switch (outcome.error) {
      case "reused":
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
}
