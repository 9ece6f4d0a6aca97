// Issue 14: soak. The real server (bench/server.ts: `npm start`'s command, or
// BENCH_START) on a throwaway database of the BENCH_PG_URL PostgreSQL
// (BENCH_SOAK_DB=postgres, the default), on PGlite (pglite) or on both (both),
// under sustained mixed load for BENCH_SOAK_SECONDS (default 600) from a
// separate process on loopback: this file with --worker, which drives the
// server through the SDK (@tessera/client's createTesseraClient, 8 channels,
// no retries, so every failed call is counted with its gRPC status and
// ErrorInfo reason).
//
// The load is open-loop at fixed rates (per second, times BENCH_SOAK_SCALE,
// default 1): each kind is started on a schedule whatever the answers take,
// up to a cap in flight; a call that finds the cap reached (or, for refresh
// and logout, no idle session) is skipped and counted as "behind".
//   login        2  IssueToken (password) of one of 32 users; the new session joins the pool
//   refresh    100  RefreshService.Refresh of an idle session of the pool with the refresh
//                   token its previous refresh returned (the rotated chain; no reuse)
//   verify          VerifyToken of every access token a login or refresh returned, once
//                   each (distinct tokens: the signature-cache miss path); the answer
//                   must name the session
//   logout       2  RevokeSession of an idle session with its own access token (while the
//                   pool holds more than 32), then
//   verify-revoked  VerifyToken of that token: must fail UNAUTHENTICATED/SESSION_REVOKED
//   create-user .5  CreateUser (argon2 hash) in tenant bench
//   get-user     5  GetUser by id
//   list-users   2  ListUsers, first page of 50 (three prefixes in turn)
//   update-user  2  UpdateUser display_name
//   grants       1  in turn: UpdateGroup (the group's permissions toggled), AddGroupMembers,
//                   RemoveGroupMembers of one user on group soak-grants
// The admin calls use tenant bench's administrator's session, refreshed every
// minute. Set-up (not timed): tenant bench, 32 users, 64 sessions logged in
// through the API (bench/seed.ts), the group. After the load, every session
// left in the pool is refreshed once more (a lost session is an error).
//
// Every 10 s the parent prints (stderr) and keeps: per kind the calls
// completed OK per second and their p50/p99 latency (ms, nearest rank, from
// the call to its answer), errors, calls behind; the server's RSS (VmRSS from
// /proc, sampled every 150-250 ms; RssAnon and RssFile beside it); CPU (cores
// busy) of the server, of the PostgreSQL cluster (postmaster and backends of
// the BENCH_PG_URL server), of the worker, and of every other process of the
// machine (/proc/stat's busy time minus those). At the end of the load the
// server's RSS is split by kind of mapping (/proc/<pid>/smaps: the node
// binary, malloc's main and thread arenas, other anonymous memory). With
// BENCH_SOAK_HEAP=1 (or a path prefix, to keep the samples as
// <prefix>.<database>.jsonl) the server also runs the preload
// bench/soak-heap.mjs (NODE_OPTIONS=--import): each line then shows its
// JavaScript heap (used / committed) and external memory, and the end its V8
// heap spaces.
//
// At the end: RSS after warm-up (the median of the samples of the 10 s after
// the first 30 s of load; after half the run when it is shorter than 60 s)
// and at the end (the median of the last 10 s), the highest sample after
// warm-up, the least-squares slope of RSS over the samples after warm-up
// (MB/min), the peak (VmHWM), RSS 10 s after the load stopped, and on
// PostgreSQL the verdict against the target "RSS after warm-up under 200 MB
// and not growing over the run": met when RSS after warm-up and at the end
// are under 200 MB, the slope is at most 1 MB/min, and no call failed and no
// session was lost. The slope of the second half of the samples after warm-up
// is reported beside it. Ten minutes by default: RSS moves in steps of 1-4 MB
// (V8 pages, malloc's main arena, which glibc.malloc.hugetlb=1 backs with 2 MB
// pages), one or two of them in the first minutes, and a line fitted through
// the 150 s of a 3-minute run made 0.55 to 3.05 MB/min of them in runs of the
// same command; over ten minutes a plateau's slope falls while a leak's stays
// (bench/RESULTS.md, session 27).
import { fork, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ClientError, createTesseraClient, Metadata, Status, TesseraClientError, type TesseraClient } from "@tessera/client";
import pg from "pg";
import { PG_ADMIN_URL, serverVersion, throwawayDatabase } from "./pg.ts";
import { cpuSeconds, rssMb } from "./proc.ts";
import { BENCH_TENANT, seedSessions, userName, userPassword } from "./seed.ts";
import { median, round, startCommand, startServer } from "./server.ts";

const KINDS = ["login", "refresh", "verify", "logout", "verify-revoked", "create-user", "get-user", "list-users", "update-user", "grants"] as const;
type Kind = (typeof KINDS)[number];
/** Scheduled kinds and their rates per second (verify and verify-revoked follow the calls that make their tokens). */
const RATES: Partial<Record<Kind, number>> = { login: 2, refresh: 100, logout: 2, "create-user": 0.5, "get-user": 5, "list-users": 2, "update-user": 2, grants: 1 };
/**
 * At most 208 calls in flight over CHANNELS connections (26 each), well below the server's
 * TESSERA_GRPC_MAX_CONCURRENT_STREAMS (100) per connection. (With 4 connections and up to 128
 * calls each, a very busy server refused some with RESOURCE_EXHAUSTED, HTTP/2 ENHANCE_YOUR_CALM.)
 */
const MAX_IN_FLIGHT: Record<Kind, number> = { login: 8, refresh: 64, verify: 64, logout: 8, "verify-revoked": 16, "create-user": 4, "get-user": 16, "list-users": 8, "update-user": 16, grants: 4 };
const SESSIONS = 64;
const USERS = 32;
/** Logouts wait while the pool holds this many sessions or fewer. */
const MIN_POOL = 32;
const TICK_S = 10;
const TARGET_MB = 200;
const SLOPE_LIMIT = 1; // MB/min
const CHANNELS = 8;
const GROUP = "soak-grants";

