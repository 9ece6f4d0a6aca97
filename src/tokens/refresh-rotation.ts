// Refresh rotation with reuse detection (OAuth 2.0 Security BCP 4.14) and a
// grace window that never logs an honest client out.
//
// A refresh token is spent by the presentation that wins the conditional
// UPDATE. Its successor is not random but derived from it (HMAC under a key
// sealed from the master key), so nothing secret is stored and a
// re-presentation of the token just rotated, within the grace window (a retry
// after a lost response, or concurrent refreshes of one client), gets the very
// same successor: there is still exactly one live chain. Any other
// presentation of a spent token (after the window, or of an older token whose
// successor was spent too) is reuse and revokes the whole session.
//
// On the database: one read (the token, its session, user, tenant and grants
// in one statement) and one write (claim, successor and session update in one
// statement), instead of a unit of work of some seven statements: refresh is
// the busiest write path (bench/refresh.ts).
import { createHmac, createSecretKey, hkdfSync, type KeyObject } from "node:crypto";
import type { EntityManager } from "@mikro-orm/core";
import { entityManagerOf, type EntityManagerSource } from "../db/entity-manager-source.ts";
import { recordRevocation } from "../events/index.ts";
import { permissionDenied, unauthenticated, Violations } from "../errors.ts";
import { anyCovers, grantsFromSql, groupPatternsSql, intersectPatterns } from "../permissions/index.ts";
import type { RefreshOutcome } from "../observability/metrics.ts";
import type { AccessTokenSigner, TokenSet, TokenSettings } from "./access-token-signer.ts";
import { checkRequested } from "./password-login.ts";
import { RotationBatcher } from "./refresh-batch.ts";
import { hashRefreshToken, REFRESH_FORMAT } from "./session-store.ts";
import { SessionEntity } from "./token.entity.ts";

export interface RefreshSettings extends TokenSettings {
  /** How long after a rotation a re-presentation of the rotated token gets the same successor; 0 = strict. */
  refreshGraceSeconds: number;
}

/** A refresh token with what a refresh needs of its session, user, tenant and grants. */
interface TokenRow {
  sessionId: string;
  usedAt: Date | null;
  expiresAt: Date;
  /** Already handed out twice (grace): gets no grace itself. */
  shared: boolean;
  revoked: boolean;
  absoluteExpiresAt: Date;
  elected: string[];
  audience: string;
  upnSubject: string | null;
  tenantId: string;
  tenantName: string;
  tenantDisabled: boolean;
  userId: string | null;
  username: string;
  userDisabled: boolean;
  /** What the user is granted now (permissions' userGrants of its groups). */
  grants: string[];
}

const READ_TOKEN = `
  select r.session_id, r.used_at, r.expires_at, r.shared, s.revoked_at is not null as revoked, s.absolute_expires_at,
         s.elected, s.audience, s.upn_subject, s.tenant_id, t.name as tenant_name, t.disabled as tenant_disabled,
         u.id as user_id, u.username, coalesce(u.disabled, true) as user_disabled,
         ${groupPatternsSql("u.id")} as grants
    from refresh_tokens r
    join sessions s on s.id = r.session_id
    join tenants t on t.id = s.tenant_id
    left join users u on u.id = s.user_id
   where r.hash = $1`;

/**
 * Claims the presented token (only if still unused), stores its successor and
 * slides the session, in one statement: either all of it happens or, when a
 * concurrent presentation claimed the token first or the session was revoked
 * meanwhile, nothing but the claim.
 */
const ROTATE = `
  with claimed as (
    update refresh_tokens set used_at = $1 where hash = $2 and used_at is null returning session_id),
  slid as (
    update sessions set refreshed_at = $3, expires_at = $4, elected = coalesce($5::jsonb, elected)
     where id in (select session_id from claimed) and revoked_at is null returning id),
  successor as (
    insert into refresh_tokens (hash, session_id, created_at, expires_at) select $6, id, $7, $8 from slid returning 1)
  select (select count(*) from claimed)::int as claimed, (select count(*) from successor)::int as stored`;

