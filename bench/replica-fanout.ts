// Issue 14: replica fan-out of revocations. Two real Tessera processes
// (replicas A and B, bench/server.ts, `npm start`'s command) share one
// throwaway database on the BENCH_PG_URL PostgreSQL (same DATABASE_URL and
// TESSERA_MASTER_KEY). Revocations are made on A; the bench measures how long
// B takes to act on them, through the public gRPC API only:
//
//   - B's VerifyToken: the revoked session's token was verified on B (so B
//     has its session state cached) just before the revocation; PROBES
//     concurrent probes then call B's VerifyToken for that token in a loop
//     (each waits PROBE_GAP_MS after an answer before its next call) from
//     before the revocation call until an answer reflects it: a refusal
//     (SESSION_REVOKED, USER_DISABLED), or, for a grant change, an answer that
//     no longer lists the removed permission. t1 is the arrival of that answer.
//   - WatchRevocations: one subscriber on A and one on B (streams opened once,
//     with the system administrator's token: the RPC needs
//     identity.revocations.watch in the system tenant), caught up with their
//     backlog before anything is measured; t1 is the arrival of the event the
//     revocation appended (SESSION_REVOKED for its session, USER_REVOKED for
//     its user, GRANTS_CHANGED for its tenant past the stream's cursor at the
//     call).
//
// t0 is the arrival of A's reply to the revocation call. Every time is
// performance.now() in this one process. t1 − t0 may be negative: the commit
// notifies B (LISTEN/NOTIFY) before A has answered (A polls its own feed after
// the commit, then replies).
//
// The revocations (BENCH_REVOCATIONS, default 200, after one unrecorded
// warm-up of each kind) take the five kinds in turn, one at a time, each on a
// session of its own (tenant `bench`, prepared through the API before anything
// is measured):
//   logout          IssueService.RevokeSession by the session itself (empty id)
//   revoke-all      IssueService.RevokeAllSessions of its user, by the tenant admin
//   delete-user     UserService.DeleteUser, by the tenant admin
//   disable-user    UserService.UpdateUser {disabled: true}, mask "disabled"
//   grant-removed   PermissionService.UpdateGroup: one permission taken out of
//                   a group the session's user is in (mask "permissions")
// A revocation not reflected within MISS_MS of t0 on some path is a miss,
// reported (and the bench goes on); an unexpected answer on any probe is
// counted as wrong. After each revocation A's own VerifyToken must reflect
// it too.
//
// Run twice: both replicas with TESSERA_REVOCATION_POLL_INTERVAL unset (the
// default, 500 ms: NOTIFY and polling both), then both at 60s, so that only
// NOTIFY can deliver within MISS_MS.
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { ClientError, createTesseraClient, errorReason, RevocationKind, Status, type TesseraClient, type WatchRevocationsResponse } from "@tessera/client";
import { serverVersion, throwawayDatabase, type ThrowawayDatabase } from "./pg.ts";
import { cpuSeconds } from "./proc.ts";
import { BENCH_TENANT, inBatches, seedSessions, userName } from "./seed.ts";
import { ADMIN_PASSWORD, round, startServer, type RunningServer } from "./server.ts";

const REVOCATIONS = Number(process.env.BENCH_REVOCATIONS ?? 200);
const KINDS = ["logout", "revoke-all", "delete-user", "disable-user", "grant-removed"] as const;
type Kind = (typeof KINDS)[number];
/** Unrecorded revocations of each kind before the measured ones (JIT, first NOTIFY, first stream writes). */
const WARMUP_PER_KIND = 1;
const PROBES = 3;
const PROBE_GAP_MS = 1;
/** A path that has not reflected a revocation this long after A's reply has missed it. */
const MISS_MS = 2_000;
const TARGET_P99_MS = 50;
/** Grant-change revocations per grant user (and group): its tokens elect every permission of the group. */
const GRANTS_PER_USER = 20;
/** Access tokens live 5 min: older ones are refreshed (on A, outside the measurement) before use. */
const TOKEN_MAX_AGE_MS = 240_000;
const BENCH_ADMIN = { username: "bench-admin", password: "bench-admin-long-password" };
const MICROSERVICE = "fanout";
const PASSWORD = "fanout-user-long-password";

const now = () => performance.now();