// ---------------------------------------------------------------- messages

export interface KindInterval {
  ok: number;
  errors: number;
  behind: number;
  p50: number;
  p99: number;
  max: number;
}
type IntervalStats = { kinds: Record<Kind, KindInterval>; pool: number; users: number };
type FinalStats = {
  kinds: Record<Kind, KindInterval & { seconds: number }>;
  errors: Record<string, number>;
  lost: number;
  finalChecked: number;
  totalCalls: number;
  totalErrors: number;
  totalBehind: number;
};
type ToWorker = { type: "setup"; port: number; scale: number } | { type: "start" } | { type: "tick"; measured: boolean } | { type: "stop" };
type FromWorker =
  | { type: "ready"; sessions: number; users: number; setupSeconds: number }
  | { type: "interval"; stats: IntervalStats }
  | { type: "done"; stats: FinalStats }
  | { type: "error"; error: string };

// ---------------------------------------------------------------- statistics

function percentile(sorted: ArrayLike<number>, p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

function summarise(latencies: number[], ok: number, errors: number, behind: number): KindInterval {
  const sorted = Float64Array.from(latencies).sort();
  return { ok, errors, behind, p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), max: sorted.length ? sorted[sorted.length - 1]! : NaN };
}

/** Least-squares slope of (t seconds, MB) in MB per minute. */
function slopePerMinute(points: { t: number; mb: number }[]): number {
  if (points.length < 2) return NaN;
  const n = points.length;
  const mt = points.reduce((a, p) => a + p.t, 0) / n;
  const mm = points.reduce((a, p) => a + p.mb, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.t - mt) * (p.mb - mm);
    den += (p.t - mt) ** 2;
  }
  return (num / den) * 60;
}

// ---------------------------------------------------------------- the worker: the load

function describe(error: unknown): string {
  if (error instanceof TesseraClientError) return `${error.status}${error.reason ? `/${error.reason}` : ""}: ${error.details}`;
  if (error instanceof ClientError) return `${Status[error.code] ?? error.code}: ${error.details}`;
  return error instanceof Error ? error.message : String(error);
}

interface PoolSession {
  sessionId: string;
  refreshToken: string;
  accessToken: string;
}

class Recorder {
  latencies = KINDS.map(() => [] as number[]);
  ok = KINDS.map(() => 0);
  errors = KINDS.map(() => 0);
  behind = KINDS.map(() => 0);
  readonly measured = KINDS.map(() => ({ latencies: [] as number[], ok: 0, errors: 0, behind: 0, seconds: 0 }));
  readonly errorKinds = new Map<string, number>();
  totalCalls = 0;
  totalErrors = 0;
  totalBehind = 0;

  done(kind: Kind, ms: number) {
    const k = KINDS.indexOf(kind);
    this.latencies[k]!.push(ms);
    this.ok[k]!++;
    this.totalCalls++;
  }
  fail(kind: Kind, what: string) {
    const k = KINDS.indexOf(kind);
    this.errors[k]!++;
    this.totalCalls++;
    this.totalErrors++;
    const key = `${kind}: ${what.slice(0, 160)}`;
    this.errorKinds.set(key, (this.errorKinds.get(key) ?? 0) + 1);
  }
  skip(kind: Kind) {
    this.behind[KINDS.indexOf(kind)]!++;
    this.totalBehind++;
  }
  /** The interval's figures; when `measured`, its calls also count in the final ones. */
  interval(measured: boolean, seconds: number): Record<Kind, KindInterval> {
    const out = {} as Record<Kind, KindInterval>;
    KINDS.forEach((kind, k) => {
      out[kind] = summarise(this.latencies[k]!, this.ok[k]!, this.errors[k]!, this.behind[k]!);
      if (measured) {
        const m = this.measured[k]!;
        for (const v of this.latencies[k]!) m.latencies.push(v);
        m.ok += this.ok[k]!;
        m.errors += this.errors[k]!;
        m.behind += this.behind[k]!;
        m.seconds += seconds;
      }
    });
    this.latencies = KINDS.map(() => []);
    this.ok = KINDS.map(() => 0);
    this.errors = KINDS.map(() => 0);
    this.behind = KINDS.map(() => 0);
    return out;
  }
}

class Soak {
  readonly #clients: TesseraClient[];
  #next = 0;
  readonly rec = new Recorder();
  /** Sessions with no call in flight, oldest first. */
  readonly idle: PoolSession[] = [];
  live = 0;
  readonly inFlight = KINDS.map(() => 0);
  readonly #running = new Set<Promise<void>>();
  userIds: string[] = [];
  members = new Set<string>();
  groupId = "";
  groupToggle = false;
  adminAccess = "";
  adminRefresh = "";
  #loginUser = 0;
  #created = 0;
  #counter = 0;

  readonly scale: number;

  constructor(port: number, scale: number) {
    this.scale = scale;
    this.#clients = Array.from({ length: CHANNELS }, () => createTesseraClient(`127.0.0.1:${port}`, { retry: false }));
  }

  get client(): TesseraClient {
    return this.#clients[this.#next++ % this.#clients.length]!;
  }
  get admin() {
    return { metadata: Metadata({ authorization: `Bearer ${this.adminAccess}` }) };
  }