/**
 * The common case, for every token of a batch (refresh-batch.ts) in one
 * statement: a refresh that narrows nothing, of a token that is unused and
 * unexpired, of a live session whose user and tenant are enabled. Each row
 * claims its token, slides the session and stores the successor, and returns
 * what the new access token needs. $1 the presented tokens' hashes, $2 their
 * successors' hashes, in the same order; one row per claimed token with its
 * position (`ord`, from 1); one live token per session, so no two rows of a
 * batch slide the same session. A token it claims nothing for (spent,
 * expired, revoked, disabled, unknown, or a concurrent presentation won)
 * takes the two-statement path below (READ_TOKEN, then ROTATE), which finds
 * out which. A claimed row without a session means the session was revoked
 * between the claim and the slide: the token is spent, nothing is stored.
 */
const ROTATE_FAST_BATCH = `
  with input as (
    select * from unnest($1::text[], $2::text[]) with ordinality as i(hash, successor, ord)),
  claimed as (
    update refresh_tokens r set used_at = $3::timestamptz
      from input i
     where r.hash = i.hash and r.used_at is null and r.expires_at > $4::timestamptz
       and exists (
         select 1 from sessions s join tenants t on t.id = s.tenant_id join users u on u.id = s.user_id
          where s.id = r.session_id and s.revoked_at is null and s.absolute_expires_at > $5::timestamptz and not t.disabled and not u.disabled)
     returning r.session_id, i.successor, i.ord),
  slid as (
    update sessions s set refreshed_at = $6::timestamptz, expires_at = least($7::timestamptz, s.absolute_expires_at)
      from claimed c
     where s.id = c.session_id and s.revoked_at is null
     returning s.id, s.expires_at, c.successor, c.ord),
  successor as (
    insert into refresh_tokens (hash, session_id, created_at, expires_at) select successor, id, $8::timestamptz, expires_at from slid returning 1)
  select c.ord, sl.expires_at as refresh_expires_at,
         s.id as session_id, s.elected, s.audience, s.upn_subject, s.tenant_id, t.name as tenant_name,
         u.id as user_id, u.username, ${groupPatternsSql("u.id")} as grants
    from claimed c
    left join slid sl on sl.ord = c.ord
    left join sessions s on s.id = sl.id
    left join tenants t on t.id = s.tenant_id
    left join users u on u.id = s.user_id`;

const HEX_DIGEST = /^[0-9a-f]{64}$/;

/** Marks a successor handed out a second time (see TokenRow.shared). */
const SHARE = `update refresh_tokens set shared = true where hash = $1`;

type Failure = "invalid" | "reused" | "revoked" | "tenant_disabled" | "user_disabled";

export class RefreshRotation {
  readonly #signer: AccessTokenSigner;
  readonly #settings: RefreshSettings;
  readonly #successorKey: KeyObject;
  readonly #onOutcome: (outcome: RefreshOutcome) => void;
  readonly #batcher = new RotationBatcher();

  /** `onOutcome` is told how each presentation ended (metrics count grace hits and reuse separately). */
  constructor(signer: AccessTokenSigner, settings: RefreshSettings, masterKey: Buffer, onOutcome: (outcome: RefreshOutcome) => void = () => undefined) {
    this.#signer = signer;
    this.#settings = settings;
    // A KeyObject made once: createHmac with a Buffer imports the key again on every call.
    this.#successorKey = createSecretKey(Buffer.from(hkdfSync("sha256", masterKey, Buffer.alloc(0), "tessera refresh successor v1", 32)));
    this.#onOutcome = onOutcome;
  }

