// Mixed load against Tessera replicas for the fault scripts, with a ledger of
// every ACKNOWLEDGED result (a reply received) and the checks that nothing
// acknowledged was lost once the fault is over.
//
// Load: password logins (IssueToken), refreshes that follow each session's
// rotated chain (one presentation in flight per chain; after an unanswered
// presentation the client presents the same token again, as an honest client
// retrying a lost response does, which the refresh grace window answers with
// the same successor), revocations (RevokeSession with the tenant
// administrator's token, retried until answered, since a retry of a
// committed revocation is a no-op), admin writes (CreateUser, UpdateUser of
// display_name) and VerifyToken of live sessions. Every call has a deadline
// (3 s) and goes round-robin over the replicas; every outcome is recorded
// with its start and end time.
import { randomBytes } from "node:crypto";
import { createTesseraClient, Status, TesseraClientError, type TesseraClient } from "@tessera/client";

export interface CallRecord {
  op: string;
  replica: number;
  /** ms since the run's t0 (performance.now()). */
  start: number;
  end: number;
  outcome: string; // "OK", or "<STATUS>" / "<STATUS>/<REASON>"
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; code: string; reason?: string; outcome: string; message?: string };

export interface Replica {
  index: number;
  address: string;
  anon: TesseraClient;
  admin: TesseraClient;
}

interface Held {
  id: string;
  user: number;
  refresh: string;
  access: string;
  replica: number;
  state: "live" | "revoking" | "revoked" | "lost";
  busy: boolean;
  /** The last presentation of `refresh` went unanswered: its outcome is unknown. */
  unknownRefresh: boolean;
  refreshes: number;
  /** Why the chain was lost (an unexpected refusal). */
  lostBecause?: string;
  revokeAckedAt?: number;
}

interface UserRecord {
  id: string;
  username: string;
  /** The display name of the last acknowledged update (or creation). */
  displayName: string;
  /** Display names of updates sent after it that went unanswered (any of them may have landed). */
  unknown: string[];
  busy: boolean;
}

export interface LoginUser {
  username: string;
  password: string;
}

export interface LoadSettings {
  deadlineMs: number;
  loginWorkers: number;
  refreshWorkers: number;
  revokeWorkers: number;
  adminWorkers: number;
  verifyWorkers: number;
  /** Pause between two calls of one worker (ms), per kind. */
  pause: { login: number; refresh: number; revoke: number; admin: number; verify: number };
}

