// The two database faults of issue 14, each on clusters of its own (see
// pg-cluster.ts), against Tessera started from the sources `npm start` builds (a real
// process, test/support/process.ts):
//
//   failover: a primary with a synchronous streaming standby
//     (synchronous_commit = on, synchronous_standby_names = the standby);
//     two Tessera replicas reach the primary through a re-pointable TCP
//     proxy; mid-load the primary is stopped hard (pg_ctlcluster stop -m
//     immediate), the standby promoted (pg_ctlcluster promote) and the proxy
//     re-pointed to it. Tessera is not restarted.
//   restart: one cluster, one Tessera replica connected to it directly;
//     mid-load PostgreSQL is stopped (pg_ctlcluster stop -m fast) and started
//     again a few seconds later.
//
// Both then check that nothing acknowledged was lost (load.ts) and read the
// database for half-written sessions and rotations.
//
//   revoke-cut: a targeted fault (runRevokeCut below): the database is lost
//     the instant a revocation's COMMIT has been answered.
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { spawnServer, type ServerProcess } from "../../test/support/process.ts";
import { checkAcknowledged, checkDatabase, clientsFor, DEFAULT_LOAD, FAULT_TENANT, Load, outageView, seed, summarize, type CallSummary, type Checks, type DatabaseChecks, type LoadSettings, type OutageView } from "./load.ts";
import { Cluster, dropAllClusters, onAbort, waitFor } from "./pg-cluster.ts";
import { RepointableProxy } from "./repointable-proxy.ts";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const SYSTEM_PASSWORD = "fault-system-admin-password";
const DATABASE = "tessera";

export interface ScenarioOptions {
  /** Load before the fault, and after recovery (ms). */
  beforeMs?: number;
  afterMs?: number;
  /** failover: re-point the proxy to the standby this long BEFORE promoting it (a careless switch; not the issue's order). */
  repointBeforePromoteMs?: number;
  /** restart: how long PostgreSQL stays down (ms). */
  downMs?: number;
  load?: Partial<LoadSettings>;
  log?: (line: string) => void;
}

export interface ScenarioReport {
  scenario: "failover" | "restart";
  ok: boolean;
  /** Every way the run fell short, one line each (empty when ok). */
  problems: string[];
  /** Events in ms after the fault (negative: before it). */
  timeline: { event: string; atMs: number }[];
  calls: CallSummary;
  outage: OutageView;
  acknowledged: { sessions: number; refreshes: number; revocations: number; usersCreated: number; userUpdates: number };
  unknownOutcomes: { logins: number; usersMaybeCreated: number; refreshesRetried: Record<string, number>; updatesUnanswered: number };
  verifyAfterRevoke: Load["verifyAfterRevoke"];
  unexpected: Load["unexpected"];
  checks: Checks;
  database: DatabaseChecks;
  /** Lines the Tessera processes logged at error level or above ("unexpected error": a bug), and their count. */
  serverErrors: { count: number; samples: string[] };
  /** How many times each replica's revocation listener reported a lost connection. */
  listenerLost: number[];
  durationMs: number;
}