  /**
   * Rotates a refresh token; see the file comment for the grace window and
   * reuse. `source` is the call's EntityManager or a function that makes it: the
   * common rotation only needs the database connection, so a batch of them
   * makes one fork (its first member's), and only the other paths make their own.
   */
  async refresh(source: EntityManagerSource, input: { refreshToken: string; requested: string[] }): Promise<TokenSet> {
    const outcome: { reuse?: boolean; grace?: boolean } = {};
    try {
      const set = await this.#rotate(source, input, outcome);
      this.#onOutcome(outcome.grace ? "grace" : "rotated");
      return set;
    } catch (error) {
      this.#onOutcome(outcome.reuse ? "reuse_detected" : "refused");
      throw error;
    }
  }

  async #rotate(source: EntityManagerSource, input: { refreshToken: string; requested: string[] }, outcome: { reuse?: boolean; grace?: boolean }): Promise<TokenSet> {
    const v = new Violations();
    if (!input.refreshToken) v.add("refresh_token", "is required");
    checkRequested(input.requested, "requested_permissions", v);
    v.throwIfAny();
    if (!REFRESH_FORMAT.test(input.refreshToken)) throw unauthenticated("REFRESH_TOKEN_INVALID", "refresh token is invalid");
    const hash = hashRefreshToken(input.refreshToken);
    const now = new Date();
    if (!input.requested.length) {
      const fast = await this.#rotateFast(source, input.refreshToken, hash, now);
      if (fast) return fast;
    }
    const em = entityManagerOf(source);
    const row = await readToken(em, hash);
    if (!row) fail("invalid");
    if (row.revoked) fail("revoked");
    if (row.usedAt) return this.#represented(em, input, row, now, outcome);
    // Written so that an unreadable time fails closed.
    if (!(row.expiresAt > now && row.absoluteExpiresAt > now)) fail("invalid");
    checkOwner(row);
    // Narrowing may only shrink the session's elected set; a refused request leaves the token usable.
    const narrowed = input.requested.length ? input.requested : row.elected;
    for (const p of narrowed) {
      if (!anyCovers(row.elected, p)) throw permissionDenied(`permission ${p} is not elected in this session`, "PERMISSION_NOT_GRANTED");
    }
    const successor = this.#successor(input.refreshToken);
    const refreshExpiresAt = new Date(Math.min(now.getTime() + this.#settings.refreshTokenTtlSeconds * 1000, row.absoluteExpiresAt.getTime()));
    const newElected = input.requested.length ? intersectPatterns(row.elected, input.requested) : null;
    const [result] = await query<{ claimed: number; stored: number }>(em, "tessera_refresh_rotate", ROTATE, [
      now, hash,
      now, refreshExpiresAt, newElected ? JSON.stringify(newElected) : null,
      hashRefreshToken(successor), now, refreshExpiresAt,
    ]);
    if (!result || Number(result.claimed) !== 1) {
      // The conditional UPDATE is the linearization point: a concurrent presentation claimed the
      // token first. Within the grace window this one gets the same successor; otherwise it is reuse.
      // (Not claimed, yet not claimable either — nothing honest does that — is reuse there too.)
      const again = await readToken(em, hash);
      if (!again) fail("invalid");
      return this.#represented(em, input, again, new Date(), outcome);
    }
    if (Number(result.stored) !== 1) fail("revoked");
    return this.#issue(row, successor, refreshExpiresAt, intersectPatterns(row.grants, narrowed));
  }

  /**
   * ROTATE_FAST_BATCH, with the refreshes arriving together; undefined when
   * it claimed nothing (the caller takes the two-statement path).
   */
  async #rotateFast(source: EntityManagerSource, presented: string, hash: string, now: Date): Promise<TokenSet | undefined> {
    const successor = this.#successor(presented);
    const ttlMs = this.#settings.refreshTokenTtlSeconds * 1000;
    const r = await this.#batcher.rotate(hash, hashRefreshToken(successor), (hashes, successors) => {
      const at = new Date();
      // The hashes as array literals (hex digests: nothing to quote), which both drivers pass as text.
      const list = (values: string[]) => {
        if (!values.every((v) => HEX_DIGEST.test(v))) throw new Error("refresh batch: not a SHA-256 hex digest");
        return `{${values.join(",")}}`;
      };
      return query(entityManagerOf(source), "tessera_refresh_rotate_batch", ROTATE_FAST_BATCH, [list(hashes), list(successors), at, at, at, at, new Date(at.getTime() + ttlMs), at]);
    });
    if (!r) return undefined;
    if (!r.session_id) fail("revoked");
    const json = <T>(value: unknown): T => (typeof value === "string" ? (JSON.parse(value) as T) : (value as T));
    const elected = json<string[]>(r.elected);
    const row = {
      sessionId: String(r.session_id),
      tenantId: String(r.tenant_id),
      tenantName: String(r.tenant_name),
      userId: String(r.user_id),
      username: String(r.username),
      audience: String(r.audience),
      upnSubject: (r.upn_subject as string | null) ?? null,
    };
    return this.#issue(row, successor, new Date(r.refresh_expires_at as string), intersectPatterns(grantsFromSql(r.grants), elected));
  }

  /** A spent token presented again: the same successor within the grace window, else reuse. */
  async #represented(
    em: EntityManager,
    input: { refreshToken: string; requested: string[] },
    row: TokenRow,
    now: Date,
    outcome: { reuse?: boolean; grace?: boolean },
  ): Promise<TokenSet> {
    if (row.revoked) fail("revoked");
    const grace = this.#settings.refreshGraceSeconds * 1000;
    // A token that was itself handed out twice gets no grace: a thief who follows each of the
    // owner's rotations within the window is caught at the second one (an honest client only
    // when two responses in a row are lost).
    if (grace > 0 && row.usedAt && !row.shared && now.getTime() - row.usedAt.getTime() <= grace) {
      const successor = this.#successor(input.refreshToken);
      const next = await readToken(em, hashRefreshToken(successor));
      // Only while the successor is the live end of the chain: once it was spent too, the
      // presented token is an older one, and its presentation is reuse.
      if (next && next.sessionId === row.sessionId && !next.usedAt && !next.revoked && next.expiresAt > now) {
        checkOwner(next);
        await query(em, "tessera_refresh_share", SHARE, [hashRefreshToken(successor)]);
        const elected = input.requested.length ? intersectPatterns(next.elected, input.requested) : next.elected;
        outcome.grace = true;
        return this.#issue(next, successor, next.expiresAt, intersectPatterns(next.grants, elected));
      }
    }
    await revokeForReuse(em, row);
    outcome.reuse = true;
    fail("reused");
  }

  async #issue(row: Pick<TokenRow, "sessionId" | "tenantId" | "tenantName" | "userId" | "username" | "audience" | "upnSubject">, refreshToken: string, refreshExpiresAt: Date, elected: string[]): Promise<TokenSet> {
    return {
      ...(await this.#signer.signOffloaded({
        sub: row.userId!,
        tid: row.tenantId,
        tenantName: row.tenantName,
        sid: row.sessionId,
        elected,
        audience: row.audience,
        kind: "user",
        username: row.username,
        upnSubject: row.upnSubject ?? undefined,
      })),
      refreshToken,
      refreshExpiresAt,
      sessionId: row.sessionId,
      granted: elected,
      kind: "user",
    };
  }

  /** The successor of a refresh token: HMAC-SHA256 under the successor key, in the refresh-token format. */
  #successor(token: string): string {
    return `tsr_${createHmac("sha256", this.#successorKey).update(token).digest("base64url")}`;
  }
}