export const DEFAULT_LOAD: LoadSettings = {
  deadlineMs: 3_000,
  loginWorkers: 2,
  refreshWorkers: 4,
  revokeWorkers: 1,
  adminWorkers: 1,
  verifyWorkers: 1,
  pause: { login: 60, refresh: 15, revoke: 150, admin: 60, verify: 20 },
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pick = <T>(items: T[]): T | undefined => items[Math.floor(Math.random() * items.length)];

export function clientsFor(addresses: string[], adminToken: string, deadlineMs: number): Replica[] {
  return addresses.map((address, index) => {
    const anon = createTesseraClient({ address, retry: false, defaultDeadlineMs: deadlineMs });
    return { index, address, anon, admin: anon.withToken(adminToken) };
  });
}

export function outcomeOf(error: unknown): { code: string; reason?: string; outcome: string; message?: string } {
  if (error instanceof TesseraClientError) {
    const code = error.status;
    return { code, reason: error.reason, outcome: error.reason ? `${code}/${error.reason}` : code, message: error.message.slice(0, 200) };
  }
  const code = typeof (error as { code?: unknown })?.code === "number" ? (Status[(error as { code: number }).code] ?? "UNKNOWN") : "CLIENT_ERROR";
  return { code, outcome: `${code}: ${String((error as Error)?.message ?? error).slice(0, 120)}` };
}

/** The outcomes a client may see while the database is switching: anything else is a finding. */
export const TRANSIENT = new Set(["UNAVAILABLE", "DEADLINE_EXCEEDED"]);

export class Load {
  readonly replicas: Replica[];
  readonly settings: LoadSettings;
  readonly t0: number;
  readonly calls: CallRecord[] = [];
  readonly sessions: Held[] = [];
  readonly users: UserRecord[] = [];
  /** CreateUser calls that went unanswered: the user may or may not exist. */
  readonly maybeUsers: string[] = [];
  /** IssueToken calls that went unanswered (a session the client never learnt of may exist). */
  unknownLogins = 0;
  /** Presentations retried after an unanswered one, and how they ended. */
  readonly retriedRefreshes: Record<string, number> = {};
  /** VerifyToken right after an acknowledged revocation, on the replica that made it and on the other one. */
  readonly verifyAfterRevoke = { same: {} as Record<string, number>, other: {} as Record<string, number>, sameAccepted: [] as string[], otherAccepted: [] as { session: string; atMs: number; refusedAfterMs?: number }[] };
  /** Unexpected outcomes, with what they were about. */
  readonly unexpected: { op: string; replica: number; atMs: number; outcome: string; detail?: string }[] = [];
  readonly #loginUsers: LoginUser[];
  #stopping = false;
  #counter = 0;
  readonly #prefix = randomBytes(2).toString("hex");

  constructor(replicas: Replica[], loginUsers: LoginUser[], settings: LoadSettings = DEFAULT_LOAD, t0 = performance.now()) {
    this.replicas = replicas;
    this.#loginUsers = loginUsers;
    this.settings = settings;
    this.t0 = t0;
  }

  now(): number {
    return performance.now() - this.t0;
  }

  #replica(): Replica {
    return this.replicas[this.#counter++ % this.replicas.length]!;
  }

  /** Runs one call, recording its outcome and times. */
  async call<T>(op: string, replica: Replica, fn: (r: Replica) => Promise<T>): Promise<Outcome<T>> {
    const start = this.now();
    try {
      const value = await fn(replica);
      this.calls.push({ op, replica: replica.index, start, end: this.now(), outcome: "OK" });
      return { ok: true, value };
    } catch (error) {
      const o = outcomeOf(error);
      this.calls.push({ op, replica: replica.index, start, end: this.now(), outcome: o.outcome });
      return { ok: false, ...o };
    }
  }

  #unexpected(op: string, replica: Replica, outcome: string, detail?: string): void {
    this.unexpected.push({ op, replica: replica.index, atMs: Math.round(this.now()), outcome, detail });
  }

  async #loginWorker(): Promise<void> {
    for (let i = 0; !this.#stopping; i++) {
      const user = (this.#counter + i) % this.#loginUsers.length;
      const { username, password } = this.#loginUsers[user]!;
      const replica = this.#replica();
      const r = await this.call("login", replica, (x) => x.anon.issue.issueToken({ credential: { $case: "password", value: { tenant: FAULT_TENANT, username, password } } }));
      if (r.ok) this.sessions.push({ id: r.value.sessionId, user, refresh: r.value.refreshToken, access: r.value.accessToken, replica: replica.index, state: "live", busy: false, unknownRefresh: false, refreshes: 0 });
      else if (TRANSIENT.has(r.code)) this.unknownLogins++;
      else this.#unexpected("login", replica, r.outcome);
      await sleep(this.settings.pause.login);
    }
  }

  /** One presentation of a chain's current token; true when answered (either way). */
  async refreshOnce(s: Held, replica: Replica): Promise<boolean> {
    const retry = s.unknownRefresh;
    const r = await this.call(retry ? "refresh (retry)" : "refresh", replica, (x) => x.anon.refresh.refresh({ refreshToken: s.refresh }));
    if (retry) this.retriedRefreshes[r.ok ? "OK" : r.outcome] = (this.retriedRefreshes[r.ok ? "OK" : r.outcome] ?? 0) + 1;
    if (r.ok) {
      if (r.value.sessionId !== s.id) this.#unexpected("refresh", replica, "OK", `answered for session ${r.value.sessionId}, not ${s.id}`);
      s.refresh = r.value.refreshToken;
      s.access = r.value.accessToken;
      s.unknownRefresh = false;
      s.refreshes++;
      return true;
    }
    if (TRANSIENT.has(r.code)) {
      s.unknownRefresh = true;
      return false;
    }
    s.state = "lost";
    s.lostBecause = r.outcome;
    this.#unexpected(retry ? "refresh (retry)" : "refresh", replica, r.outcome, `session ${s.id} after ${s.refreshes} acknowledged rotations`);
    return true;
  }

  async #refreshWorker(): Promise<void> {
    while (!this.#stopping) {
      const free = this.sessions.filter((s) => s.state === "live" && !s.busy);
      const s = pick(free.filter((x) => x.unknownRefresh)) ?? pick(free);
      if (!s) {
        await sleep(50);
        continue;
      }
      s.busy = true;
      try {
        await this.refreshOnce(s, this.#replica());
      } finally {
        s.busy = false;
      }
      await sleep(this.settings.pause.refresh);
    }
  }

  /** Revokes `s` until a reply comes (a retry of a committed revocation answers OK again). */
  async revokeUntilAnswered(s: Held, untilMs = Infinity): Promise<void> {
    s.state = "revoking";
    for (;;) {
      const replica = this.#replica();
      const r = await this.call("revoke", replica, (x) => x.admin.issue.revokeSession({ sessionId: s.id }));
      if (r.ok) {
        s.state = "revoked";
        s.revokeAckedAt = this.now();
        await this.#verifyRevoked(s, replica);
        return;
      }
      if (!TRANSIENT.has(r.code)) {
        this.#unexpected("revoke", replica, r.outcome, `session ${s.id}`);
        s.state = "lost";
        s.lostBecause = `revoke: ${r.outcome}`;
        return;
      }
      if (this.now() > untilMs) return;
      await sleep(100);
    }
  }

  /** Right after an acknowledged revocation: the replica that made it must refuse at once; the other one within its NOTIFY/poll. */
  async #verifyRevoked(s: Held, made: Replica): Promise<void> {
    for (const replica of this.replicas) {
      const same = replica === made;
      const r = await this.call("verify after revoke", replica, (x) => x.anon.verify.verifyToken({ token: s.access, audience: "" }));
      const bucket = same ? this.verifyAfterRevoke.same : this.verifyAfterRevoke.other;
      const key = r.ok ? "OK (accepted)" : r.outcome;
      bucket[key] = (bucket[key] ?? 0) + 1;
      if (r.ok && same) this.verifyAfterRevoke.sameAccepted.push(s.id);
      if (r.ok && !same) {
        // How long until the other replica refuses it too (NOTIFY, or its next poll of the log).
        let refusedAfter: number | undefined;
        for (let i = 0; i < 300; i++) {
          await sleep(5);
          const again = await this.call("verify after revoke (again)", replica, (x) => x.anon.verify.verifyToken({ token: s.access, audience: "" }));
          if (!again.ok && again.reason === "SESSION_REVOKED") {
            refusedAfter = Math.round(this.now() - s.revokeAckedAt!);
            break;
          }
        }
        this.verifyAfterRevoke.otherAccepted.push({ session: s.id, atMs: Math.round(s.revokeAckedAt!), refusedAfterMs: refusedAfter });
      }
    }
  }

  async #revokeWorker(): Promise<void> {
    while (!this.#stopping) {
      await sleep(this.settings.pause.revoke);
      const free = this.sessions.filter((s) => s.state === "live" && !s.busy && !s.unknownRefresh && s.refreshes > 0);
      if (free.length < 8) continue;
      const s = pick(free)!;
      s.busy = true;
      try {
        await this.revokeUntilAnswered(s, this.now() + 60_000);
      } finally {
        s.busy = false;
      }
    }
  }

  async #adminWorker(): Promise<void> {
    for (let i = 0; !this.#stopping; i++) {
      const replica = this.#replica();
      const target = i % 2 === 1 ? pick(this.users.filter((u) => !u.busy)) : undefined;
      if (!target) {
        const username = `fo-${this.#prefix}-${i}-${randomBytes(2).toString("hex")}`;
        const displayName = `created ${i}`;
        const r = await this.call("createUser", replica, (x) =>
          x.admin.users.createUser({ user: { username, displayName }, password: `${username}-Pa55-${randomBytes(4).toString("hex")}` }),
        );
        if (r.ok) this.users.push({ id: r.value.user!.id, username, displayName, unknown: [], busy: false });
        else if (TRANSIENT.has(r.code)) this.maybeUsers.push(username);
        else this.#unexpected("createUser", replica, r.outcome);
      } else {
        target.busy = true;
        const displayName = `updated ${i}`;
        const r = await this.call("updateUser", replica, (x) => x.admin.users.updateUser({ user: { id: target.id, displayName }, updateMask: ["display_name"] }));
        if (r.ok) {
          target.displayName = displayName;
          target.unknown = [];
        } else if (TRANSIENT.has(r.code)) target.unknown.push(displayName);
        else this.#unexpected("updateUser", replica, r.outcome);
        target.busy = false;
      }
      await sleep(this.settings.pause.admin);
    }
  }

  async #verifyWorker(): Promise<void> {
    while (!this.#stopping) {
      await sleep(this.settings.pause.verify);
      const s = pick(this.sessions.filter((x) => x.state === "live" && !x.busy));
      if (!s) continue;
      const access = s.access;
      const replica = this.#replica();
      const r = await this.call("verify", replica, (x) => x.anon.verify.verifyToken({ token: access, audience: "" }));
      // A refusal is unexpected only if the session was live and untouched all along.
      if (!r.ok && !TRANSIENT.has(r.code) && s.state === "live" && s.access === access) this.#unexpected("verify", replica, r.outcome, `live session ${s.id} (${r.message ?? ""}; refreshes ${s.refreshes}, unknown refresh ${s.unknownRefresh})`);
    }
  }

  #running: Promise<unknown>[] = [];

  start(): void {
    const n = this.settings;
    const spawn = (count: number, worker: () => Promise<void>) => {
      for (let i = 0; i < count; i++) this.#running.push(worker());
    };
    spawn(n.loginWorkers, () => this.#loginWorker());
    spawn(n.refreshWorkers, () => this.#refreshWorker());
    spawn(n.revokeWorkers, () => this.#revokeWorker());
    spawn(n.adminWorkers, () => this.#adminWorker());
    spawn(n.verifyWorkers, () => this.#verifyWorker());
  }

  /**
   * Stops the workers after their current call, then settles what is still
   * open: chains whose last presentation went unanswered are presented again
   * until answered (the client must know its token).
   */
  async stop(): Promise<void> {
    this.#stopping = true;
    await Promise.all(this.#running);
    for (const s of this.sessions.filter((x) => x.state === "live" && x.unknownRefresh)) {
      for (let attempt = 0; attempt < 20 && s.unknownRefresh && s.state === "live"; attempt++) {
        if (!(await this.refreshOnce(s, this.replicas[attempt % this.replicas.length]!))) await sleep(250);
      }
    }
  }
}

export const FAULT_TENANT = "fault";

/** Creates the tenant, its administrator and the login users through `replica`; returns the administrator's access token. */
export async function seed(address: string, systemPassword: string, loginUsers: number): Promise<{ adminToken: string; users: LoginUser[] }> {
  const client = createTesseraClient({ address, retry: false, defaultDeadlineMs: 15_000 });
  try {
    const system = await client.issue.issueToken({ credential: { $case: "password", value: { tenant: "system", username: "admin", password: systemPassword } } });
    const adminPassword = `fault-admin-${randomBytes(6).toString("hex")}`;
    await client.withToken(system.accessToken).tenants.createTenant({ tenant: { name: FAULT_TENANT, displayName: "Fault scripts" }, admin: { username: "fault-admin", password: adminPassword } });
    const admin = await client.issue.issueToken({ credential: { $case: "password", value: { tenant: FAULT_TENANT, username: "fault-admin", password: adminPassword } } });
    const users: LoginUser[] = [];
    for (let i = 0; i < loginUsers; i++) {
      const user = { username: `login-${i}`, password: `login-${i}-${randomBytes(6).toString("hex")}` };
      await client.withToken(admin.accessToken).users.createUser({ user: { username: user.username }, password: user.password });
      users.push(user);
    }
    return { adminToken: admin.accessToken, users };
  } finally {
    client.close();
  }
}

export interface Checks {
  /** Acknowledged CreateUser whose user GetUser does not find (per replica asked). */
  usersMissing: string[];
  /** Users whose display name is neither the last acknowledged one nor one of the unanswered updates after it. */
  usersWrongName: string[];
  usersChecked: number;
  /** Acknowledged revocations that VerifyToken accepts, or that Refresh accepts. */
  revokedAccepted: string[];
  revokedChecked: number;
  /** Live chains whose held refresh token (the last acknowledged successor) no longer refreshes. */
  liveRefreshRefused: string[];
  /** Live sessions whose access token VerifyToken refuses. */
  liveVerifyRefused: string[];
  liveChecked: number;
  /** Acknowledged sessions ListSessions does not list (live ones) or the database does not hold. */
  sessionsMissing: string[];
  /** Chains the load gave up on (an unexpected refusal) whose held token no longer refreshes, with the reasons. */
  chainsLost: string[];
  /** Chains the load gave up on whose held token still refreshes (the refusal was the server's mistake, not a loss). */
  chainsAbandoned: string[];
  /** Calls of the checks themselves that failed transiently (the server should have recovered by then). */
  checkCallsUnavailable: number;
}

/** The checks after the fault, through every replica in turn, with generous deadlines and a few retries on UNAVAILABLE. */
export async function checkAcknowledged(load: Load): Promise<Checks> {
  const checks: Checks = {
    usersMissing: [], usersWrongName: [], usersChecked: 0, revokedAccepted: [], revokedChecked: 0,
    liveRefreshRefused: [], liveVerifyRefused: [], liveChecked: 0, sessionsMissing: [], chainsLost: [], chainsAbandoned: [], checkCallsUnavailable: 0,
  };
  const replicas = load.replicas;
  let turn = 0;
  const next = () => replicas[turn++ % replicas.length]!;
  async function call<T>(op: string, fn: (r: Replica) => Promise<T>): Promise<Outcome<T>> {
    let r: Outcome<T> = { ok: false, code: "UNAVAILABLE", outcome: "UNAVAILABLE" };
    for (let attempt = 0; attempt < 5; attempt++) {
      r = await load.call(`check ${op}`, next(), fn);
      if (r.ok || !TRANSIENT.has(r.code)) return r;
      checks.checkCallsUnavailable++;
      await sleep(200);
    }
    return r;
  }
  for (const u of load.users) {
    checks.usersChecked++;
    for (let i = 0; i < replicas.length; i++) {
      const r = await call("getUser", (x) => x.admin.users.getUser({ id: u.id }));
      if (!r.ok) {
        checks.usersMissing.push(`${u.username} (${u.id}): ${r.outcome}`);
        break;
      }
      const name = r.value.user?.displayName ?? "";
      if (name !== u.displayName && !u.unknown.includes(name)) {
        checks.usersWrongName.push(`${u.username}: "${name}", acknowledged "${u.displayName}"${u.unknown.length ? ` (or unanswered ${u.unknown.join(", ")})` : ""}`);
        break;
      }
    }
  }
  for (const s of load.sessions.filter((x) => x.state === "revoked")) {
    checks.revokedChecked++;
    for (let i = 0; i < replicas.length; i++) {
      const v = await call("verify revoked", (x) => x.anon.verify.verifyToken({ token: s.access, audience: "" }));
      if (v.ok || v.reason !== "SESSION_REVOKED") checks.revokedAccepted.push(`${s.id}: VerifyToken ${v.ok ? "OK" : v.outcome}`);
    }
    const f = await call("refresh revoked", (x) => x.anon.refresh.refresh({ refreshToken: s.refresh }));
    if (f.ok || f.reason !== "SESSION_REVOKED") checks.revokedAccepted.push(`${s.id}: Refresh ${f.ok ? "OK" : f.outcome}`);
  }
  for (const s of load.sessions.filter((x) => x.state === "live")) {
    checks.liveChecked++;
    for (let i = 0; i < replicas.length; i++) {
      const v = await call("verify live", (x) => x.anon.verify.verifyToken({ token: s.access, audience: "" }));
      if (!v.ok || v.value.principal?.sessionId !== s.id) checks.liveVerifyRefused.push(`${s.id}: ${v.ok ? `session ${v.value.principal?.sessionId}` : v.outcome}`);
    }
    const f = await call("refresh live", (x) => x.anon.refresh.refresh({ refreshToken: s.refresh }));
    if (f.ok) {
      s.refresh = f.value.refreshToken;
      s.access = f.value.accessToken;
    } else checks.liveRefreshRefused.push(`${s.id} (after ${s.refreshes} acknowledged rotations): ${f.outcome}`);
  }
  // Every acknowledged live session is listed for its user.
  const byUser = new Map<number, Set<string>>();
  for (const s of load.sessions) if (s.state === "live") (byUser.get(s.user) ?? byUser.set(s.user, new Set()).get(s.user)!).add(s.id);
  for (const [user, ids] of byUser) {
    const listed = new Set<string>();
    const who = await call("getUser by name", (x) => x.admin.users.getUser({ username: `login-${user}` }));
    if (!who.ok) {
      checks.sessionsMissing.push(`login-${user}: GetUser ${who.outcome}`);
      continue;
    }
    let pageToken = "";
    do {
      const page = await call("listSessions", (x) => x.admin.issue.listSessions({ userId: who.value.user!.id, pageSize: 100, pageToken }));
      if (!page.ok) {
        checks.sessionsMissing.push(`login-${user}: ListSessions ${page.outcome}`);
        break;
      }
      for (const s of page.value.sessions) listed.add(s.id);
      pageToken = page.value.nextPageToken;
    } while (pageToken);
    for (const id of ids) if (!listed.has(id)) checks.sessionsMissing.push(`${id} (login-${user}) not listed`);
  }
  // Chains the client gave up on after an unexpected refusal: lost for good only if the held token no longer refreshes.
  for (const s of load.sessions.filter((x) => x.state === "lost")) {
    const f = await call("refresh abandoned", (x) => x.anon.refresh.refresh({ refreshToken: s.refresh }));
    if (f.ok) checks.chainsAbandoned.push(`${s.id}: abandoned after ${s.lostBecause}; its token still refreshes`);
    else checks.chainsLost.push(`${s.id}: ${s.lostBecause}, then ${f.outcome}`);
  }
  return checks;
}

export interface DatabaseChecks {
  sessions: number;
  /** Sessions with no refresh token at all (a login half written). */
  withoutTokens: string[];
  /** Live sessions whose number of unspent refresh tokens is not exactly one (a rotation half written, or two live chains). */
  liveTokensNotOne: string[];
  /** Revoked sessions with more than one unspent token. */
  revokedTokensOverOne: string[];
  /** Acknowledged sessions or users the database does not hold, acknowledged revocations it does not record. */
  acknowledgedMissing: string[];
}

/** Reads the database directly (the current primary): the invariants of sessions and refresh tokens. */
export async function checkDatabase(load: Load, query: (sql: string, params?: unknown[]) => Promise<Record<string, unknown>[]>): Promise<DatabaseChecks> {
  const rows = await query(`
    select s.id, s.revoked_at is not null as revoked, count(r.hash)::int as tokens, count(r.hash) filter (where r.used_at is null)::int as unspent
      from sessions s join tenants t on t.id = s.tenant_id left join refresh_tokens r on r.session_id = s.id
     where t.name = $1 and s.kind = 'user'
     group by s.id, s.revoked_at`, [FAULT_TENANT]);
  const out: DatabaseChecks = { sessions: rows.length, withoutTokens: [], liveTokensNotOne: [], revokedTokensOverOne: [], acknowledgedMissing: [] };
  const inDb = new Map(rows.map((r) => [String(r.id), r]));
  for (const r of rows) {
    if (Number(r.tokens) === 0) out.withoutTokens.push(String(r.id));
    else if (!r.revoked && Number(r.unspent) !== 1) out.liveTokensNotOne.push(`${r.id}: ${r.unspent} unspent of ${r.tokens}`);
    else if (r.revoked && Number(r.unspent) > 1) out.revokedTokensOverOne.push(`${r.id}: ${r.unspent} unspent of ${r.tokens}`);
  }
  for (const s of load.sessions) {
    const row = inDb.get(s.id);
    if (!row) out.acknowledgedMissing.push(`session ${s.id}`);
    else if (s.state === "revoked" && !row.revoked) out.acknowledgedMissing.push(`revocation of ${s.id}`);
  }
  const users = new Set((await query(`select u.id from users u join tenants t on t.id = u.tenant_id where t.name = $1`, [FAULT_TENANT])).map((r) => String(r.id)));
  for (const u of load.users) if (!users.has(u.id)) out.acknowledgedMissing.push(`user ${u.username}`);
  return out;
}

export interface CallSummary {
  total: number;
  ok: number;
  /** Outcomes per operation: { login: { OK: 120, "UNAVAILABLE/DATABASE_UNAVAILABLE": 3 } }. */
  byOp: Record<string, Record<string, number>>;
  /** Failed calls by status. */
  failedByStatus: Record<string, number>;
  /** Failures other than UNAVAILABLE and DEADLINE_EXCEEDED (outside the checks' own calls). */
  otherFailures: Record<string, number>;
  /** The slowest call (ms) and the calls that took longer than the deadline plus 500 ms (a hang). */
  maxCallMs: number;
  overDeadline: number;
}

export function summarize(calls: CallRecord[], deadlineMs: number): CallSummary {
  const s: CallSummary = { total: 0, ok: 0, byOp: {}, failedByStatus: {}, otherFailures: {}, maxCallMs: 0, overDeadline: 0 };
  for (const c of calls) {
    s.total++;
    const op = (s.byOp[c.op] ??= {});
    op[c.outcome] = (op[c.outcome] ?? 0) + 1;
    const ms = c.end - c.start;
    s.maxCallMs = Math.max(s.maxCallMs, Math.round(ms));
    if (ms > deadlineMs + 500) s.overDeadline++;
    if (c.outcome === "OK") {
      s.ok++;
      continue;
    }
    const status = c.outcome.split(/[/:]/)[0]!;
    s.failedByStatus[status] = (s.failedByStatus[status] ?? 0) + 1;
    // Refusals the load expects by design: VerifyToken after a revocation, the checks' refusals of revoked sessions.
    const expected = c.op.startsWith("verify after revoke") || c.op === "check verify revoked" || c.op === "check refresh revoked";
    if (!TRANSIENT.has(status) && !expected) s.otherFailures[`${c.op}: ${c.outcome}`] = (s.otherFailures[`${c.op}: ${c.outcome}`] ?? 0) + 1;
  }
  return s;
}

/** What the clients saw of the outage: the failed calls' span, and per replica when writes answered OK again. */
export interface OutageView {
  failedCalls: number;
  unavailable: number;
  deadlineExceeded: number;
  /** ms after the fault: the start of the first failed call, the end of the last one. */
  firstFailureAtMs?: number;
  /** How long the slowest failed call took (a deadline of 3 s bounds it). */
  slowestFailureMs?: number;
  lastFailureEndMs?: number;
  perReplica: { replica: number; failed: number; lastFailureEndMs?: number; firstOkAfterMs?: number; firstOkWriteAfterMs?: number }[];
  /** From the first failed call's start to the moment every replica answered OK again after its last failure. */
  clientSwitchMs?: number;
}

const WRITES = new Set(["login", "refresh", "refresh (retry)", "revoke", "createUser", "updateUser"]);

export function outageView(calls: CallRecord[], faultAtMs: number, replicas: number): OutageView {
  const load = calls.filter((c) => !c.op.startsWith("check "));
  const failed = load.filter((c) => c.outcome !== "OK" && TRANSIENT.has(c.outcome.split(/[/:]/)[0]!) && c.end >= faultAtMs);
  const view: OutageView = {
    failedCalls: failed.length,
    unavailable: failed.filter((c) => c.outcome.startsWith("UNAVAILABLE")).length,
    deadlineExceeded: failed.filter((c) => c.outcome.startsWith("DEADLINE_EXCEEDED")).length,
    perReplica: [],
  };
  if (failed.length) {
    view.firstFailureAtMs = Math.round(Math.min(...failed.map((c) => c.start)) - faultAtMs);
    view.lastFailureEndMs = Math.round(Math.max(...failed.map((c) => c.end)) - faultAtMs);
    view.slowestFailureMs = Math.round(Math.max(...failed.map((c) => c.end - c.start)));
  }
  let back = -Infinity;
  for (let replica = 0; replica < replicas; replica++) {
    const mine = failed.filter((c) => c.replica === replica);
    const lastFailureEnd = mine.length ? Math.max(...mine.map((c) => c.end)) : undefined;
    const lastFailureStart = mine.length ? Math.max(...mine.map((c) => c.start)) : faultAtMs;
    const after = load.filter((c) => c.replica === replica && c.outcome === "OK" && c.start >= lastFailureStart).sort((a, b) => a.end - b.end);
    const okAfter = after[0];
    const writeAfter = after.find((c) => WRITES.has(c.op));
    view.perReplica.push({
      replica,
      failed: mine.length,
      lastFailureEndMs: lastFailureEnd === undefined ? undefined : Math.round(lastFailureEnd - faultAtMs),
      firstOkAfterMs: okAfter ? Math.round(okAfter.end - faultAtMs) : undefined,
      firstOkWriteAfterMs: writeAfter ? Math.round(writeAfter.end - faultAtMs) : undefined,
    });
    if (writeAfter) back = Math.max(back, writeAfter.end);
  }
  if (failed.length && Number.isFinite(back)) view.clientSwitchMs = Math.round(back - Math.min(...failed.map((c) => c.start)));
  return view;
}