  async setup(port: number): Promise<{ sessions: number; users: number }> {
    const seeded = await seedSessions(port, SESSIONS, USERS);
    for (const s of seeded.sessions) this.idle.push({ sessionId: s.sessionId, refreshToken: s.refreshToken, accessToken: s.accessToken });
    this.live = this.idle.length;
    const admin = await this.client.issue.issueToken({ credential: { $case: "password", value: { tenant: BENCH_TENANT, username: "bench-admin", password: "bench-admin-long-password" } } });
    this.adminAccess = admin.accessToken;
    this.adminRefresh = admin.refreshToken;
    const users = await this.client.users.listUsers({ pageSize: 1000 }, this.admin);
    this.userIds = users.users.filter((u) => u.username.startsWith("bench-user-")).map((u) => u.id);
    const existing = await this.client.permissions.listGroups({ pageSize: 1000 }, this.admin);
    const group =
      existing.groups.find((g) => g.name === GROUP) ??
      (await this.client.permissions.createGroup({ group: { name: GROUP, description: "soak: grant changes", permissions: ["soak.items.retrieve"] } }, this.admin)).group!;
    this.groupId = group.id;
    const half = this.userIds.slice(0, this.userIds.length / 2);
    await this.client.permissions.addGroupMembers({ groupId: this.groupId, userIds: half }, this.admin);
    this.members = new Set(half);
    return { sessions: this.idle.length, users: this.userIds.length };
  }