/** node-pg's pool, when the database is PostgreSQL (MikroORM's PostgreSqlConnection.getNativeClient). */
interface PgPool {
  totalCount: number;
  connect(): Promise<{ query(config: { name: string; text: string; values: unknown[] }): Promise<{ rows: unknown[] }>; release(error?: Error): void }>;
}

/**
 * Runs one of the refresh statements (written with $n placeholders, each used
 * once, in order). On PostgreSQL as a named prepared statement through the
 * driver's pool: parsed and planned once per connection, not on every
 * refresh (bench/RESULTS.md: planning was most of the database's cost). The
 * statement is sent on a connection taken in this call's own async context
 * (not by pool.query, whose callback runs in whichever call released the
 * connection), so the call's deadline cancels it and tracing sees it, as for
 * the ORM's queries (src/db/call-deadline.ts). On the embedded database
 * through MikroORM.
 */
async function query<T>(em: EntityManager, name: string, text: string, values: unknown[]): Promise<T[]> {
  const pool = await nativePool(em);
  if (pool) return onPool<T>(pool, name, text, values);
  return em.getConnection().execute<T[]>(text.replace(/\$\d+/g, "?"), values);
}

/** The driver's pool on PostgreSQL; null on the embedded database. */
async function nativePool(em: EntityManager): Promise<PgPool | null> {
  const connection = em.getConnection() as unknown as { getNativeClient?: () => Promise<unknown> };
  // Asked each time (cheap): a reconnect builds a new pool.
  const native = connection.getNativeClient ? await connection.getNativeClient() : null;
  return native && typeof (native as PgPool).totalCount === "number" ? (native as PgPool) : null;
}

