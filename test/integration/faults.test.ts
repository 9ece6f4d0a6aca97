// Faults with real server processes (src/main.ts, the sources `npm start` builds and runs) on the real PostgreSQL:
//  1. kill -9 of a replica in the middle of a burst of refreshes: every session the client holds
//     still refreshes on the other replica (or was revoked on purpose), and the database has one
//     live refresh token per session: each rotation happened entirely or not at all.
//  2. SIGTERM under load: calls the server has received complete OK, later ones fail only with
//     UNAVAILABLE having done nothing, and the process exits 0 within TESSERA_SHUTDOWN_GRACE.
//  3. A rolling restart of two replicas behind a balancer: a client calling steadily sees only
//     successes and UNAVAILABLE, and a write that failed did nothing.
// Nothing here times the server: every wait is a bounded poll, and the bounds are generous for
// two cores shared with other test files.
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { ClientError, createTesseraClient, errorReason, Status, type TesseraClient, type TesseraClientOptions } from "@tessera/client";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hashRefreshToken } from "../../src/tokens/session-store.ts";
import { TcpBalancer, type Target } from "../support/balancer.ts";
import { startServerProcess, type ServerProcess } from "../support/process.ts";
import { ADMIN_PASSWORD, freshPostgresDatabase } from "../support/server.ts";

const databaseUrl = process.env.TEST_DATABASE_URL;

const PASSWORD_LOGIN = { $case: "password" as const, value: { tenant: "system", username: "admin", password: ADMIN_PASSWORD } };

/** The status name of a failed call ("UNAVAILABLE"), or what else was thrown. */
function codeOf(error: unknown): string {
  return error instanceof ClientError ? Status[error.code] : `not a gRPC error: ${String(error)}`;
}

/** Polls `check` until it is true, for at most `ms`. */
async function until(ms: number, check: () => boolean | Promise<boolean>, every = 20): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > end) return false;
    await sleep(every);
  }
}

/** The exit of a server process: code and signal, or a rejection after `ms` (a hang). */
async function exitOf(server: ServerProcess, ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  const { child } = server;
  if (child.exitCode !== null || child.signalCode !== null) return { code: child.exitCode, signal: child.signalCode };
  const timer = sleep(ms).then(() => Promise.reject(new Error(`server did not exit within ${ms} ms:\n${server.output().slice(-4000)}`)));
  const [code, signal] = (await Promise.race([once(child, "exit"), timer])) as [number | null, NodeJS.Signals | null];
  return { code, signal };
}

/** SDK clients without retries: each call is one call to the server. */
function plainClient(address: string, options: TesseraClientOptions = {}): TesseraClient {
  return createTesseraClient(address, { retry: false, defaultDeadlineMs: 60_000, ...options });
}

/**
 * A fresh PostgreSQL database for a set of replicas: the environment they share (same
 * DATABASE_URL and TESSERA_MASTER_KEY), and a pg client on it for looking at the tables.
 */