  #track(kind: Kind, call: () => Promise<void>): void {
    const k = KINDS.indexOf(kind);
    this.inFlight[k]!++;
    const started = performance.now();
    const p = call().then(
      () => this.rec.done(kind, performance.now() - started),
      (error: unknown) => this.rec.fail(kind, describe(error)),
    );
    const tracked = p.finally(() => {
      this.inFlight[k]!--;
      this.#running.delete(tracked);
    });
    this.#running.add(tracked);
  }

  /** Starts one call of `kind`; false when it cannot start now (cap reached, no idle session). */
  launch(kind: Kind): boolean {
    if (this.inFlight[KINDS.indexOf(kind)]! >= MAX_IN_FLIGHT[kind]) return false;
    switch (kind) {
      case "refresh": {
        const s = this.idle.shift();
        if (!s) return false;
        this.#track("refresh", async () => {
          try {
            const r = await this.client.refresh.refresh({ refreshToken: s.refreshToken });
            if (!r.refreshToken || !r.accessToken) throw new Error("refresh answered without tokens");
            s.refreshToken = r.refreshToken;
            s.accessToken = r.accessToken;
          } catch (error) {
            this.live--; // the chain is broken: an honest client would be logged out
            throw error;
          }
          this.idle.push(s);
          this.verify(s.accessToken, s.sessionId);
        });
        return true;
      }
      case "login": {
        const i = this.#loginUser++ % USERS;
        this.#track("login", async () => {
          const r = await this.client.issue.issueToken({ credential: { $case: "password", value: { tenant: BENCH_TENANT, username: userName(i), password: userPassword(i) } } });
          const s = { sessionId: r.sessionId, refreshToken: r.refreshToken, accessToken: r.accessToken };
          this.idle.push(s);
          this.live++;
          this.verify(s.accessToken, s.sessionId);
        });
        return true;
      }
      case "logout": {
        if (this.idle.length <= MIN_POOL) return false;
        const s = this.idle.shift()!;
        this.live--;
        this.#track("logout", async () => {
          await this.client.issue.revokeSession({ sessionId: "" }, { metadata: Metadata({ authorization: `Bearer ${s.accessToken}` }) });
          this.verifyRevoked(s.accessToken);
        });
        return true;
      }
      case "create-user": {
        const n = this.#created++;
        this.#track("create-user", async () => {
          const r = await this.client.users.createUser({ user: { username: `soak-${process.pid}-${n}`, displayName: `Soak ${n}` }, password: `soak-user-${n}-long-password` }, this.admin);
          if (!r.user?.id) throw new Error("CreateUser answered without a user");
          this.userIds.push(r.user.id);
        });
        return true;
      }
      case "get-user": {
        const id = this.#pickUser();
        this.#track("get-user", async () => {
          const r = await this.client.users.getUser({ id }, this.admin);
          if (r.user?.id !== id) throw new Error("GetUser answered another user");
        });
        return true;
      }
      case "list-users": {
        const prefix = ["", "bench-user-0", "soak-"][this.#counter++ % 3]!;
        this.#track("list-users", async () => {
          const r = await this.client.users.listUsers({ pageSize: 50, usernamePrefix: prefix }, this.admin);
          if (prefix !== "soak-" && !r.users.length) throw new Error(`ListUsers "${prefix}" answered no user`);
        });
        return true;
      }
      case "update-user": {
        const id = this.#pickUser();
        const name = `Soak display ${this.#counter++}`;
        this.#track("update-user", async () => {
          const r = await this.client.users.updateUser({ user: { id, displayName: name }, updateMask: ["display_name"] }, this.admin);
          if (r.user?.displayName !== name) throw new Error("UpdateUser did not apply");
        });
        return true;
      }
      case "grants": {
        const step = this.#counter++ % 3;
        if (step === 0) {
          this.groupToggle = !this.groupToggle;
          const permissions = this.groupToggle ? ["soak.items.retrieve", "soak.items.update"] : ["soak.items.retrieve"];
          this.#track("grants", async () => {
            await this.client.permissions.updateGroup({ group: { id: this.groupId, permissions }, updateMask: ["permissions"] }, this.admin);
          });
        } else {
          const add = step === 1;
          const candidates = this.userIds.filter((id) => this.members.has(id) !== add);
          const id = candidates[Math.floor(Math.random() * candidates.length)];
          if (!id) return false;
          if (add) this.members.add(id);
          else this.members.delete(id);
          this.#track("grants", async () => {
            if (add) await this.client.permissions.addGroupMembers({ groupId: this.groupId, userIds: [id] }, this.admin);
            else await this.client.permissions.removeGroupMembers({ groupId: this.groupId, userIds: [id] }, this.admin);
          });
        }
        return true;
      }
      default:
        throw new Error(`${kind} is not scheduled`);
    }
  }

  #pickUser(): string {
    return this.userIds[Math.floor(Math.random() * this.userIds.length)]!;
  }

  verify(token: string, sessionId: string): void {
    if (this.inFlight[KINDS.indexOf("verify")]! >= MAX_IN_FLIGHT.verify) return this.rec.skip("verify");
    this.#track("verify", async () => {
      const r = await this.client.verify.verifyToken({ token });
      if (r.principal?.sessionId !== sessionId) throw new Error(`VerifyToken answered session ${r.principal?.sessionId}, not ${sessionId}`);
    });
  }

  verifyRevoked(token: string): void {
    if (this.inFlight[KINDS.indexOf("verify-revoked")]! >= MAX_IN_FLIGHT["verify-revoked"]) return this.rec.skip("verify-revoked");
    this.#track("verify-revoked", async () => {
      try {
        await this.client.verify.verifyToken({ token });
      } catch (error) {
        if (error instanceof TesseraClientError && error.code === Status.UNAUTHENTICATED && error.reason === "SESSION_REVOKED") return;
        throw error;
      }
      throw new Error("the token of a revoked session still verifies");
    });
  }

  async refreshAdmin(): Promise<void> {
    try {
      const r = await this.client.refresh.refresh({ refreshToken: this.adminRefresh });
      this.adminAccess = r.accessToken;
      this.adminRefresh = r.refreshToken;
    } catch (error) {
      this.rec.fail("refresh", `the administrator's session: ${describe(error)}`);
    }
  }

  async drain(): Promise<void> {
    while (this.#running.size) await Promise.allSettled([...this.#running]);
  }

  /** Every session left in the pool refreshes once more; the ones that do not are lost. */
  async finalCheck(): Promise<{ lost: number; checked: number }> {
    let lost = this.live - this.idle.length; // dropped from the pool by a failed refresh
    const sessions = this.idle.splice(0);
    await Promise.all(
      sessions.map((s) =>
        this.client.refresh.refresh({ refreshToken: s.refreshToken }).then(
          () => undefined,
          (error: unknown) => {
            lost++;
            this.rec.fail("refresh", `final check: ${describe(error)}`);
          },
        ),
      ),
    );
    return { lost, checked: sessions.length };
  }

  close() {
    for (const c of this.#clients) c.close();
  }
}

async function workerMain(): Promise<void> {
  let soak: Soak | undefined;
  let scheduler: NodeJS.Timeout | undefined;
  let adminTimer: NodeJS.Timeout | undefined;
  let lastTick = 0;
  const send = (m: FromWorker) => process.send!(m);
  process.on("message", (m: ToWorker) => {
    void (async () => {
      switch (m.type) {
        case "setup": {
          const started = performance.now();
          soak = new Soak(m.port, m.scale);
          const { sessions, users } = await soak.setup(m.port);
          send({ type: "ready", sessions, users, setupSeconds: (performance.now() - started) / 1000 });
          return;
        }
        case "start": {
          const s = soak!;
          const rates = Object.entries(RATES).map(([kind, rate]) => ({ kind: kind as Kind, rate: rate! * s.scale, issued: 0 }));
          const t0 = performance.now();
          lastTick = t0;
          scheduler = setInterval(() => {
            const elapsed = (performance.now() - t0) / 1000;
            for (const r of rates) {
              const due = Math.floor(r.rate * elapsed) - r.issued;
              for (let i = 0; i < due; i++) {
                r.issued++;
                if (!s.launch(r.kind)) s.rec.skip(r.kind);
              }
            }
          }, 5);
          adminTimer = setInterval(() => void s.refreshAdmin(), 60_000);
          return;
        }
        case "tick": {
          const now = performance.now();
          const stats: IntervalStats = { kinds: soak!.rec.interval(m.measured, (now - lastTick) / 1000), pool: soak!.idle.length, users: soak!.userIds.length };
          lastTick = now;
          send({ type: "interval", stats });
          return;
        }
        case "stop": {
          const s = soak!;
          clearInterval(scheduler);
          clearInterval(adminTimer);
          await s.drain();
          // Calls that ended after the last tick (at most the drain's) are left out of the figures but not of the errors.
          s.rec.interval(false, 0);
          const { lost, checked } = await s.finalCheck();
          const kinds = {} as FinalStats["kinds"];
          KINDS.forEach((kind, k) => {
            const mk = s.rec.measured[k]!;
            kinds[kind] = { ...summarise(mk.latencies, mk.ok, mk.errors, mk.behind), seconds: mk.seconds };
          });
          s.close();
          send({
            type: "done",
            stats: { kinds, errors: Object.fromEntries(s.rec.errorKinds), lost, finalChecked: checked, totalCalls: s.rec.totalCalls, totalErrors: s.rec.totalErrors, totalBehind: s.rec.totalBehind },
          });
          return;
        }
      }
    })().catch((error: Error) => send({ type: "error", error: error.stack ?? String(error) }));
  });
}

if (process.argv[2] === "--worker") void workerMain();

// ---------------------------------------------------------------- the parent: server, /proc, report

class Worker {
  readonly child: ChildProcess;
  readonly #queue: FromWorker[] = [];
  #waiter: ((m: FromWorker) => void) | undefined;
  #failed: Error | undefined;

  constructor() {
    this.child = fork(new URL(import.meta.url).pathname, ["--worker"], {
      execArgv: ["--conditions=tessera-source"],
      serialization: "advanced",
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    this.child.on("message", (m: FromWorker) => this.#deliver(m));
    this.child.on("exit", (code) => {
      this.#failed ??= new Error(`the soak worker exited with ${code}`);
      this.#deliver({ type: "error", error: this.#failed.message });
    });
  }

  #deliver(m: FromWorker) {
    const w = this.#waiter;
    this.#waiter = undefined;
    if (w) w(m);
    else this.#queue.push(m);
  }

  send(m: ToWorker) {
    this.child.send(m);
  }

  async next<T extends FromWorker["type"]>(type: T, timeoutMs = 120_000): Promise<Extract<FromWorker, { type: T }>> {
    const m =
      this.#queue.shift() ??
      (await new Promise<FromWorker>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${type} from the soak worker in ${timeoutMs} ms`)), timeoutMs);
        this.#waiter = (m) => {
          clearTimeout(timer);
          resolve(m);
        };
      }));
    if (m.type === "error") throw new Error(`soak worker: ${m.error}`);
    if (m.type !== type) throw new Error(`soak worker: expected ${type}, got ${m.type}`);
    return m as Extract<FromWorker, { type: T }>;
  }

  stop() {
    if (this.child.exitCode === null) this.child.kill();
  }
}

/** The machine's busy CPU time so far, in seconds of one core (/proc/stat, all CPUs). */
function machineBusy(): number {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  return (f.reduce((a, b) => a + b, 0) - f[3]! - f[4]!) / 100;
}

function statusKb(pid: number, field: string): number {
  try {
    return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}

/** The postmaster of the BENCH_PG_URL server (the parent of one of its backends), found once. */
async function postmasterPid(): Promise<number | undefined> {
  const c = new pg.Client({ connectionString: PG_ADMIN_URL });
  await c.connect();
  try {
    const backend = Number((await c.query("select pg_backend_pid() as pid")).rows[0].pid);
    const stat = readFileSync(`/proc/${backend}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return undefined; // not on this machine
  } finally {
    await c.end();
  }
}

/** CPU seconds of one PostgreSQL cluster: the postmaster with its exited backends (cutime) and its live children. */
function clusterCpu(postmaster: number | undefined): number {
  if (!postmaster) return 0;
  let total = cpuSeconds(postmaster, true);
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === postmaster) total += cpuSeconds(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

interface HeapSample {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  spaces: Record<string, { size: number; used: number; physical: number }>;
}

function lastHeapSample(file: string | undefined, pid: number): HeapSample | undefined {
  if (!file) return undefined;
  try {
    const lines = readFileSync(file, "utf8").trimEnd().split("\n").reverse();
    for (const line of lines) {
      const s = JSON.parse(line) as HeapSample & { pid: number };
      if (s.pid === pid) return s;
    }
  } catch {
    // not written yet
  }
  return undefined;
}

export interface MemoryMap {
  /** The mapped node executable (file-backed, shared with other node processes). */
  nodeBinaryMb: number;
  otherFilesMb: number;
  /** glibc's main arena ([heap], brk). */
  mainArenaMb: number;
  /** glibc's thread arenas: 64 MiB-aligned anonymous heaps (rw-p, then ---p up to 64 MiB), one per thread that malloc'd (libuv's pool: argon2). */
  threadArenasMb: number;
  threadArenas: number;
  /** Every other anonymous mapping: V8's heap pages, thread stacks, mmap'd large allocations. */
  otherAnonMb: number;
}

/** The server's RSS by kind of mapping, from /proc/<pid>/smaps. */
function memoryMap(pid: number): MemoryMap | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/smaps`, "utf8");
  } catch {
    return undefined;
  }
  const maps: { start: number; end: number; perms: string; name: string; rssKb: number }[] = [];
  for (const line of text.split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (m) maps.push({ start: parseInt(m[1]!, 16), end: parseInt(m[2]!, 16), perms: m[3]!, name: m[4]!.trim(), rssKb: 0 });
    else if (line.startsWith("Rss:") && maps.length) maps.at(-1)!.rssKb = Number(/(\d+)/.exec(line)?.[1] ?? 0);
  }
  const out: MemoryMap = { nodeBinaryMb: 0, otherFilesMb: 0, mainArenaMb: 0, threadArenasMb: 0, threadArenas: 0, otherAnonMb: 0 };
  const ARENA = 64 * 2 ** 20;
  maps.forEach((m, i) => {
    const mb = m.rssKb / 1024;
    if (m.name === "[heap]") out.mainArenaMb += mb;
    else if (m.name.startsWith("/")) {
      if (/\/node$/.test(m.name)) out.nodeBinaryMb += mb;
      else out.otherFilesMb += mb;
    } else if (m.name === "" && m.perms === "rw-p" && m.start % ARENA === 0 && (m.end - m.start === ARENA || (maps[i + 1]?.start === m.end && maps[i + 1]!.perms === "---p" && maps[i + 1]!.end === m.start + ARENA))) {
      out.threadArenasMb += mb;
      out.threadArenas++;
    } else out.otherAnonMb += mb;
  });
  return out;
}

export interface SoakInterval {
  /** Seconds of load at the end of the interval. */
  t: number;
  kinds: Record<Kind, KindInterval>;
  seconds: number;
  rssMb: number;
  rssAnonMb: number;
  rssFileMb: number;
  serverCores: number;
  postgresCores: number;
  workerCores: number;
  otherCores: number;
  pool: number;
  users: number;
  memory?: MemoryMap;
  heap?: HeapSample;
}

export interface SoakRun {
  database: "PostgreSQL" | "PGlite";
  command: string;
  serverExe: string;
  seconds: number;
  warmupSeconds: number;
  setupSeconds: number;
  users: number;
  startRssMb: number;
  seededRssMb: number;
  intervals: SoakInterval[];
  samples: { t: number; mb: number }[];
  /** Median of the RSS samples of the 10 s after warm-up. */
  afterWarmupMb: number;
  /** The highest sample after warm-up (an argon2 hash holds 19 MiB while it runs). */
  maxAfterWarmupMb: number;
  /** Median of the RSS samples of the last 10 s of load. */
  endMb: number;
  /** After the final check (the worker's calls drained). */
  afterCheckMb: number;
  peakMb: number;
  afterIdleMb: number;
  slopeMbPerMin: number;
  /** The same over the second half of the samples after warm-up: a plateau's falls, a leak's does not. */
  secondHalfSlopeMbPerMin: number;
  final: FinalStats;
  /** At the end of the load. */
  memory?: MemoryMap;
  /** The last heap sample of the load (BENCH_SOAK_HEAP). */
  heapEnd?: HeapSample;
}

export interface SoakResult {
  postgresVersion?: string;
  scale: number;
  runs: SoakRun[];
}

async function soakOn(database: SoakRun["database"], seconds: number, scale: number, postmaster: number | undefined): Promise<SoakRun> {
  const dir = mkdtempSync(join(tmpdir(), "tessera-bench-soak-"));
  const db = database === "PostgreSQL" ? await throwawayDatabase("soak") : undefined;
  const heapSetting = process.env.BENCH_SOAK_HEAP;
  const heapLog = !heapSetting || heapSetting === "0" ? undefined : heapSetting === "1" ? join(dir, "heap.jsonl") : `${heapSetting}.${database.toLowerCase()}.jsonl`;
  const env: Record<string, string> = db ? { DATABASE_URL: db.url, TESSERA_MASTER_KEY: randomBytes(32).toString("hex") } : { DATABASE_URL: "" };
  if (heapLog) Object.assign(env, { NODE_OPTIONS: `--import=${new URL("./soak-heap.mjs", import.meta.url).pathname}`, BENCH_HEAPLOG: heapLog });
  const warmupSeconds = seconds >= 60 ? 30 : Math.max(TICK_S, Math.floor(seconds / 2 / TICK_S) * TICK_S);
  let worker: Worker | undefined;
  try {
    const server = await startServer(join(dir, "data"), env);
    const pid = server.child.pid!;
    try {
      const serverExe = (() => {
        try {
          return readlinkSync(`/proc/${pid}/exe`);
        } catch {
          return "?";
        }
      })();
      await new Promise((r) => setTimeout(r, 1000));
      const startRssMb = rssMb(pid);
      worker = new Worker();
      worker.send({ type: "setup", port: server.grpcPort, scale });
      const ready = await worker.next("ready");
      await new Promise((r) => setTimeout(r, 1000));
      const seededRssMb = rssMb(pid);
      const label = `soak ${database}`;
      process.stderr.write(`${label}: server ${serverExe} (${startCommand()}); RSS after start ${round(startRssMb)} MB, after set-up ${round(seededRssMb)} MB; ${seconds} s of load, warm-up ${warmupSeconds} s\n`);
      process.stderr.write(`${label}: ${header()}\n`);

      const samples: { t: number; mb: number }[] = [];
      const intervals: SoakInterval[] = [];
      const snap = () => ({ at: performance.now(), server: cpuSeconds(pid), pg: clusterCpu(database === "PostgreSQL" ? postmaster : undefined), worker: cpuSeconds(worker!.child.pid!), machine: machineBusy() });
      let prev = snap();
      const t0 = performance.now();
      worker.send({ type: "start" });
      // Every 150-250 ms at random: a fixed period would lock onto the schedule's phase (logins start at
      // multiples of 500 ms, and each argon2 hash maps 19 MiB for its ~30 ms) and see that memory always or never.
      let sampler: NodeJS.Timeout | undefined;
      const sample = () => {
        samples.push({ t: (performance.now() - t0) / 1000, mb: rssMb(pid) });
        sampler = setTimeout(sample, 150 + Math.random() * 100);
      };
      sample();
      try {
        for (let tick = 1; tick * TICK_S <= seconds; tick++) {
          await new Promise((r) => setTimeout(r, t0 + tick * TICK_S * 1000 - performance.now()));
          const now = snap();
          const t = tick * TICK_S;
          worker.send({ type: "tick", measured: t > warmupSeconds });
          const { stats } = await worker.next("interval");
          const wall = (now.at - prev.at) / 1000;
          const own = now.server - prev.server + (now.pg - prev.pg) + (now.worker - prev.worker);
          const interval: SoakInterval = {
            t,
            kinds: stats.kinds,
            seconds: wall,
            rssMb: rssMb(pid),
            rssAnonMb: statusKb(pid, "RssAnon"),
            rssFileMb: statusKb(pid, "RssFile"),
            serverCores: (now.server - prev.server) / wall,
            postgresCores: (now.pg - prev.pg) / wall,
            workerCores: (now.worker - prev.worker) / wall,
            otherCores: Math.max(0, (now.machine - prev.machine - own) / wall),
            pool: stats.pool,
            users: stats.users,
            memory: memoryMap(pid),
            heap: lastHeapSample(heapLog, pid),
          };
          intervals.push(interval);
          prev = now;
          process.stderr.write(`${label}: ${intervalLine(interval)}\n`);
        }
      } finally {
        clearTimeout(sampler);
      }
      const memory = memoryMap(pid);
      const heapEnd = lastHeapSample(heapLog, pid);
      worker.send({ type: "stop" });
      const { stats: final } = await worker.next("done");
      const endMb = rssMb(pid);
      await new Promise((r) => setTimeout(r, 10_000));
      const afterIdleMb = rssMb(pid);
      const afterWarmup = samples.filter((s) => s.t >= warmupSeconds);
      if (process.env.BENCH_SOAK_SAMPLES) writeFileSync(`${process.env.BENCH_SOAK_SAMPLES}.${database.toLowerCase()}.json`, JSON.stringify(samples));
      // One sample can land on a hash or a GC's peak: the figures are medians of the 10 s after warm-up and the last 10 s of load.
      const windowMedian = (from: number, to: number) => median(samples.filter((s) => s.t >= from && s.t < to).map((s) => s.mb));
      return {
        database,
        command: startCommand(),
        serverExe,
        seconds,
        warmupSeconds,
        setupSeconds: ready.setupSeconds,
        users: ready.users,
        startRssMb,
        seededRssMb,
        intervals,
        samples,
        afterWarmupMb: windowMedian(warmupSeconds, warmupSeconds + TICK_S),
        maxAfterWarmupMb: Math.max(...afterWarmup.map((s) => s.mb)),
        endMb: windowMedian(seconds - TICK_S, seconds + 1),
        afterCheckMb: endMb,
        peakMb: statusKb(pid, "VmHWM"),
        afterIdleMb,
        slopeMbPerMin: slopePerMinute(afterWarmup),
        secondHalfSlopeMbPerMin: slopePerMinute(afterWarmup.filter((x) => x.t >= (warmupSeconds + seconds) / 2)),
        final,
        memory,
        heapEnd,
      };
    } finally {
      worker?.stop();
      await server.stop();
    }
  } finally {
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchSoak(seconds = Number(process.env.BENCH_SOAK_SECONDS ?? 600)): Promise<SoakResult> {
  const which = process.env.BENCH_SOAK_DB ?? "postgres";
  if (!["postgres", "pglite", "both"].includes(which)) throw new Error(`BENCH_SOAK_DB must be postgres, pglite or both, not ${which}`);
  const scale = Number(process.env.BENCH_SOAK_SCALE ?? 1);
  if (!(scale > 0)) throw new Error("BENCH_SOAK_SCALE must be a positive number");
  if (!(seconds >= TICK_S)) throw new Error(`BENCH_SOAK_SECONDS must be at least ${TICK_S}`);
  seconds = Math.floor(seconds / TICK_S) * TICK_S;
  const runs: SoakRun[] = [];
  let postgresVersion: string | undefined;
  if (which !== "pglite") {
    postgresVersion = await serverVersion();
    runs.push(await soakOn("PostgreSQL", seconds, scale, await postmasterPid()));
  }
  if (which !== "postgres") runs.push(await soakOn("PGlite", seconds, scale, undefined));
  return { postgresVersion, scale, runs };
}

// ---------------------------------------------------------------- report

const SHOWN: Kind[] = ["refresh", "verify", "login", "logout", "verify-revoked", "create-user", "get-user", "list-users", "update-user", "grants"];
const SHORT: Record<Kind, string> = {
  login: "login",
  refresh: "refresh",
  verify: "verify",
  logout: "logout",
  "verify-revoked": "verify-rev",
  "create-user": "create-user",
  "get-user": "get-user",
  "list-users": "list-users",
  "update-user": "update-user",
  grants: "grants",
};
const cellWidth = (k: Kind) => (k === "refresh" || k === "verify" ? 17 : 14);
const fmt = (v: number) => (Number.isNaN(v) ? "-" : v < 10 ? v.toFixed(1) : String(Math.round(v)));
const rate = (v: number) => (v < 10 ? v.toFixed(1) : String(Math.round(v)));

function header(): string {
  return [
    "    t",
    "RSS MB (anon/file)".padEnd(20),
    "cores: srv   pg  gen  other",
    ...SHOWN.map((k) => SHORT[k].padEnd(cellWidth(k))),
    "errors behind pool",
    "malloc main/thr",
    "heap used/total ext MB",
  ].join(" ");
}

function intervalLine(i: SoakInterval): string {
  const errors = SHOWN.reduce((a, k) => a + i.kinds[k].errors, 0);
  const behind = SHOWN.reduce((a, k) => a + i.kinds[k].behind, 0);
  const mb = (b: number) => (b / 2 ** 20).toFixed(0);
  return [
    String(i.t).padStart(5),
    `${i.rssMb.toFixed(1)} (${i.rssAnonMb.toFixed(0)}/${i.rssFileMb.toFixed(0)})`.padEnd(20),
    `      ${i.serverCores.toFixed(2)} ${i.postgresCores.toFixed(2)} ${i.workerCores.toFixed(2)} ${i.otherCores.toFixed(2)}`.padEnd(26),
    ...SHOWN.map((k) => `${rate(i.kinds[k].ok / i.seconds)} ${fmt(i.kinds[k].p50)}/${fmt(i.kinds[k].p99)}`.padEnd(cellWidth(k))),
    `${String(errors).padStart(6)} ${String(behind).padStart(6)} ${String(i.pool).padStart(4)}`,
    (i.memory ? `${i.memory.mainArenaMb.toFixed(0)}/${i.memory.threadArenasMb.toFixed(0)}` : "").padEnd(15),
    i.heap ? `${mb(i.heap.heapUsed)}/${mb(i.heap.heapTotal)} ${mb(i.heap.external)}` : "",
  ].join(" ");
}

function verdict(r: SoakRun): { met: boolean; why: string[] } {
  const why: string[] = [];
  if (!(r.afterWarmupMb < TARGET_MB)) why.push(`RSS after warm-up ${round(r.afterWarmupMb)} MB ≥ ${TARGET_MB} MB`);
  if (!(r.endMb < TARGET_MB)) why.push(`RSS at the end ${round(r.endMb)} MB ≥ ${TARGET_MB} MB`);
  if (!(r.slopeMbPerMin <= SLOPE_LIMIT)) why.push(`growing ${round(r.slopeMbPerMin, 2)} MB/min > ${SLOPE_LIMIT} MB/min`);
  if (r.final.totalErrors) why.push(`${r.final.totalErrors} failed calls`);
  if (r.final.lost) why.push(`${r.final.lost} sessions lost`);
  return { met: why.length === 0, why };
}

function reportRun(r: SoakRun, scale: number): string {
  const measuredSeconds = r.seconds - r.warmupSeconds;
  const lines: string[] = [];
  lines.push(`### ${r.database}: ${r.seconds} s of load after ${round(r.setupSeconds)} s of set-up (${SESSIONS} sessions of ${USERS} users); warm-up ${r.warmupSeconds} s`);
  lines.push(`server: ${r.command} (${r.serverExe})`);
  lines.push(`scheduled rates per second (BENCH_SOAK_SCALE ${scale}): ${Object.entries(RATES).map(([k, v]) => `${k} ${round(v! * scale, 1)}`).join(", ")}; verify = one per login or refresh, verify-revoked = one per logout`);
  lines.push("");
  lines.push("```");
  lines.push(`${header()}`);
  for (const i of r.intervals) lines.push(intervalLine(i));
  lines.push("```");
  lines.push("(per kind: calls answered OK per second, p50/p99 ms; CPU in cores busy: server, PostgreSQL cluster, generator, every other process; malloc: RSS of glibc's main arena and of its thread arenas)");
  lines.push("");
  const avg = (f: (i: SoakInterval) => number) => {
    const measured = r.intervals.filter((i) => i.t > r.warmupSeconds);
    return measured.reduce((a, i) => a + f(i), 0) / Math.max(1, measured.length);
  };
  lines.push(`after warm-up (${measuredSeconds} s), per kind: OK/s, p50 / p99 / max ms, errors, behind:`);
  for (const k of SHOWN) {
    const s = r.final.kinds[k];
    lines.push(`  ${k.padEnd(15)} ${rate(s.ok / Math.max(1, s.seconds)).padStart(6)}/s  ${fmt(s.p50).padStart(5)} / ${fmt(s.p99).padStart(5)} / ${fmt(s.max).padStart(5)} ms  errors ${s.errors}  behind ${s.behind}`);
  }
  const measured = r.intervals.filter((i) => i.t > r.warmupSeconds);
  const serverCpu = measured.reduce((a, i) => a + i.serverCores * i.seconds, 0);
  const okCalls = measured.reduce((a, i) => a + SHOWN.reduce((b, k) => b + i.kinds[k].ok, 0), 0);
  lines.push(
    `CPU after warm-up (cores busy, mean of the intervals): server ${avg((i) => i.serverCores).toFixed(2)}, PostgreSQL ${avg((i) => i.postgresCores).toFixed(2)}, generator ${avg((i) => i.workerCores).toFixed(2)}, other processes ${avg((i) => i.otherCores).toFixed(2)}; server CPU per call answered ${okCalls ? ((serverCpu / okCalls) * 1000).toFixed(2) : "-"} ms`,
  );
  lines.push(`calls: ${r.final.totalCalls}, failed ${r.final.totalErrors} (warm-up and final check included), behind schedule ${r.final.totalBehind}; sessions lost ${r.final.lost} (${r.final.finalChecked} refreshed once more after the load); users ${r.users} at the start, ${r.intervals.at(-1)?.users ?? "?"} at the end`);
  for (const [what, n] of Object.entries(r.final.errors).slice(0, 8)) lines.push(`  ${n} × ${what}`);
  lines.push(
    `server RSS: after start ${round(r.startRssMb)} MB, after set-up ${round(r.seededRssMb)} MB, after warm-up ${round(r.afterWarmupMb)} MB, at the end ${round(r.endMb)} MB (medians of the samples of 10 s, one every 150-250 ms), highest after warm-up ${round(r.maxAfterWarmupMb)} MB, peak (VmHWM, set-up included) ${round(r.peakMb)} MB, after the final check ${round(r.afterCheckMb)} MB, 10 s later ${round(r.afterIdleMb)} MB; slope after warm-up ${round(r.slopeMbPerMin, 2)} MB/min (over its second half ${round(r.secondHalfSlopeMbPerMin, 2)} MB/min)`,
  );
  if (r.memory) {
    const m = r.memory;
    lines.push(
      `RSS by mapping at the end of the load (/proc/<pid>/smaps): node binary ${round(m.nodeBinaryMb)} MB, other files ${round(m.otherFilesMb)} MB, malloc main arena ${round(m.mainArenaMb)} MB, malloc thread arenas ${round(m.threadArenasMb)} MB (${m.threadArenas}), other anonymous ${round(m.otherAnonMb)} MB`,
    );
  }
  if (r.heapEnd) {
    const h = r.heapEnd;
    const mb = (b: number) => round(b / 2 ** 20);
    const physical = Object.values(h.spaces).reduce((a, sp) => a + sp.physical, 0);
    const space = (name: string) => h.spaces[name] ?? { size: 0, used: 0, physical: 0 };
    const large = ["large_object_space", "new_large_object_space", "code_large_object_space", "trusted_large_object_space"].reduce((a, n) => a + space(n).physical, 0);
    lines.push(
      `V8 heap at the end of the load: used ${mb(h.heapUsed)} MB of ${mb(h.heapTotal)} MB committed, ${mb(physical)} MB resident (new space ${mb(space("new_space").physical)} of ${mb(space("new_space").size)} MB, used ${mb(space("new_space").used)}; old ${mb(space("old_space").physical)}, used ${mb(space("old_space").used)}; code ${mb(space("code_space").physical)}; large objects ${mb(large)}); external ${mb(h.external)} MB (array buffers ${mb(h.arrayBuffers)})`,
    );
  }
  if (r.database === "PostgreSQL") {
    const v = verdict(r);
    lines.push(`target "RSS after warm-up under ${TARGET_MB} MB on PostgreSQL and not growing over the run" (slope ≤ ${SLOPE_LIMIT} MB/min, no failed call): ${v.met ? "met" : `MISSED (${v.why.join("; ")})`}`);
  }
  return lines.join("\n");
}

export function reportSoak(result: SoakResult): string {
  const head = result.postgresVersion ? `PostgreSQL ${result.postgresVersion} at the BENCH_PG_URL server, throwaway database` : "PGlite only";
  return [head, ...result.runs.map((r) => reportRun(r, result.scale))].join("\n\n");
}