async function onPool<T>(pool: PgPool, name: string, text: string, values: unknown[]): Promise<T[]> {
  const client = await pool.connect();
  let result: { rows: unknown[] };
  try {
    result = await client.query({ name, text, values });
  } catch (error) {
    // As pool.query does: a connection whose statement failed (cancelled, cut) is not reused.
    client.release(error as Error);
    throw error;
  }
  client.release();
  return result.rows as T[];
}

function checkOwner(row: TokenRow): void {
  if (row.tenantDisabled) fail("tenant_disabled");
  if (!row.userId || row.userDisabled) fail("user_disabled");
}

async function readToken(em: EntityManager, hash: string): Promise<TokenRow | undefined> {
  const [r] = await query<Record<string, unknown>>(em, "tessera_refresh_read", READ_TOKEN, [hash]);
  if (!r) return undefined;
  const json = <T>(value: unknown): T => (typeof value === "string" ? (JSON.parse(value) as T) : (value as T));
  return {
    sessionId: String(r.session_id),
    usedAt: r.used_at ? new Date(r.used_at as string) : null,
    expiresAt: new Date(r.expires_at as string),
    shared: Boolean(r.shared),
    revoked: Boolean(r.revoked),
    absoluteExpiresAt: new Date(r.absolute_expires_at as string),
    elected: json<string[]>(r.elected),
    audience: String(r.audience),
    upnSubject: (r.upn_subject as string | null) ?? null,
    tenantId: String(r.tenant_id),
    tenantName: String(r.tenant_name),
    tenantDisabled: Boolean(r.tenant_disabled),
    userId: (r.user_id as string | null) ?? null,
    username: String(r.username ?? ""),
    userDisabled: Boolean(r.user_disabled),
    grants: grantsFromSql(r.grants),
  };
}

/** Reuse revokes the session (the whole token family), recorded for every replica's verifiers. */
async function revokeForReuse(em: EntityManager, row: TokenRow): Promise<void> {
  await em.transactional(async (tem) => {
    const revoked = await tem.nativeUpdate(SessionEntity, { id: row.sessionId, revokedAt: null }, { revokedAt: new Date(), revokeReason: "refresh_token_reuse" });
    if (revoked > 0) recordRevocation(tem, { kind: "SESSION_REVOKED", tenantId: row.tenantId, userId: row.userId ?? undefined, sessionId: row.sessionId });
  });
}

function fail(failure: Failure): never {
  switch (failure) {
    case "reused":
      throw unauthenticated("REFRESH_TOKEN_INVALID", "refresh token was already used; the session is revoked");
    case "revoked":
      throw unauthenticated("SESSION_REVOKED", "the session is revoked");
    case "tenant_disabled":
      throw unauthenticated("TENANT_DISABLED", "the tenant is disabled");
    case "user_disabled":
      throw unauthenticated("USER_DISABLED", "the user is disabled");
    default:
      throw unauthenticated("REFRESH_TOKEN_INVALID", "refresh token is invalid or expired");
  }
}