async function replicaDatabase(extra: Record<string, string> = {}) {
  const db = await freshPostgresDatabase(databaseUrl!);
  const dataDir = mkdtempSync(join(tmpdir(), "tessera-faults-"));
  const sql = new pg.Client({ connectionString: db.url });
  const env: Record<string, string> = {
    DATABASE_URL: db.url,
    TESSERA_MASTER_KEY: "33".repeat(32),
    TESSERA_ADMIN_PASSWORD: ADMIN_PASSWORD,
    TESSERA_DATA_DIR: dataDir,
    ...extra,
  };
  return {
    env,
    sql,
    async close() {
      await sql.end().catch(() => undefined);
      await db.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Counts of the token tables. */
async function tokenCounts(sql: pg.Client) {
  const { rows } = await sql.query<{ sessions: number; tokens: number; used: number; shared: number }>(
    `select (select count(*) from sessions)::int as sessions,
            (select count(*) from refresh_tokens)::int as tokens,
            (select count(*) from refresh_tokens where used_at is not null)::int as used,
            (select count(*) from refresh_tokens where shared)::int as shared`,
  );
  return rows[0]!;
}

/** Whether a refresh token has been spent (null: no such token). */
async function isUsed(sql: pg.Client, token: string): Promise<boolean | null> {
  const { rows } = await sql.query<{ used: boolean }>("select used_at is not null as used from refresh_tokens where hash = $1", [hashRefreshToken(token)]);
  return rows[0]?.used ?? null;
}

/** Logs in `n` times, a few at a time (argon2 on two cores). */
async function logins(client: TesseraClient, n: number) {
  const out: Awaited<ReturnType<TesseraClient["issue"]["issueToken"]>>[] = [];
  for (let i = 0; i < n; i += 4) {
    out.push(...(await Promise.all(Array.from({ length: Math.min(4, n - i) }, () => client.issue.issueToken({ credential: PASSWORD_LOGIN, requestedPermissions: [] })))));
  }
  return out;
}

describe.skipIf(!databaseUrl)("kill -9 of a replica during a burst of refreshes", () => {
  let db: Awaited<ReturnType<typeof replicaDatabase>>;
  let a: ServerProcess;
  let b: ServerProcess;

  beforeAll(async () => {
    // The grace window is at its maximum so that a slow machine between the kill and the
    // client's retry on B cannot turn a lost response into reuse; the test takes seconds.
    db = await replicaDatabase({ TESSERA_REFRESH_GRACE: "60s" });
    // One at a time: the first migrates and bootstraps.
    a = await startServerProcess(db.env);
    b = await startServerProcess(db.env);
    await db.sql.connect();
  }, 120_000);
  afterAll(async () => {
    a?.child.kill("SIGKILL");
    await b?.stop();
    await db?.close();
  });

  it("every session the client holds refreshes on B afterwards (or was revoked on purpose), with one live token per session", async () => {
    const SESSIONS = 40;
    /** Logged out on purpose (on B) during the burst: these, and only these, may end. */
    const REVOKE = new Set([3, 13, 23, 33]);
    const REVOKE_AFTER = 40; // successful refreshes in the burst
    const KILL_AFTER = 160;
    const clientA = plainClient(a.grpcAddress);
    const clientB = plainClient(b.grpcAddress);
    const monitor = { ok: 0, okAfterKill: 0, failures: [] as string[], stop: false };
    try {
      const issued = await logins(clientB, SESSIONS);
      const chains = issued.map((r, i) => ({
        i,
        sessionId: r.sessionId,
        access: r.accessToken,
        /** The token the client holds: the last successor it received (what it presents next). */
        held: r.refreshToken,
        rotations: 0,
        failure: undefined as undefined | { code: string; reason?: string; afterKill: boolean },
      }));

      // B serves throughout: a verification and a refresh chain of its own, back to back.
      const [monitorLogin] = await logins(clientB, 1);
      let monitorToken = monitorLogin!.refreshToken;
      let killed = false;
      const monitoring = (async () => {
        while (!monitor.stop) {
          try {
            await clientB.verify.verifyToken({ token: monitorLogin!.accessToken, audience: "" });
            monitorToken = (await clientB.refresh.refresh({ refreshToken: monitorToken, requestedPermissions: [] })).refreshToken;
            monitor.ok++;
            if (killed) monitor.okAfterKill++;
          } catch (error) {
            monitor.failures.push(`${codeOf(error)} ${errorReason(error) ?? ""}`);
          }
          await sleep(10);
        }
      })();

      let refreshed = 0;
      let revoking: Promise<unknown> | undefined;
      const kill = () => {
        a.child.kill("SIGKILL");
        killed = true;
      };
      // Each session follows its own chain against A until a call fails (A is gone, or the session was revoked).
      const burst = chains.map(async (chain) => {
        for (let n = 0; n < 2_000; n++) {
          try {
            const r = await clientA.refresh.refresh({ refreshToken: chain.held, requestedPermissions: [] });
            chain.held = r.refreshToken;
            chain.access = r.accessToken;
            chain.rotations++;
            refreshed++;
            if (refreshed === REVOKE_AFTER) {
              revoking = Promise.all([...REVOKE].map((i) => clientB.withToken(chains[i]!.access).issue.revokeSession({ sessionId: "" })));
            }
            if (refreshed === KILL_AFTER) kill();
          } catch (error) {
            // The token presented stays the one held: the client cannot know whether A rotated it.
            chain.failure = { code: codeOf(error), reason: errorReason(error), afterKill: killed };
            return;
          }
        }
      });
      await Promise.all(burst);
      await revoking;
      expect(killed, `A was killed mid-burst (after ${refreshed} refreshes)`).toBe(true);
      expect(await exitOf(a, 30_000)).toEqual({ code: null, signal: "SIGKILL" });

      // The client's view: the sessions revoked on purpose were refused by A at their next refresh
      // (or the kill came first); every other chain was cut by the kill, with the connection.
      for (const chain of chains) {
        expect(chain.failure, `session ${chain.i} ended`).toBeDefined();
        if (REVOKE.has(chain.i) && chain.failure!.code !== "UNAVAILABLE") {
          expect(chain.failure).toMatchObject({ code: "UNAUTHENTICATED", reason: "SESSION_REVOKED" });
        } else {
          expect(chain.failure, `session ${chain.i}'s call failed only because A was killed`).toMatchObject({ code: "UNAVAILABLE", afterKill: true });
        }
      }

      // The database right after the kill: each session has exactly one unused token (a revoked one
      // at most one), and the chain in the database is the client's, give or take the one rotation
      // whose answer the kill lost.
      const { rows } = await db.sql.query<{ id: string; revoked: boolean; reason: string | null; total: number; live: number; used: number }>(
        `select s.id, s.revoked_at is not null as revoked, s.revoke_reason as reason, count(r.hash)::int as total,
                (count(r.hash) filter (where r.used_at is null))::int as live, (count(r.hash) filter (where r.used_at is not null))::int as used
           from sessions s left join refresh_tokens r on r.session_id = s.id
          where s.id = any($1::uuid[]) group by s.id`,
        [chains.map((c) => c.sessionId)],
      );
      const byId = new Map(rows.map((r) => [r.id, r]));
      let lostAnswers = 0;
      for (const chain of chains) {
        const row = byId.get(chain.sessionId)!;
        const lost = (await isUsed(db.sql, chain.held))!;
        if (lost) lostAnswers++;
        // used = rotations the client saw, plus one if A committed the last one but its answer was lost.
        expect({ session: chain.i, used: row.used }).toEqual({ session: chain.i, used: chain.rotations + (lost ? 1 : 0) });
        if (REVOKE.has(chain.i)) {
          expect({ session: chain.i, revoked: row.revoked, reason: row.reason }).toEqual({ session: chain.i, revoked: true, reason: "logout" });
          // Revoked while a rotation was under way, the claim may have stored no successor.
          expect(row.live).toBeLessThanOrEqual(1);
        } else {
          expect({ session: chain.i, revoked: row.revoked, live: row.live, total: row.total }).toEqual({ session: chain.i, revoked: false, live: 1, total: row.used + 1 });
        }
      }

      // Every token the client holds, presented to B: a refresh (the same successor again, for a
      // rotation whose answer was lost), then one more to show the chain goes on.
      const recovered = await Promise.all(
        chains.map(async (chain) => {
          try {
            const first = await clientB.refresh.refresh({ refreshToken: chain.held, requestedPermissions: [] });
            const second = await clientB.refresh.refresh({ refreshToken: first.refreshToken, requestedPermissions: [] });
            return { i: chain.i, outcome: "refreshed", token: second.refreshToken };
          } catch (error) {
            return { i: chain.i, outcome: `${codeOf(error)} ${errorReason(error) ?? ""}`, token: "" };
          }
        }),
      );
      for (const r of recovered) {
        expect({ session: r.i, outcome: r.outcome }).toEqual({ session: r.i, outcome: REVOKE.has(r.i) ? "UNAUTHENTICATED SESSION_REVOKED" : "refreshed" });
      }
      // No session was lost: none revoked but those on purpose, and each live chain ends in the token the client holds.
      const after = await db.sql.query<{ id: string; revoked: boolean; live: string[] }>(
        `select s.id, s.revoked_at is not null as revoked, coalesce(array_agg(r.hash) filter (where r.used_at is null), '{}') as live
           from sessions s left join refresh_tokens r on r.session_id = s.id
          where s.id = any($1::uuid[]) group by s.id`,
        [chains.map((c) => c.sessionId)],
      );
      const afterById = new Map(after.rows.map((r) => [r.id, r]));
      for (const r of recovered) {
        if (REVOKE.has(r.i)) continue;
        const row = afterById.get(chains[r.i]!.sessionId)!;
        expect({ session: r.i, revoked: row.revoked, live: row.live }).toEqual({ session: r.i, revoked: false, live: [hashRefreshToken(r.token)] });
      }

      monitor.stop = true;
      await monitoring;
      expect(monitor.failures, "B failed no call").toEqual([]);
      expect(monitor.okAfterKill, "B kept serving after the kill").toBeGreaterThan(0);
      console.info(`kill -9: ${refreshed} refreshes on A, ${lostAnswers} rotation(s) committed with the answer lost, recovered through the grace window`);
    } finally {
      monitor.stop = true;
      clientA.close();
      clientB.close();
    }
  }, 240_000);
});

describe.skipIf(!databaseUrl)("SIGTERM under load", () => {
  const GRACE_SECONDS = 30;
  let db: Awaited<ReturnType<typeof replicaDatabase>>;
  let server: ServerProcess;

  beforeAll(async () => {
    // One argon2 at a time: logins queue up on the server, so that some are surely in flight.
    db = await replicaDatabase({ TESSERA_SHUTDOWN_GRACE: `${GRACE_SECONDS}s`, TESSERA_PASSWORD_HASH_CONCURRENCY: "1" });
    server = await startServerProcess(db.env);
    await db.sql.connect();
  }, 120_000);
  afterAll(async () => {
    server?.child.kill("SIGKILL");
    await db?.close();
  });

  it("completes every call in flight, refuses later ones with UNAVAILABLE having done nothing, and exits 0", async () => {
    const client = plainClient(server.grpcAddress);
    let stop = false;
    try {
      const [admin, ...refreshLogins] = await logins(client, 5);
      const before = await tokenCounts(db.sql);

      type Kind = "verify" | "issue" | "refresh";
      interface Call {
        kind: Kind;
        afterSignal: boolean;
        pending: boolean;
        inFlightAtSignal?: boolean;
        code?: string;
      }
      const calls: Call[] = [];
      let signalled = false;
      const held = refreshLogins.map((r) => r.refreshToken);
      const operations: Record<Kind, (worker: number) => Promise<unknown>> = {
        verify: () => client.verify.verifyToken({ token: admin!.accessToken, audience: "" }),
        issue: () => client.issue.issueToken({ credential: PASSWORD_LOGIN, requestedPermissions: [] }),
        refresh: async (w) => {
          held[w] = (await client.refresh.refresh({ refreshToken: held[w]!, requestedPermissions: [] })).refreshToken;
        },
      };
      const worker = async (kind: Kind, w: number) => {
        for (let n = 0; n < 100_000 && !stop; n++) {
          const call: Call = { kind, afterSignal: signalled, pending: true };
          calls.push(call);
          try {
            await operations[kind](w);
            call.code = "OK";
          } catch (error) {
            call.code = codeOf(error);
          } finally {
            call.pending = false;
          }
          await sleep(call.code === "OK" ? (kind === "verify" ? 5 : 0) : 50);
        }
      };
      const load = [
        ...Array.from({ length: 8 }, (_, w) => worker("issue", w)),
        ...Array.from({ length: 3 }, (_, w) => worker("verify", w)),
        ...held.map((_, w) => worker("refresh", w)),
      ];
      const ok = (kind: Kind) => calls.filter((c) => c.kind === kind && c.code === "OK").length;
      expect(await until(120_000, () => ok("issue") >= 8 && ok("verify") >= 20 && ok("refresh") >= 8), "the load got going").toBe(true);

      // Calls the server has surely received: pending before a probe call on the same connection
      // (HTTP/2 frames arrive in order) that the server has answered, and still pending now.
      let inFlight: Call[] = [];
      for (let attempt = 0; attempt < 100 && inFlight.length < 3; attempt++) {
        const snapshot = calls.filter((c) => c.pending);
        await sleep(20);
        await client.verify.verifyToken({ token: admin!.accessToken, audience: "" });
        inFlight = snapshot.filter((c) => c.pending);
      }
      expect(inFlight.length, "calls in flight at the signal").toBeGreaterThanOrEqual(3);
      const signalAt = Date.now();
      server.child.kill("SIGTERM");
      signalled = true;
      for (const c of inFlight) c.inFlightAtSignal = true;

      const exit = await exitOf(server, (GRACE_SECONDS + 60) * 1000);
      const exitMs = Date.now() - signalAt;
      // A little more load against the closed port: refused, UNAVAILABLE.
      const seen = calls.length;
      await until(30_000, () => calls.length >= seen + 10);
      stop = true;
      await Promise.all(load);

      expect(inFlight.map((c) => `${c.kind} ${c.code}`), "every call in flight at the signal completed").toEqual(inFlight.map((c) => `${c.kind} OK`));
      const failures = calls.filter((c) => c.code !== "OK");
      expect(failures.filter((c) => c.code !== "UNAVAILABLE").map((c) => `${c.kind} ${c.code} (after the signal: ${c.afterSignal})`), "no failure but UNAVAILABLE").toEqual([]);
      expect(failures.length, "calls after the exit failed").toBeGreaterThan(0);
      expect(calls.filter((c) => c.afterSignal && c.code === "UNAVAILABLE").length).toBeGreaterThan(0);
      expect(exit).toEqual({ code: 0, signal: null });
      expect(exitMs, "exited within TESSERA_SHUTDOWN_GRACE").toBeLessThan(GRACE_SECONDS * 1000);
      expect(server.output()).toContain('"stopped"');
      expect(server.output()).not.toContain("shutdown failed");

      // A failed write did nothing: one session per login answered OK, one spent token and one
      // successor per refresh answered OK, no token handed out twice, and each refresh chain's
      // live token is the one the client holds.
      const after = await tokenCounts(db.sql);
      const [okIssue, okRefresh] = [ok("issue"), ok("refresh")];
      expect({ sessions: after.sessions - before.sessions, tokens: after.tokens - before.tokens, used: after.used - before.used, shared: after.shared })
        .toEqual({ sessions: okIssue, tokens: okIssue + okRefresh, used: okRefresh, shared: 0 });
      for (const token of held) expect(await isUsed(db.sql, token)).toBe(false);
      const count = (kind: Kind, code: string) => calls.filter((c) => c.kind === kind && c.code === code).length;
      console.info(
        `SIGTERM: ${inFlight.length} calls in flight completed; exit after ${exitMs} ms; ` +
          (["issue", "verify", "refresh"] as const).map((k) => `${k} ${count(k, "OK")} OK / ${count(k, "UNAVAILABLE")} UNAVAILABLE`).join(", "),
      );
    } finally {
      stop = true;
      client.close();
    }
  }, 240_000);
});

describe.skipIf(!databaseUrl)("rolling restart of two replicas behind a balancer", () => {
  let db: Awaited<ReturnType<typeof replicaDatabase>>;
  const replicas: ServerProcess[] = [];
  let balancer: TcpBalancer;
  const targetOf = (s: ServerProcess): Target => ({ host: "127.0.0.1", port: Number(s.grpcAddress.split(":").pop()) });

  beforeAll(async () => {
    db = await replicaDatabase({ TESSERA_SHUTDOWN_GRACE: "30s" });
    replicas.push(await startServerProcess(db.env));
    replicas.push(await startServerProcess(db.env));
    balancer = await new TcpBalancer(replicas.map(targetOf)).start();
    await db.sql.connect();
  }, 120_000);
  afterAll(async () => {
    await balancer?.close();
    for (const r of replicas) r.child.kill("SIGKILL");
    await db?.close();
  });

  it("a steady client sees only successes and UNAVAILABLE, and a failed write did nothing", async () => {
    const CLIENTS = 4;
    const direct = plainClient(replicas[0]!.grpcAddress);
    // Each client on a connection of its own (grpc-js would otherwise share one), read-only calls
    // retried by the SDK on UNAVAILABLE, writes never.
    const clientOptions = {
      retry: { maxRetries: 6, baseDelayMs: 50, maxDelayMs: 500 },
      defaultDeadlineMs: 60_000,
      channelOptions: { "grpc.use_local_subchannel_pool": 1 },
    };
    const clients = Array.from({ length: CLIENTS }, () => createTesseraClient(balancer.address, clientOptions));
    let stop = false;
    try {
      const [admin, ...sessions] = await logins(direct, 1 + CLIENTS);
      const before = await tokenCounts(db.sql);
      let phase = "both up";
      type Kind = "verify" | "listTenants" | "refresh" | "createTenant" | "issueToken";
      const results: { kind: Kind; phase: string; code: string }[] = [];
      const held = sessions.map((s) => s.refreshToken);
      const created = new Set<string>();
      const wrongWrites: string[] = [];

      const loop = async (c: number) => {
        const client = clients[c]!.withToken(admin!.accessToken);
        // Logins are slow (argon2): some are in flight whenever a replica is told to stop.
        const kinds: Kind[] = ["verify", "refresh", "listTenants", "createTenant", "issueToken"];
        for (let n = 0; n < 100_000 && !stop; n++) {
          const kind = kinds[n % kinds.length]!;
          const name = `roll-${c}-${n}`;
          const presented = held[c]!;
          let code = "OK";
          try {
            if (kind === "verify") await client.verify.verifyToken({ token: admin!.accessToken, audience: "" });
            else if (kind === "listTenants") await client.tenants.listTenants({ pageSize: 5, pageToken: "" });
            else if (kind === "refresh") held[c] = (await clients[c]!.refresh.refresh({ refreshToken: presented, requestedPermissions: [] })).refreshToken;
            else if (kind === "issueToken") await clients[c]!.issue.issueToken({ credential: PASSWORD_LOGIN, requestedPermissions: [] });
            else {
              await client.tenants.createTenant({ tenant: { name } });
              created.add(name);
            }
          } catch (error) {
            code = codeOf(error);
            // A failed write must have done nothing (so that a retry is safe).
            if (kind === "refresh" && (await isUsed(db.sql, presented)) !== false) wrongWrites.push(`refresh of ${c} failed ${code} yet rotated the token`);
            if (kind === "createTenant") {
              const { rowCount } = await db.sql.query("select 1 from tenants where name = $1", [name]);
              if (rowCount) wrongWrites.push(`createTenant ${name} failed ${code} yet created it`);
            }
          }
          results.push({ kind, phase, code });
          await sleep(code === "OK" ? 10 : 50);
        }
      };
      const load = clients.map((_, c) => loop(c));
      const okIn = (p: string) => results.filter((r) => r.phase === p && r.code === "OK").length;
      const goesOn = async (p: string) => expect(await until(120_000, () => okIn(p) >= 40), `calls succeed (${p})`).toBe(true);

      await goesOn(phase);
      for (const which of [0, 1]) {
        const name = which === 0 ? "A" : "B";
        phase = `${name} stopping`;
        replicas[which]!.child.kill("SIGTERM");
        expect(await exitOf(replicas[which]!, 90_000), `${name} exited 0 after SIGTERM`).toEqual({ code: 0, signal: null });
        phase = `${name} down`;
        const fresh = await startServerProcess(db.env);
        replicas[which] = fresh;
        balancer.setTargets(replicas.map(targetOf));
        phase = `${name} restarted`;
        await goesOn(phase);
      }
      stop = true;
      await Promise.all(load);

      // Both new replicas serve through the balancer: two new connections, one to each.
      for (let probe = 0; probe < 2; probe++) {
        const fresh = createTesseraClient(balancer.address, clientOptions);
        try {
          await fresh.withToken(admin!.accessToken).verify.verifyToken({ token: admin!.accessToken, audience: "" });
        } finally {
          fresh.close();
        }
      }
      for (const r of replicas) expect(balancer.connectionsTo(targetOf(r)), `${r.grpcAddress} was given connections`).toBeGreaterThan(0);

      const failures = results.filter((r) => r.code !== "OK");
      expect(failures.filter((r) => r.code !== "UNAVAILABLE").map((r) => `${r.kind} ${r.code} (${r.phase})`), "no failure but UNAVAILABLE").toEqual([]);
      expect(wrongWrites).toEqual([]);
      // Where each write went: the tenants created are exactly those answered OK; one session per
      // login answered OK; one spent token per refresh answered OK, no token handed out twice (a
      // retry of a rotated token would be), and each chain's live token is the one its client holds.
      const { rows } = await db.sql.query<{ name: string }>("select name from tenants where name like 'roll-%'");
      expect(rows.map((r) => r.name).sort()).toEqual([...created].sort());
      const after = await tokenCounts(db.sql);
      const okOf = (kind: Kind) => results.filter((r) => r.kind === kind && r.code === "OK").length;
      expect({ sessions: after.sessions - before.sessions, used: after.used - before.used, shared: after.shared })
        .toEqual({ sessions: okOf("issueToken"), used: okOf("refresh"), shared: 0 });
      for (const token of held) expect(await isUsed(db.sql, token)).toBe(false);

      const byPhase = [...new Set(results.map((r) => r.phase))].map((p) => {
        const inPhase = results.filter((r) => r.phase === p);
        const failed = inPhase.filter((r) => r.code !== "OK").map((r) => r.kind);
        return `${p}: ${inPhase.length - failed.length} OK, ${failed.length} UNAVAILABLE${failed.length ? ` (${failed.join(", ")})` : ""}`;
      });
      console.info(`rolling restart: ${byPhase.join("; ")}; the balancer had ${balancer.refused} connection(s) refused`);
    } finally {
      stop = true;
      direct.close();
      clients.forEach((c) => c.close());
    }
  }, 300_000);
});