function serverErrors(servers: ServerProcess[]): ScenarioReport["serverErrors"] {
  const lines = servers.flatMap((s) => s.output().split("\n").filter((l) => /"level":(50|60)/.test(l)));
  return { count: lines.length, samples: [...new Set(lines.map((l) => l.replace(/"time":\d+,|"pid":\d+,|"reqId":"[^"]*",/g, "").slice(0, 600)))].slice(0, 5) };
}

/**
 * startServerProcess (test/support/process.ts), with the child known from the
 * moment it is spawned: an interrupted run kills even a server still starting.
 */
async function startServer(env: Record<string, string>, children: ChildProcess[]): Promise<ServerProcess> {
  const { child, output } = spawnServer({ TESSERA_GRPC_ADDR: "127.0.0.1:0", TESSERA_HTTP_ADDR: "127.0.0.1:0", ...env });
  children.push(child);
  let listening: { grpc: string; http: string } | undefined;
  for (let i = 0; i < 600 && !listening; i++) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}:\n${output()}`);
    const line = /\{[^\n]*"tessera listening"[^\n]*\}/.exec(output())?.[0];
    if (line) listening = JSON.parse(line) as { grpc: string; http: string };
    else await new Promise((r) => setTimeout(r, 50));
  }
  if (!listening) {
    child.kill("SIGKILL");
    throw new Error(`server did not start in 30 s:\n${output()}`);
  }
  return {
    child,
    grpcAddress: listening.grpc,
    httpPort: Number(listening.http.split(":").pop()),
    output,
    rss: () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"))?.[1] ?? 0) * 1024,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill("SIGTERM");
      const [code] = (await once(child, "exit")) as [number | null];
      return code;
    },
  };
}

async function startReplicas(count: number, env: Record<string, string>): Promise<{ servers: ServerProcess[]; dataDirs: string[]; forget: () => void }> {
  if (process.cwd() !== ROOT.replace(/\/$/, "")) process.chdir(ROOT);
  const servers: ServerProcess[] = [];
  const dataDirs: string[] = [];
  // Interrupted (Ctrl-C, SIGTERM): the servers go first, then the clusters.
  const children: ChildProcess[] = [];
  const forget = onAbort(() => {
    for (const child of children) child.kill("SIGKILL");
    for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
  });
  try {
    for (let i = 0; i < count; i++) {
      const dataDir = mkdtempSync(join(tmpdir(), "tessera-fault-"));
      dataDirs.push(dataDir);
      servers.push(
        await startServer({
          ...env,
          TESSERA_DATA_DIR: dataDir,
          TESSERA_ADMIN_PASSWORD: SYSTEM_PASSWORD,
          TESSERA_SHUTDOWN_GRACE: "2s",
          // One argon2 at a time per replica: the machine is shared.
          TESSERA_PASSWORD_HASH_CONCURRENCY: "1",
        }, children),
      );
    }
  } catch (error) {
    await Promise.all(servers.map((s) => s.stop().catch(() => undefined)));
    for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
    forget();
    throw error;
  }
  return { servers, dataDirs, forget };
}

function finish(
  scenario: ScenarioReport["scenario"],
  load: Load,
  faultAt: number,
  timeline: { event: string; atMs: number }[],
  checks: Checks,
  database: DatabaseChecks,
  servers: ServerProcess[],
  started: number,
): ScenarioReport {
  const calls = summarize(load.calls, load.settings.deadlineMs);
  const outage = outageView(load.calls, faultAt, load.replicas.length);
  const errors = serverErrors(servers);
  const listenerLost = servers.map((s) => s.output().split("\n").filter((l) => l.includes("revocation listener lost its connection")).length);
  const acked = load.calls.filter((c) => c.outcome === "OK" && !c.op.startsWith("check "));
  const count = (op: string) => acked.filter((c) => c.op === op).length;
  const report: ScenarioReport = {
    scenario,
    ok: false,
    problems: [],
    timeline: timeline.map((e) => ({ event: e.event, atMs: Math.round(e.atMs - faultAt) })),
    calls,
    outage,
    acknowledged: {
      sessions: load.sessions.length,
      refreshes: count("refresh") + count("refresh (retry)"),
      revocations: load.sessions.filter((s) => s.state === "revoked").length,
      usersCreated: load.users.length,
      userUpdates: count("updateUser"),
    },
    unknownOutcomes: {
      logins: load.unknownLogins,
      usersMaybeCreated: load.maybeUsers.length,
      refreshesRetried: load.retriedRefreshes,
      updatesUnanswered: load.calls.filter((c) => c.op === "updateUser" && c.outcome !== "OK").length,
    },
    verifyAfterRevoke: { ...load.verifyAfterRevoke, otherAccepted: load.verifyAfterRevoke.otherAccepted.map((e) => ({ ...e, atMs: Math.round(e.atMs - faultAt) })) },
    unexpected: load.unexpected.map((e) => ({ ...e, atMs: Math.round(e.atMs - faultAt) })),
    checks,
    database,
    serverErrors: errors,
    listenerLost,
    durationMs: Math.round(performance.now() - started),
  };
  const p = report.problems;
  const list = (label: string, items: string[]) => items.length && p.push(`${label}: ${items.length} (${items.slice(0, 3).join("; ")}${items.length > 3 ? "; ..." : ""})`);
  if (Object.keys(calls.otherFailures).length) p.push(`clients saw failures other than UNAVAILABLE/DEADLINE_EXCEEDED: ${JSON.stringify(calls.otherFailures)}`);
  if (calls.overDeadline) p.push(`${calls.overDeadline} calls outlived their ${load.settings.deadlineMs} ms deadline by more than 500 ms (slowest ${calls.maxCallMs} ms)`);
  if (scenario === "restart" && outage.deadlineExceeded) p.push(`${outage.deadlineExceeded} calls ran into their deadline instead of failing UNAVAILABLE`);
  if (!outage.failedCalls) p.push("no call failed: the fault did not reach the clients (load too light or fault too short?)");
  for (const r of outage.perReplica) if (r.firstOkWriteAfterMs === undefined) p.push(`replica ${r.replica} never answered a write OK after its last failure: it did not recover`);
  list("acknowledged users missing", checks.usersMissing);
  list("users with a display name never acknowledged", checks.usersWrongName);
  list("acknowledged revocations not refused", checks.revokedAccepted);
  list("held refresh tokens refused", checks.liveRefreshRefused);
  list("live sessions refused by VerifyToken", checks.liveVerifyRefused);
  list("acknowledged sessions missing", checks.sessionsMissing);
  list("chains lost during the load", checks.chainsLost);
  list("chains the client abandoned after an unexpected refusal (their tokens still refresh)", checks.chainsAbandoned);
  list("VerifyToken accepted a revocation on the replica that had just acknowledged it", load.verifyAfterRevoke.sameAccepted);
  list("sessions without any refresh token", database.withoutTokens);
  list("live sessions without exactly one unspent refresh token", database.liveTokensNotOne);
  list("revoked sessions with several unspent refresh tokens", database.revokedTokensOverOne);
  list("acknowledged results the database does not hold", database.acknowledgedMissing);
  if (errors.count) p.push(`the servers logged ${errors.count} errors (unexpected errors are bugs): ${errors.samples[0]}`);
  if (checks.checkCallsUnavailable) p.push(`${checks.checkCallsUnavailable} check calls failed transiently after the recovery`);
  report.ok = p.length === 0;
  return report;
}

/** Waits until every replica answered a write OK that started after `sinceMs` (load time), at most `timeoutMs`. */
async function waitForWrites(load: Load, sinceMs: number, timeoutMs: number): Promise<boolean> {
  const writes = new Set(["login", "refresh", "refresh (retry)", "createUser", "updateUser", "revoke"]);
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const ok = load.replicas.every((r) => load.calls.some((c) => c.replica === r.index && c.outcome === "OK" && writes.has(c.op) && c.start >= sinceMs));
    if (ok) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

export async function runFailover(options: ScenarioOptions = {}): Promise<ScenarioReport> {
  const log = options.log ?? (() => undefined);
  const started = performance.now();
  const appName = `tessera_fo_standby_${process.pid}`;
  let proxy: RepointableProxy | undefined;
  let servers: ServerProcess[] = [];
  let dataDirs: string[] = [];
  let forget = () => {};
  let load: Load | undefined;
  try {
    log("creating the primary and the standby clusters");
    const primary = await Cluster.create("primary", ["synchronous_commit = on"]);
    const standby = await Cluster.create("standby");
    await primary.start();
    await primary.query(`create database ${DATABASE}`);
    await standby.becomeStandbyOf(primary, appName);
    await standby.start();
    await waitFor("the standby to stream", async () => (await primary.query("select 1 from pg_stat_replication where application_name = $1 and state = 'streaming'", [appName])).length === 1);
    // Set on the primary only (its conf.d), so the promoted standby does not wait for a standby of its own.
    primary.addSettings([`synchronous_standby_names = '${appName}'`]);
    await primary.ctl("reload");
    await waitFor("the standby to be synchronous", async () => (await primary.query("select sync_state from pg_stat_replication where application_name = $1", [appName]))[0]?.sync_state === "sync");
    log(`primary ${primary.name} on ${primary.port}, synchronous standby ${standby.name} on ${standby.port}`);

    proxy = await new RepointableProxy({ host: "127.0.0.1", port: primary.port }).start();
    const env = { DATABASE_URL: `postgres://postgres@${proxy.address}/${DATABASE}`, TESSERA_MASTER_KEY: randomBytes(32).toString("hex") };
    ({ servers, dataDirs, forget } = await startReplicas(2, env));
    log(`Tessera replicas on ${servers.map((s) => s.grpcAddress).join(" and ")}, database through the proxy on ${proxy.address}`);

    const { adminToken, users } = await seed(servers[0]!.grpcAddress, SYSTEM_PASSWORD, 6);
    const settings = { ...DEFAULT_LOAD, ...options.load };
    load = new Load(clientsFor(servers.map((s) => s.grpcAddress), adminToken, settings.deadlineMs), users, settings);
    const timeline: { event: string; atMs: number }[] = [{ event: "load started", atMs: load.now() }];
    load.start();
    await new Promise((r) => setTimeout(r, options.beforeMs ?? 6_000));

    const [replication] = await primary.query("select sync_state, pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn)::int as behind from pg_stat_replication where application_name = $1", [appName]);
    timeline.push({ event: `standby ${replication?.sync_state ?? "not connected"}, ${replication?.behind ?? "?"} bytes of WAL not yet flushed there`, atMs: load.now() });
    log("stopping the primary (immediate), promoting the standby, re-pointing the proxy");
    const faultAt = load.now();
    timeline.push({ event: "primary stop -m immediate issued", atMs: faultAt });
    await primary.stop("immediate");
    timeline.push({ event: "primary stopped", atMs: load.now() });
    if (options.repointBeforePromoteMs !== undefined) {
      // A careless switch: traffic reaches the standby while it is still read-only.
      const dropped = proxy.repoint({ host: "127.0.0.1", port: standby.port });
      timeline.push({ event: `proxy re-pointed to the standby, still in recovery (${dropped} old connections dropped)`, atMs: load.now() });
      await new Promise((r) => setTimeout(r, options.repointBeforePromoteMs));
    }
    await standby.ctl("promote");
    await waitFor("the standby to leave recovery", async () => (await standby.query("select pg_is_in_recovery() as r"))[0]?.r === false, 30_000, 50);
    timeline.push({ event: "standby promoted (out of recovery)", atMs: load.now() });
    if (options.repointBeforePromoteMs === undefined) {
      const dropped = proxy.repoint({ host: "127.0.0.1", port: standby.port });
      timeline.push({ event: `proxy re-pointed to the new primary (${dropped} old connections dropped)`, atMs: load.now() });
    }
    const repointedAt = load.now();

    const recovered = await waitForWrites(load, repointedAt, 30_000);
    timeline.push({ event: recovered ? "every replica answered a write OK again" : "replicas did not all recover within 30 s", atMs: load.now() });
    await new Promise((r) => setTimeout(r, options.afterMs ?? 6_000));
    log("stopping the load, checking what was acknowledged");
    await load.stop();
    timeline.push({ event: "load stopped", atMs: load.now() });
    const checks = await checkAcknowledged(load);
    const database = await checkDatabase(load, (sql, params) => standby.query(sql, params, DATABASE));
    timeline.push({ event: "checks done", atMs: load.now() });
    return finish("failover", load, faultAt, timeline, checks, database, servers, started);
  } finally {
    for (const r of load?.replicas ?? []) r.anon.close();
    await Promise.all(servers.map((s) => s.stop().catch(() => undefined)));
    await proxy?.close();
    for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
    forget();
    const problems = await dropAllClusters();
    if (problems.length) log(`could not drop: ${problems.join("; ")}`);
  }
}

export async function runRestart(options: ScenarioOptions = {}): Promise<ScenarioReport> {
  const log = options.log ?? (() => undefined);
  const started = performance.now();
  let servers: ServerProcess[] = [];
  let dataDirs: string[] = [];
  let forget = () => {};
  let load: Load | undefined;
  try {
    log("creating the cluster");
    const cluster = await Cluster.create("restart");
    await cluster.start();
    await cluster.query(`create database ${DATABASE}`);
    ({ servers, dataDirs, forget } = await startReplicas(1, { DATABASE_URL: cluster.urlOf(DATABASE), TESSERA_MASTER_KEY: randomBytes(32).toString("hex") }));
    log(`cluster ${cluster.name} on ${cluster.port}, Tessera on ${servers[0]!.grpcAddress}`);
    const { adminToken, users } = await seed(servers[0]!.grpcAddress, SYSTEM_PASSWORD, 6);
    const settings = { ...DEFAULT_LOAD, ...options.load };
    load = new Load(clientsFor([servers[0]!.grpcAddress], adminToken, settings.deadlineMs), users, settings);
    const timeline: { event: string; atMs: number }[] = [{ event: "load started", atMs: load.now() }];
    load.start();
    await new Promise((r) => setTimeout(r, options.beforeMs ?? 5_000));

    log("stopping PostgreSQL (fast), then starting it again");
    const faultAt = load.now();
    timeline.push({ event: "stop -m fast issued", atMs: faultAt });
    await cluster.stop("fast");
    timeline.push({ event: "PostgreSQL stopped", atMs: load.now() });
    await new Promise((r) => setTimeout(r, options.downMs ?? 3_000));
    timeline.push({ event: "start issued", atMs: load.now() });
    await cluster.start();
    const upAt = load.now();
    timeline.push({ event: "PostgreSQL started (accepting connections)", atMs: upAt });
    const recovered = await waitForWrites(load, upAt, 30_000);
    timeline.push({ event: recovered ? "the replica answered a write OK again" : "the replica did not recover within 30 s", atMs: load.now() });
    await new Promise((r) => setTimeout(r, options.afterMs ?? 5_000));
    log("stopping the load, checking what was acknowledged");
    await load.stop();
    timeline.push({ event: "load stopped", atMs: load.now() });
    const checks = await checkAcknowledged(load);
    const database = await checkDatabase(load, (sql, params) => cluster.query(sql, params, DATABASE));
    timeline.push({ event: "checks done", atMs: load.now() });
    return finish("restart", load, faultAt, timeline, checks, database, servers, started);
  } finally {
    for (const r of load?.replicas ?? []) r.anon.close();
    await Promise.all(servers.map((s) => s.stop().catch(() => undefined)));
    for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
    forget();
    const problems = await dropAllClusters();
    if (problems.length) log(`could not drop: ${problems.join("; ")}`);
  }
}

const ms = (v: number | undefined) => (v === undefined ? "—" : `${v} ms`);

/** The report as people read it. */
export function formatReport(r: ScenarioReport): string {
  const lines: string[] = [];
  const title = r.scenario === "failover" ? "failover: synchronous standby promoted, proxy re-pointed, 2 replicas" : "restart: PostgreSQL stopped (fast) and started again, 1 replica";
  lines.push(`== ${title}: ${r.ok ? "PASS" : "FAIL"} (${(r.durationMs / 1000).toFixed(1)} s)`);
  lines.push("timeline (ms after the fault):");
  for (const e of r.timeline) lines.push(`  ${String(e.atMs).padStart(7)}  ${e.event}`);
  lines.push(`calls: ${r.calls.total} (${r.calls.ok} OK), failed by status ${JSON.stringify(r.calls.failedByStatus)}; slowest ${r.calls.maxCallMs} ms, over the deadline: ${r.calls.overDeadline}`);
  for (const [op, outcomes] of Object.entries(r.calls.byOp)) lines.push(`  ${op.padEnd(22)} ${Object.entries(outcomes).map(([k, v]) => `${k} ${v}`).join(", ")}`);
  const o = r.outage;
  lines.push(`outage seen by the clients: ${o.failedCalls} failed calls (UNAVAILABLE ${o.unavailable}, DEADLINE_EXCEEDED ${o.deadlineExceeded}; the slowest failed after ${ms(o.slowestFailureMs)}), first failure started at ${ms(o.firstFailureAtMs)}, last one ended at ${ms(o.lastFailureEndMs)}`);
  for (const p of o.perReplica) lines.push(`  replica ${p.replica}: ${p.failed} failed, last failure ended ${ms(p.lastFailureEndMs)}, first OK after it ${ms(p.firstOkAfterMs)}, first OK write ${ms(p.firstOkWriteAfterMs)}`);
  lines.push(`switch time from the clients' view (first failed call to every replica writing again): ${ms(o.clientSwitchMs)}`);
  const a = r.acknowledged;
  lines.push(`acknowledged: ${a.sessions} logins, ${a.refreshes} refreshes, ${a.revocations} revocations, ${a.usersCreated} users created, ${a.userUpdates} user updates`);
  const u = r.unknownOutcomes;
  lines.push(`unanswered (outcome unknown to the client): ${u.logins} logins, ${u.usersMaybeCreated} CreateUser, ${u.updatesUnanswered} UpdateUser; re-presented refresh tokens: ${JSON.stringify(u.refreshesRetried)}`);
  lines.push(`VerifyToken right after an acknowledged revocation: same replica ${JSON.stringify(r.verifyAfterRevoke.same)}${Object.keys(r.verifyAfterRevoke.other).length ? `, other replica ${JSON.stringify(r.verifyAfterRevoke.other)}` : ""}`);
  if (r.verifyAfterRevoke.otherAccepted.length) {
    lines.push(`  the other replica hears of a revocation by NOTIFY (or its next poll of the log); it still accepted these, acknowledged at (ms after the fault) → refused that long after the acknowledgement:`);
    lines.push(`    ${r.verifyAfterRevoke.otherAccepted.map((e) => `${e.atMs} → ${e.refusedAfterMs === undefined ? "not within 1.5 s" : `${e.refusedAfterMs} ms`}`).join(", ")}`);
  }
  const c = r.checks;
  const d = r.database;
  const losses = c.usersMissing.length + c.usersWrongName.length + c.revokedAccepted.length + c.liveRefreshRefused.length + c.liveVerifyRefused.length + c.sessionsMissing.length + c.chainsLost.length + d.acknowledgedMissing.length;
  lines.push(`checks: ${c.usersChecked} users (GetUser on every replica), ${c.revokedChecked} revoked sessions (VerifyToken + Refresh refused), ${c.liveChecked} live sessions (VerifyToken on every replica + Refresh OK), ListSessions per user`);
  lines.push(`  losses of acknowledged results: ${losses}${losses ? ` — users missing ${c.usersMissing.length}, wrong name ${c.usersWrongName.length}, revocations accepted ${c.revokedAccepted.length}, refresh refused ${c.liveRefreshRefused.length}, verify refused ${c.liveVerifyRefused.length}, sessions missing ${c.sessionsMissing.length}, chains lost ${c.chainsLost.length}, missing in the database ${d.acknowledgedMissing.length}` : ""}`);
  if (c.chainsAbandoned.length) lines.push(`  chains the client abandoned after an unexpected refusal, whose held token still refreshes (not a loss): ${c.chainsAbandoned.length}`);
  lines.push(`database: ${d.sessions} sessions; without a refresh token ${d.withoutTokens.length}; live without exactly one unspent token ${d.liveTokensNotOne.length}; revoked with several ${d.revokedTokensOverOne.length}`);
  lines.push(`server logs: ${r.serverErrors.count} error lines; revocation listener reconnects logged: ${r.listenerLost.join(", ")}`);
  if (r.problems.length) {
    lines.push("PROBLEMS:");
    for (const p of r.problems) lines.push(`  - ${p}`);
  }
  if (r.unexpected.length) {
    lines.push("unexpected outcomes (first 10):");
    for (const e of r.unexpected.slice(0, 10)) lines.push(`  ${e.atMs} ms ${e.op} on replica ${e.replica}: ${e.outcome}${e.detail ? ` (${e.detail})` : ""}`);
  }
  return lines.join("\n");
}

export interface RevokeCutReport {
  scenario: "revoke-cut";
  ok: boolean;
  problems: string[];
  rounds: {
    revoke: string;
    /** VerifyToken of the revoked session on the same replica, right after the acknowledgement. */
    verifyRightAfter: string;
    /** How long after the acknowledgement that replica last accepted it, and first refused it (ms). */
    acceptedUntilMs?: number;
    refusedAfterMs?: number;
    /** VerifyToken outcomes (every 50 ms) until the first refusal. */
    meanwhile: Record<string, number>;
  }[];
  /** The warnings the server logged for the poll that failed after the commit. */
  feedPollFailures: number;
  downMs: number;
  pollInterval: string;
  durationMs: number;
}

/**
 * A targeted fault: the database is lost the instant a revocation's COMMIT
 * has been answered (the proxy forwards PostgreSQL's reply to the COMMIT,
 * then drops every connection and refuses new ones for `downMs`). The
 * replica acknowledged the revocation; README and grpc/middleware.ts promise
 * that the very next VerifyToken on that replica refuses the session.
 */
export async function runRevokeCut(options: { rounds?: number; downMs?: number; pollInterval?: string; log?: (line: string) => void } = {}): Promise<RevokeCutReport> {
  // `pollInterval` (TESSERA_REVOCATION_POLL_INTERVAL; 60s here, the server's default is 500ms): a long one
  // keeps the periodic poll from reading the log between the commit and the cut by chance, so that every
  // round shows what happens when nothing but the post-commit poll could have told the replica.
  // (With 500ms most rounds show it too.)
  // The outage after the cut: TESSERA_FAULT_CUT_MS (ms), 2 s by default.
  const log = options.log ?? (() => undefined);
  const started = performance.now();
  const rounds = options.rounds ?? 3;
  const downMs = options.downMs ?? (Number(process.env.TESSERA_FAULT_CUT_MS) || 2_000);
  let proxy: RepointableProxy | undefined;
  let servers: ServerProcess[] = [];
  let dataDirs: string[] = [];
  let forget = () => {};
  const client: { close(): void }[] = [];
  try {
    const cluster = await Cluster.create("revokecut");
    await cluster.start();
    await cluster.query(`create database ${DATABASE}`);
    proxy = await new RepointableProxy({ host: "127.0.0.1", port: cluster.port }).start();
    ({ servers, dataDirs, forget } = await startReplicas(1, {
      DATABASE_URL: `postgres://postgres@${proxy.address}/${DATABASE}`,
      TESSERA_MASTER_KEY: randomBytes(32).toString("hex"),
      TESSERA_REVOCATION_POLL_INTERVAL: options.pollInterval ?? "60s",
    }));
    const { adminToken, users } = await seed(servers[0]!.grpcAddress, SYSTEM_PASSWORD, 1);
    const [replica] = clientsFor([servers[0]!.grpcAddress], adminToken, 3_000);
    client.push(replica!.anon);
    const load = new Load([replica!], users);
    const report: RevokeCutReport = { scenario: "revoke-cut", ok: false, problems: [], rounds: [], feedPollFailures: 0, downMs, pollInterval: options.pollInterval ?? "60s", durationMs: 0 };
    for (let round = 0; round < rounds; round++) {
      const { username, password } = users[0]!;
      const login = await load.call("login", replica!, (x) => x.anon.issue.issueToken({ credential: { $case: "password", value: { tenant: FAULT_TENANT, username, password } } }));
      if (!login.ok) throw new Error(`login failed: ${login.outcome}`);
      const token = login.value.accessToken;
      const verify = () => load.call("verify", replica!, (x) => x.anon.verify.verifyToken({ token, audience: "" }));
      const warm = await verify();
      if (!warm.ok) throw new Error(`verify failed: ${warm.outcome}`);
      const cut = proxy.cutAfterNextCommit(downMs);
      const revoke = await load.call("revoke", replica!, (x) => x.admin.issue.revokeSession({ sessionId: login.value.sessionId }));
      const acked = performance.now();
      const right = await verify();
      await cut;
      let refusedAfterMs: number | undefined;
      let acceptedUntilMs: number | undefined;
      const meanwhile: Record<string, number> = {};
      for (let i = 0; i < 400 && refusedAfterMs === undefined; i++) {
        const r = i === 0 ? right : await verify();
        const at = Math.round(performance.now() - acked);
        meanwhile[r.ok ? "OK (accepted)" : r.outcome] = (meanwhile[r.ok ? "OK (accepted)" : r.outcome] ?? 0) + 1;
        if (r.ok) acceptedUntilMs = at;
        if (!r.ok && r.reason === "SESSION_REVOKED") refusedAfterMs = at;
        else await new Promise((done) => setTimeout(done, 50));
      }
      report.rounds.push({ revoke: revoke.ok ? "OK" : revoke.outcome, verifyRightAfter: right.ok ? "OK (accepted)" : right.outcome, acceptedUntilMs, refusedAfterMs, meanwhile });
      if (revoke.ok && right.ok) report.problems.push(`round ${round}: RevokeSession answered OK, then VerifyToken on the same replica accepted the session (refused only ${refusedAfterMs ?? "never"} ms later)`);
      await waitFor("the database to answer again", async () => (await load.call("login", replica!, (x) => x.anon.issue.issueToken({ credential: { $case: "password", value: { tenant: FAULT_TENANT, username, password } } }))).ok, 30_000, 200);
    }
    report.feedPollFailures = servers[0]!.output().split("\n").filter((l) => l.includes("revocation feed poll failed")).length;
    report.ok = report.problems.length === 0;
    report.durationMs = Math.round(performance.now() - started);
    return report;
  } finally {
    for (const c of client) c.close();
    await Promise.all(servers.map((s) => s.stop().catch(() => undefined)));
    await proxy?.close();
    for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
    forget();
    const problems = await dropAllClusters();
    if (problems.length) log(`could not drop: ${problems.join("; ")}`);
  }
}

export function formatRevokeCut(r: RevokeCutReport): string {
  const lines = [`== revoke-cut: the database lost for ${r.downMs} ms right after a revocation's COMMIT was answered, 1 replica (revocation poll interval ${r.pollInterval}): ${r.ok ? "PASS" : "FAIL"} (${(r.durationMs / 1000).toFixed(1)} s)`];
  for (const [i, round] of r.rounds.entries()) {
    lines.push(
      `  round ${i}: RevokeSession ${round.revoke}; VerifyToken on the same replica right after: ${round.verifyRightAfter}; last accepted ${round.acceptedUntilMs === undefined ? "—" : `${round.acceptedUntilMs} ms`}, first refused ${round.refusedAfterMs === undefined ? "—" : `${round.refusedAfterMs} ms`} after the acknowledgement; meanwhile ${JSON.stringify(round.meanwhile)}`,
    );
  }
  lines.push(`  server log: ${r.feedPollFailures} "revocation feed poll failed" warnings`);
  if (r.problems.length) {
    lines.push("PROBLEMS:");
    for (const p of r.problems) lines.push(`  - ${p}`);
  }
  return lines.join("\n");
}