/** A timer that can be cleared: resolves after `ms` unless cleared first. */
function timer(ms: number): { elapsed: Promise<void>; clear(): void } {
  let handle: NodeJS.Timeout | undefined;
  let done: () => void = () => undefined;
  const elapsed = new Promise<void>((resolve) => ((done = resolve), (handle = setTimeout(resolve, Math.max(0, ms)))));
  return { elapsed, clear: () => (clearTimeout(handle), done()) };
}

/** `work`, or `onTimeout()` if it takes longer than `ms`. */
async function within<T>(ms: number, work: Promise<T>, onTimeout: () => T): Promise<T> {
  const t = timer(ms);
  let late = false;
  try {
    return await Promise.race([work, t.elapsed.then(() => ((late = true), onTimeout()))]);
  } finally {
    if (!late) t.clear();
  }
}

type Path = "bVerify" | "aStream" | "bStream";
const PATHS: Path[] = ["bVerify", "aStream", "bStream"];
const PATH_NAMES: Record<Path, string> = {
  bVerify: "B VerifyToken reflects it",
  aStream: "A WatchRevocations event",
  bStream: "B WatchRevocations event",
};

/** One revocation to make: its kind, its session, and what reflects it. */
interface Target {
  kind: Kind;
  userId: string;
  username: string;
  sessionId: string;
  accessToken: string;
  refreshToken: string;
  tokenAt: number;
  /** grant-removed: the group, the permission taken out, and the group's other permissions left after it. */
  grant?: { groupId: string; permission: string; block: GrantBlock };
}

interface GrantBlock {
  groupId: string;
  /** The group's permissions now (the bench removes them one at a time). */
  permissions: string[];
}

export interface Sample {
  kind: Kind;
  /** Per path: t1 − t0 (ms); undefined when missed. */
  fromReply: Record<Path, number | undefined>;
  /** The revocation call's round trip on A (ms). */
  rpcMs: number;
  /** B's reflecting answer: a reason, or "permission gone". */
  answer?: string;
  /** Arrival of the reflecting probe answer − its call (how precisely t1 is known). */
  probeWindowMs?: number;
  probeAnswers: number;
  /** Round trips of the probes that still found the token valid (B's cache hits), ms. */
  staleProbeMs: number[];
  /** A's VerifyToken right after everything: reflects it. */
  aReflects: boolean;
}

export interface FanoutRun {
  pollInterval: string;
  database: string;
  listeners: number;
  samples: Sample[];
  warmup: Sample[];
  wrongAnswers: string[];
  /** Revocations a path missed, with what happened later. */
  misses: { index: number; kind: Kind; path: Path; lateMs?: number }[];
  setupSeconds: number;
  measuredSeconds: number;
  /** Over the measured part, in cores: the whole machine busy, and this bench's share (bench process, A, B, the database's backends). */
  cpu: { machineCores: number; oursCores: number };
  probeCalls: number;
}

export interface ReplicaFanoutResult {
  revocations: number;
  runs: FanoutRun[];
}

// ---------------------------------------------------------------- helpers

/** The machine's busy CPU time so far, in seconds of one core (/proc/stat, all CPUs). */
function machineBusySeconds(): number {
  const fields = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  return (fields.reduce((a, b) => a + b, 0) - fields[3]! - fields[4]!) / 100; // minus idle and iowait
}

/** CPU seconds so far of this process, the replicas and the backends connected to `db` (others' work is the machine's minus this). */
async function benchCpu(db: ThrowawayDatabase, servers: RunningServer[], backends?: number[]): Promise<{ seconds: number; backends: number[] }> {
  const pids = backends ?? (await db.query("select pid from pg_stat_activity where datname = current_database()")).rows.map((r: { pid: number }) => r.pid);
  let seconds = cpuSeconds(process.pid);
  for (const s of servers) seconds += cpuSeconds(s.child.pid!);
  for (const pid of pids) seconds += cpuSeconds(pid);
  return { seconds, backends: pids };
}

function describeError(error: unknown): string {
  if (error instanceof ClientError) return `${Status[error.code]}${errorReason(error) ? ` ${errorReason(error)}` : ""}: ${error.details}`;
  return error instanceof Error ? error.message : String(error);
}

/** A setup call: its grpc-status must be OK (the call throws otherwise), and the failure names the call. */
async function must<T>(what: string, call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (error) {
    throw new Error(`${what} failed: ${describeError(error)}`);
  }
}

