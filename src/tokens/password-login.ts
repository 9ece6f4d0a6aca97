// Password login: one query for the tenant, user and grants, the throttled
// argon2 check, the elected permissions, then a new session. Unknown user and
// wrong password are indistinguishable, in outcome and in time.
import type { EntityManager } from "@mikro-orm/core";
import { permissionDenied, unauthenticated, Violations } from "../errors.ts";
import { anyCovers, checkPatternList, grantsFromSql, groupPatternsSql, intersectPatterns } from "../permissions/index.ts";
import { foldKey, UUID } from "../shared/validation.ts";
import { throttleKey, type LoginThrottle } from "../throttling/index.ts";
import { accountThrottleKey, type PasswordHasher } from "../users/index.ts";
import type { AccessTokenSigner, TokenSet } from "./access-token-signer.ts";
import type { SessionStore } from "./session-store.ts";

/** Password checks: the bounded argon2 pool and the failed-login throttle. */
export interface LoginDeps {
  hasher: PasswordHasher;
  throttle: LoginThrottle;
}

export interface PasswordLoginInput {
  tenant: string;
  username: string;
  password: string;
  requested: string[];
  audience: string;
  peer: string;
}

/** The most permission patterns a login or a refresh may elect. */
const MAX_REQUESTED = 100;

export class PasswordLogin {
  readonly #signer: AccessTokenSigner;
  readonly #sessions: SessionStore;
  readonly #deps: LoginDeps;
  readonly #defaultAudience: string;

  constructor(signer: AccessTokenSigner, sessions: SessionStore, deps: LoginDeps, defaultAudience: string) {
    this.#signer = signer;
    this.#sessions = sessions;
    this.#deps = deps;
    this.#defaultAudience = defaultAudience;
  }

  async issue(em: EntityManager, input: PasswordLoginInput): Promise<TokenSet> {
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
    const { hasher, throttle } = this.#deps;
    const ok = await throttle.attempt(account, input.peer, () =>
      candidate?.passwordHash ? hasher.verify(candidate.passwordHash, input.password) : hasher.verifyNobody(input.password),
    );
    if (!ok || !candidate || !found) throw unauthenticated("INVALID_CREDENTIALS", "invalid username or password");
    // Only someone who knows the password learns that the account or tenant is disabled.
    if (found.tenantDisabled) throw unauthenticated("TENANT_DISABLED", "the tenant is disabled");
    if (candidate.disabled) throw unauthenticated("USER_DISABLED", "the user is disabled");

    const elected = electPermissions(candidate.grants, input.requested);
    const audience = input.audience || this.#defaultAudience;
    const user = { id: candidate.id, username: candidate.username };
    const sessionId = crypto.randomUUID();
    // Signed first: a token that could not be issued leaves no session behind.
    const access = await this.#signer.signOffloaded({ sub: user.id, tid: found.tenantId, tenantName: found.tenantName, sid: sessionId, elected, audience, kind: "user", username: user.username });
    const session = await this.#sessions.start(em, { sessionId, tenantId: found.tenantId, user, passwordHash: candidate.passwordHash!, elected, audience, peer: input.peer });
    return {
      ...access,
      refreshToken: session.refreshToken,
      refreshExpiresAt: session.refreshExpiresAt,
      sessionId,
      granted: elected,
      kind: "user",
    };
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
 * its grants, computed by permissions' userGrants as on the ORM path. Login
 * latency should be argon2 and little else (bench/issue.ts), so this is one
 * SQL statement rather than three ORM queries.
 */
async function findLoginCandidate(em: EntityManager, tenant: string, identifier: string): Promise<LoginCandidate | undefined> {
  const byId = UUID.test(tenant);
  const userKey = identifier.includes("@") ? "u.email_key" : "u.username_key";
  const rows = await em.getConnection().execute<Record<string, unknown>[]>(
    `select t.id as tenant_id, t.name as tenant_name, t.disabled as tenant_disabled,
            u.id, u.username, u.password_hash, u.disabled,
            ${groupPatternsSql("u.id")} as grants
       from tenants t left join users u on u.tenant_id = t.id and ${userKey} = ?
      where ${byId ? "t.id = ?" : "t.name = ?"}
      limit 1`,
    [identifier, byId ? tenant.toLowerCase() : tenant],
  );
  const row = rows[0];
  if (!row) return undefined;
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
          grants: grantsFromSql(row.grants),
        }
      : undefined,
  };
}

/** Checks a `requested_permissions` list (login and refresh). */
export function checkRequested(requested: string[], field: string, v: Violations): void {
  checkPatternList(requested, MAX_REQUESTED, field, v);
}

export function checkAudience(audience: string, v: Violations): void {
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