/** An access token of a password login, logged in again when it is near its expiry. */
function freshLogin(client: TesseraClient, tenant: string, username: string, password: string): () => Promise<string> {
  let token = "";
  let at = -Infinity;
  return async () => {
    if (now() - at > TOKEN_MAX_AGE_MS) {
      const r = await must(`IssueToken ${username}@${tenant}`, client.issue.issueToken({ credential: { $case: "password", value: { tenant, username, password } } }));
      token = r.accessToken;
      at = now();
    }
    return token;
  };
}

/** Follows one replica's WatchRevocations stream and hands events to whoever waits for them. */
class Subscriber {
  readonly #controller = new AbortController();
  readonly #waiters = new Set<{ match: (e: WatchRevocationsResponse) => boolean; floor: number; resolve: (at: number) => void }>();
  /** Recent events with their arrival, for a waiter that registers after its event arrived. */
  readonly #recent: { event: WatchRevocationsResponse; at: number }[] = [];
  #backlogEnd = -1;
  #caughtUp: () => void = () => undefined;
  readonly name: string;
  readonly ready: Promise<void>;
  lastCursor = 0;
  events = 0;
  failure?: string;
  readonly done: Promise<void>;

  constructor(client: TesseraClient, name: string) {
    this.name = name;
    let failReady: (e: Error) => void = () => undefined;
    this.ready = new Promise<void>((resolve, reject) => ((this.#caughtUp = resolve), (failReady = reject)));
    this.ready.catch(() => undefined); // awaited by the caller; a failure after catching up is reported through `failure`
    this.done = (async () => {
      try {
        const stream = client.verify.watchRevocations(
          { cursor: "" },
          {
            signal: this.#controller.signal,
            onHeader: (header) => {
              this.#backlogEnd = Number(header.get("tessera-backlog-end") ?? "NaN");
              if (!Number.isFinite(this.#backlogEnd)) failReady(new Error(`${name}: no tessera-backlog-end header`));
              else if (this.lastCursor >= this.#backlogEnd) this.#caughtUp();
            },
          },
        );
        for await (const event of stream) {
          const at = now();
          this.events++;
          this.lastCursor = Number(event.cursor);
          this.#recent.push({ event, at });
          if (this.#recent.length > 64) this.#recent.shift();
          for (const w of this.#waiters) {
            if (Number(event.cursor) > w.floor && w.match(event)) {
              this.#waiters.delete(w);
              w.resolve(at);
            }
          }
          if (this.#backlogEnd >= 0 && this.lastCursor >= this.#backlogEnd) this.#caughtUp();
        }
        if (!this.#controller.signal.aborted) this.failure = `${name}: the stream ended`;
      } catch (error) {
        if (!this.#controller.signal.aborted) this.failure = `${name}: the stream failed: ${describeError(error)}`;
        failReady(new Error(this.failure ?? String(error)));
      }
    })();
  }

  /** Resolves with the arrival time of the first event past cursor `floor` that `match`es (already arrived ones included). */
  expect(match: (e: WatchRevocationsResponse) => boolean, floor: number): { arrival: Promise<number>; cancel(): void } {
    const early = this.#recent.find((r) => Number(r.event.cursor) > floor && match(r.event));
    if (early) return { arrival: Promise.resolve(early.at), cancel: () => undefined };
    let waiter!: { match: typeof match; floor: number; resolve: (at: number) => void };
    const arrival = new Promise<number>((resolve) => (waiter = { match, floor, resolve }));
    this.#waiters.add(waiter);
    return { arrival, cancel: () => this.#waiters.delete(waiter) };
  }

  async close(): Promise<void> {
    this.#controller.abort();
    await this.done;
  }
}

type Judgement = { reflects: true; answer: string } | { reflects: false; stale: true } | { reflects: false; stale: false; wrong: string };

/** What an answer of VerifyToken for `t`'s token says about its revocation. */
async function judge(client: TesseraClient, t: Target): Promise<Judgement> {
  try {
    const { principal } = await client.verify.verifyToken({ token: t.accessToken, audience: "" });
    if (principal?.sessionId !== t.sessionId) return { reflects: false, stale: false, wrong: `OK for session ${principal?.sessionId}` };
    if (t.grant) return principal.permissions.includes(t.grant.permission) ? { reflects: false, stale: true } : { reflects: true, answer: "permission gone" };
    return { reflects: false, stale: true };
  } catch (error) {
    const reason = errorReason(error);
    if (reason === "SESSION_REVOKED" || reason === "USER_DISABLED") return { reflects: true, answer: reason };
    return { reflects: false, stale: false, wrong: describeError(error) };
  }
}

// ---------------------------------------------------------------- one run

async function fanout(pollEnv: Record<string, string>): Promise<FanoutRun> {
  const db = await throwawayDatabase("fanout");
  const dirs = [mkdtempSync(join(tmpdir(), "tessera-bench-fanout-a-")), mkdtempSync(join(tmpdir(), "tessera-bench-fanout-b-"))];
  const servers: RunningServer[] = [];
  const subscribers: Subscriber[] = [];
  const clients: TesseraClient[] = [];
  /** Ends the watch for late arrivals of misses. */
  let stopLate = false;
  try {
    const setupStarted = now();
    const env = { DATABASE_URL: db.url, TESSERA_MASTER_KEY: randomBytes(32).toString("hex"), ...pollEnv };
    // A first (it migrates and creates the administrator), then B on the same database.
    servers.push(await startServer(dirs[0]!, env));
    servers.push(await startServer(dirs[1]!, env));
    const [a, b] = servers.map((s) => createTesseraClient({ address: `127.0.0.1:${s.grpcPort}`, retry: false }));
    clients.push(a!, b!);
    const A = a!;
    const B = b!;

    const listeners = Number(
      (await db.query("select count(*) as n from pg_stat_activity where application_name = 'tessera revocation listener' and datname = current_database()")).rows[0].n,
    );
    if (listeners !== 2) throw new Error(`expected the two replicas' LISTEN connections on the database, found ${listeners}`);

    // ---- preparation, through the API, on A
    const perKind = (kind: Kind) => WARMUP_PER_KIND + Math.floor(REVOCATIONS / KINDS.length) + (KINDS.indexOf(kind) < REVOCATIONS % KINDS.length ? 1 : 0);
    const system = freshLogin(A, "system", "admin", ADMIN_PASSWORD);
    // Tenant `bench` with its admin, and the logout sessions (bench/seed.ts).
    const seeded = await must("seeding tenant bench (bench/seed.ts)", seedSessions(servers[0]!.grpcPort, perKind("logout"), 8));
    const tenantAdmin = freshLogin(A, BENCH_TENANT, BENCH_ADMIN.username, BENCH_ADMIN.password);
    const adminA = async () => A.withToken(await tenantAdmin());
    const tenantId = (await must("GetMe of bench-admin", (await adminA()).users.getMe({}))).user!.tenantId;

    // The permissions a grant change takes away, registered by microservice `fanout` (the catalogue is global: system admin).
    const grants = perKind("grant-removed");
    const codename = (i: number) => `${MICROSERVICE}.probe.p${String(i).padStart(4, "0")}`;
    await must(
      "RegisterMicroservice fanout",
      A.withToken(await system()).permissions.registerMicroservice({
        name: MICROSERVICE,
        version: "1.0.0",
        permissions: Array.from({ length: grants }, (_, i) => ({ codename: codename(i), description: `probe ${i}` })),
      }),
    );

    const createUser = async (username: string) => {
      const r = await must(`CreateUser ${username}`, (await adminA()).users.createUser({ user: { username }, password: PASSWORD }));
      if (!r.user?.id) throw new Error(`CreateUser ${username} answered no user id`);
      return r.user.id;
    };
    const login = async (username: string, password: string) => {
      const r = await must(`IssueToken ${username}`, A.issue.issueToken({ credential: { $case: "password", value: { tenant: BENCH_TENANT, username, password } } }));
      return { accessToken: r.accessToken, refreshToken: r.refreshToken, sessionId: r.sessionId, tokenAt: now(), granted: r.grantedPermissions };
    };

    const byKind = new Map<Kind, Target[]>();
    // logout: the seeded sessions (8 users, several sessions each).
    byKind.set(
      "logout",
      seeded.sessions.map((s) => ({ kind: "logout" as const, userId: "", username: userName(s.user), sessionId: s.sessionId, accessToken: s.accessToken, refreshToken: s.refreshToken, tokenAt: now() })),
    );
    // revoke-all, delete-user, disable-user: a user of its own each, with one session.
    for (const kind of ["revoke-all", "delete-user", "disable-user"] as const) {
      byKind.set(
        kind,
        await inBatches(perKind(kind), 4, async (i) => {
          const username = `fanout-${kind}-${String(i).padStart(4, "0")}`;
          const userId = await createUser(username);
          return { kind, userId, username, ...(await login(username, PASSWORD)) };
        }),
      );
    }
    // grant-removed: per GRANTS_PER_USER revocations a user in a group granting that many permissions, one session per revocation.
    const grantTargets: Target[] = [];
    for (let block = 0; block * GRANTS_PER_USER < grants; block++) {
      const permissions = Array.from({ length: Math.min(GRANTS_PER_USER, grants - block * GRANTS_PER_USER) }, (_, i) => codename(block * GRANTS_PER_USER + i));
      const username = `fanout-grants-${String(block).padStart(3, "0")}`;
      const userId = await createUser(username);
      const group = await must(`CreateGroup fanout-grants-${block}`, (await adminA()).permissions.createGroup({ group: { name: `fanout-grants-${block}`, permissions } }));
      const groupId = group.group?.id ?? "";
      if (!groupId || group.group!.permissions.join() !== [...permissions].sort().join()) throw new Error(`CreateGroup fanout-grants-${block} answered ${JSON.stringify(group.group)}`);
      await must(`AddGroupMembers fanout-grants-${block}`, (await adminA()).permissions.addGroupMembers({ groupId, userIds: [userId] }));
      const grantBlock: GrantBlock = { groupId, permissions: [...permissions] };
      const sessions = await inBatches(permissions.length, 4, () => login(username, PASSWORD));
      sessions.forEach((s, i) => {
        if (!s.granted.includes(permissions[i]!)) throw new Error(`the login of ${username} was not granted ${permissions[i]}: ${s.granted.join(" ")}`);
        grantTargets.push({ kind: "grant-removed", userId, username, ...s, grant: { groupId, permission: permissions[i]!, block: grantBlock } });
      });
    }
    byKind.set("grant-removed", grantTargets);

    // The order: one warm-up of each kind, then the kinds in turn.
    const queues = new Map(KINDS.map((k) => [k, [...byKind.get(k)!]]));
    const plan: Target[] = [];
    for (let i = 0; i < WARMUP_PER_KIND * KINDS.length + REVOCATIONS; i++) {
      const kind = KINDS[i % KINDS.length]!;
      const t = queues.get(kind)!.shift();
      if (!t) throw new Error(`no prepared session left for ${kind}`);
      plan.push(t);
    }

    // ---- the subscribers, caught up before anything is measured
    const systemToken = await system();
    const subA = new Subscriber(A.withToken(systemToken), "A");
    const subB = new Subscriber(B.withToken(systemToken), "B");
    subscribers.push(subA, subB);
    const caughtUp = await within(30_000, Promise.all([subA.ready, subB.ready]).then(() => true), () => false);
    if (!caughtUp) throw new Error("the WatchRevocations subscribers did not catch up with their backlog in 30 s");
    const setupSeconds = (now() - setupStarted) / 1000;

    // ---- the measured revocations
    const samples: Sample[] = [];
    const warmup: Sample[] = [];
    const wrongAnswers: string[] = [];
    const misses: FanoutRun["misses"] = [];
    const late: Promise<void>[] = [];
    let probeCalls = 0;
    const measureStarted = now();
    const machineBefore = machineBusySeconds();
    const oursBefore = await benchCpu(db, servers);
    for (let index = 0; index < plan.length; index++) {
      const t = plan[index]!;
      const warm = index < WARMUP_PER_KIND * KINDS.length;
      if (now() - t.tokenAt > TOKEN_MAX_AGE_MS) {
        const r = await must(`Refresh of session ${t.sessionId}`, A.refresh.refresh({ refreshToken: t.refreshToken }));
        Object.assign(t, { accessToken: r.accessToken, refreshToken: r.refreshToken, tokenAt: now() });
      }
      // B verifies the token (and caches the session's state) before the revocation.
      const before = await judge(B, t);
      if (before.reflects || !before.stale) throw new Error(`B's VerifyToken of ${t.kind} session ${t.sessionId} before its revocation: ${JSON.stringify(before)}`);
      const call = await revocationCall(t, A, adminA);

      // Expectations first, then the probes, then the call.
      const match = (e: WatchRevocationsResponse) =>
        t.kind === "logout"
          ? e.kind === RevocationKind.REVOCATION_KIND_SESSION_REVOKED && e.sessionId === t.sessionId
          : t.kind === "grant-removed"
            ? e.kind === RevocationKind.REVOCATION_KIND_GRANTS_CHANGED && e.tenantId === tenantId
            : e.kind === RevocationKind.REVOCATION_KIND_USER_REVOKED && e.userId === t.userId;
      const streams = { aStream: subA.expect(match, subA.lastCursor), bStream: subB.expect(match, subB.lastCursor) };
      const arrivals: Record<Path, number | undefined> = { bVerify: undefined, aStream: undefined, bStream: undefined };
      let resolveVerified!: () => void;
      const verified = new Promise<void>((r) => (resolveVerified = r));
      let answer: string | undefined;
      let probeWindowMs: number | undefined;
      let probeAnswers = 0;
      const staleProbeMs: number[] = [];
      let stop = false;
      const probes = Array.from({ length: PROBES }, async () => {
        while (!stop) {
          const sent = now();
          const j = await judge(B, t);
          const at = now();
          probeAnswers++;
          if (j.reflects) {
            if (arrivals.bVerify === undefined) {
              arrivals.bVerify = at;
              answer = j.answer;
              probeWindowMs = at - sent;
              resolveVerified();
            }
            return;
          }
          if (j.stale) staleProbeMs.push(at - sent);
          else wrongAnswers.push(`${t.kind} #${index}: B answered ${j.wrong}`);
          await sleep(PROBE_GAP_MS);
        }
      });
      const pending = [
        verified,
        streams.aStream.arrival.then((at) => void (arrivals.aStream = at)),
        streams.bStream.arrival.then((at) => void (arrivals.bStream = at)),
      ];

      const called = now();
      await must(`${t.kind} of ${t.username} on A`, call());
      const t0 = now();
      await within(t0 + MISS_MS - now(), Promise.all(pending), () => undefined);
      stop = true;
      await Promise.all(probes);
      probeCalls += probeAnswers;

      const fromReply = Object.fromEntries(PATHS.map((p) => [p, arrivals[p] === undefined ? undefined : arrivals[p]! - t0])) as Record<Path, number | undefined>;
      for (const path of PATHS) {
        if (fromReply[path] !== undefined) continue;
        const miss: FanoutRun["misses"][number] = { index, kind: t.kind, path };
        misses.push(miss);
        // Still watched: arrivals before the end of the run are reported as late.
        if (path !== "bVerify") late.push(streams[path].arrival.then((at) => void (miss.lateMs = at - t0)));
        else
          late.push(
            (async () => {
              const until = now() + 70_000; // past a 60 s poll interval
              while (now() < until && !stopLate) {
                if ((await judge(B, t)).reflects) return void (miss.lateMs = now() - t0);
                await sleep(50);
              }
            })(),
          );
      }
      // A's own VerifyToken reflects it (A polled its feed before replying).
      const aReflects = (await judge(A, t)).reflects;
      const sample: Sample = { kind: t.kind, fromReply, rpcMs: t0 - called, answer, probeWindowMs, probeAnswers, staleProbeMs, aReflects };
      (warm ? warmup : samples).push(sample);
    }
    const measuredSeconds = (now() - measureStarted) / 1000;
    const cpu = {
      machineCores: (machineBusySeconds() - machineBefore) / measuredSeconds,
      oursCores: ((await benchCpu(db, servers, oursBefore.backends)).seconds - oursBefore.seconds) / measuredSeconds,
    };
    // Late arrivals of misses: wait a little for the streams (they are only delivered with the log), then stop.
    if (late.length) await within(misses.some((m) => m.path === "bVerify") ? 70_000 : 5_000, Promise.all(late), () => undefined);
    stopLate = true;
    for (const s of subscribers) if (s.failure) wrongAnswers.push(s.failure);
    return {
      pollInterval: pollEnv.TESSERA_REVOCATION_POLL_INTERVAL ? `TESSERA_REVOCATION_POLL_INTERVAL=${pollEnv.TESSERA_REVOCATION_POLL_INTERVAL}` : "TESSERA_REVOCATION_POLL_INTERVAL unset (default 500ms)",
      database: `PostgreSQL ${await serverVersion()}`,
      listeners,
      samples,
      warmup,
      wrongAnswers,
      misses,
      setupSeconds,
      measuredSeconds,
      cpu,
      probeCalls,
    };
  } finally {
    stopLate = true;
    for (const s of subscribers) await s.close();
    for (const c of clients) c.close();
    for (const s of servers.reverse()) await s.stop();
    await db.drop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}

/** The revocation call of `t` on A (made later, timed by the caller). */
async function revocationCall(t: Target, A: TesseraClient, adminA: () => Promise<TesseraClient>): Promise<() => Promise<unknown>> {
  switch (t.kind) {
    case "logout": {
      const self = A.withToken(t.accessToken);
      return () => self.issue.revokeSession({ sessionId: "" });
    }
    case "revoke-all": {
      const admin = await adminA();
      return async () => {
        const r = await admin.issue.revokeAllSessions({ userId: t.userId });
        if (r.revokedCount !== 1) throw new Error(`RevokeAllSessions revoked ${r.revokedCount} sessions, not 1`);
      };
    }
    case "delete-user": {
      const admin = await adminA();
      return () => admin.users.deleteUser({ id: t.userId });
    }
    case "disable-user": {
      const admin = await adminA();
      return async () => {
        const r = await admin.users.updateUser({ user: { id: t.userId, disabled: true }, updateMask: ["disabled"] });
        if (!r.user?.disabled) throw new Error("UpdateUser answered a user that is not disabled");
      };
    }
    case "grant-removed": {
      const admin = await adminA();
      const { block, permission } = t.grant!;
      const remaining = block.permissions.filter((p) => p !== permission);
      return async () => {
        const r = await admin.permissions.updateGroup({ group: { id: block.groupId, permissions: remaining }, updateMask: ["permissions"] });
        if (r.group?.permissions.includes(permission)) throw new Error(`UpdateGroup still grants ${permission}`);
        block.permissions = remaining;
      };
    }
  }
}

export async function benchReplicaFanout(): Promise<ReplicaFanoutResult> {
  const runs: FanoutRun[] = [];
  runs.push(await fanout({}));
  runs.push(await fanout({ TESSERA_REVOCATION_POLL_INTERVAL: "60s" }));
  return { revocations: REVOCATIONS, runs };
}

// ---------------------------------------------------------------- report

/** Nearest-rank percentile of ascending `sorted`. */
const percentile = (sorted: number[], p: number) => sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;

function stats(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return undefined;
  return { n: s.length, p50: percentile(s, 50), p90: percentile(s, 90), p99: percentile(s, 99), max: s.at(-1)!, min: s[0]! };
}

const f = (x: number) => `${round(x, 2)}`;

export function reportReplicaFanout(r: ReplicaFanoutResult): string {
  const lines = [
    `${r.revocations} revocations per run on replica A (after ${WARMUP_PER_KIND * KINDS.length} unrecorded, one per kind), one at a time, the kinds in turn (${KINDS.join(", ")}); ` +
      `two Tessera processes on one throwaway database; t0 = A's reply at the bench; B's VerifyToken probed by ${PROBES} concurrent loops (${PROBE_GAP_MS} ms between a probe's calls) from before the call; ` +
      `one WatchRevocations subscriber per replica (system admin); a path not reflecting a revocation ${MISS_MS} ms after t0 missed it; clock: performance.now() in the bench process`,
  ];
  for (const run of r.runs) {
    const count = (k: Kind) => run.samples.filter((s) => s.kind === k).length;
    lines.push(
      `both replicas with ${run.pollInterval}, ${run.database}, ${run.listeners} LISTEN connections; ${run.samples.length} revocations (${KINDS.map((k) => `${k} ${count(k)}`).join(", ")}):`,
    );
    for (const path of PATHS) {
      const s = stats(run.samples.flatMap((x) => (x.fromReply[path] === undefined ? [] : [x.fromReply[path]!])));
      const missed = run.samples.length - (s?.n ?? 0);
      lines.push(
        s
          ? `  ${PATH_NAMES[path].padEnd(26)} t1 − t0: p50 ${f(s.p50)} ms, p90 ${f(s.p90)} ms, p99 ${f(s.p99)} ms, max ${f(s.max)} ms, min ${f(s.min)} ms  (target p99 < ${TARGET_P99_MS} ms: ${s.p99 < TARGET_P99_MS && missed === 0 ? "met" : "MISSED"}); missed ${missed}/${run.samples.length}`
          : `  ${PATH_NAMES[path].padEnd(26)} none reflected (target p99 < ${TARGET_P99_MS} ms: MISSED); missed ${missed}/${run.samples.length}`,
      );
    }
    lines.push("  per kind, t1 − t0 p50 / p99 / max (ms): B VerifyToken | A event | B event | the call's round trip on A p50 / p99");
    for (const kind of KINDS) {
      const of = run.samples.filter((s) => s.kind === kind);
      const cell = (path: Path) => {
        const s = stats(of.flatMap((x) => (x.fromReply[path] === undefined ? [] : [x.fromReply[path]!])));
        return s ? `${f(s.p50)} / ${f(s.p99)} / ${f(s.max)}${s.n < of.length ? ` (${of.length - s.n} missed)` : ""}` : "all missed";
      };
      const rpc = stats(of.map((s) => s.rpcMs));
      lines.push(`    ${kind.padEnd(14)} ${cell("bVerify")} | ${cell("aStream")} | ${cell("bStream")} | ${rpc ? `${f(rpc.p50)} / ${f(rpc.p99)}` : "-"}`);
    }
    const answers = new Map<string, number>();
    for (const s of run.samples) if (s.answer) answers.set(`${s.kind}: ${s.answer}`, (answers.get(`${s.kind}: ${s.answer}`) ?? 0) + 1);
    const before = run.samples.filter((s) => s.fromReply.bVerify !== undefined && s.fromReply.bVerify < 0).length;
    const window = stats(run.samples.flatMap((s) => (s.probeWindowMs === undefined ? [] : [s.probeWindowMs])));
    const hit = stats(run.samples.flatMap((s) => s.staleProbeMs));
    const afterEvent = stats(run.samples.flatMap((s) => (s.fromReply.bVerify === undefined || s.fromReply.bStream === undefined ? [] : [s.fromReply.bVerify - s.fromReply.bStream])));
    lines.push(
      `  B's reflecting answers: ${[...answers].map(([k, n]) => `${k} ${n}`).join(", ")}; B refused before A's reply arrived: ${before}/${run.samples.length}`,
      `  the reflecting probe's own call took p50 ${window ? f(window.p50) : "-"} ms, max ${window ? f(window.max) : "-"} ms (B reads the session from the database then: t1 is known to within that); ` +
        `probes still valid (B's cache hits) p50 ${hit ? f(hit.p50) : "-"} ms, p99 ${hit ? f(hit.p99) : "-"} ms; ${run.probeCalls} probe calls in all`,
      `  B VerifyToken t1 − B event t1: p50 ${afterEvent ? f(afterEvent.p50) : "-"} ms, p90 ${afterEvent ? f(afterEvent.p90) : "-"} ms, max ${afterEvent ? f(afterEvent.max) : "-"} ms`,
      `  A's VerifyToken reflected it right after: ${run.samples.filter((s) => s.aReflects).length}/${run.samples.length}; wrong answers: ${run.wrongAnswers.length}${run.wrongAnswers.length ? ` (${run.wrongAnswers.slice(0, 5).join("; ")})` : ""}`,
    );
    if (run.misses.length) {
      lines.push(
        `  MISSES (FAILED): ${run.misses
          .slice(0, 20)
          .map((m) => `#${m.index} ${m.kind} ${PATH_NAMES[m.path]}: ${m.lateMs === undefined ? "never, by the end of the run" : `late, ${f(m.lateMs)} ms after t0`}`)
          .join("; ")}${run.misses.length > 20 ? `; and ${run.misses.length - 20} more` : ""}`,
      );
    } else lines.push(`  every revocation reached B (VerifyToken and stream) and A's stream within ${MISS_MS} ms: 0 misses`);
    const warm = (path: Path) => run.warmup.map((s) => (s.fromReply[path] === undefined ? "miss" : f(s.fromReply[path]!))).join(", ");
    lines.push(
      `  warm-up (not counted), B VerifyToken t1 − t0: ${warm("bVerify")} ms; B event: ${warm("bStream")} ms`,
      `  set-up (2 replicas, tenant, users, groups, ${run.samples.length + run.warmup.length} logins, subscribers caught up) ${round(run.setupSeconds)} s; measured part ${round(run.measuredSeconds)} s, ` +
        `machine busy ${round(run.cpu.machineCores, 2)} of ${cpus().length} cores meanwhile, this bench ${round(run.cpu.oursCores, 2)} (bench process, A, B, the database's backends), other processes ${round(Math.max(0, run.cpu.machineCores - run.cpu.oursCores), 2)}`,
    );
  }
  return lines.join("\n");
}
