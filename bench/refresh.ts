// Issue 15: Refresh throughput at 64 sessions in flight, each presenting the
// fresh refresh token its previous refresh returned (bench/loadgen.ts follows
// the rotated chain per session, so no request is a reuse), against
//   - the rotation floor of the same PostgreSQL database in the same run:
//     pgbench, 16 clients, prepared protocol, each client walking its own
//     chain of rows in Tessera's real refresh_tokens table
//     (UPDATE … WHERE hash = $1 AND used_at IS NULL RETURNING …; INSERT …;
//     COMMIT), measured before and after Tessera's load;
//   - the peer (oidc-provider's refresh_token grant with rotation, same
//     generator over HTTP/1.1);
// with the server's RSS sampled during the load. Then Tessera on PGlite.
// Every session must survive: after the load each session's last token is
// refreshed once more with a real gRPC client.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createChannel, createClient } from "nice-grpc";
import { RefreshServiceDefinition } from "@tessera/client";
import { runLoad, type LoadResult } from "./loadgen.ts";
import { genLine, peerRefresh, peerVersion, startPeer } from "./peer.ts";
import { serverVersion, throwawayDatabase, type ThrowawayDatabase } from "./pg.ts";
import { cpuBetween, postgresSnapshot, requireTool, rssMb, sampleRss } from "./proc.ts";
import { seedSessions, type Seeded } from "./seed.ts";
import { round, startServer } from "./server.ts";

const REFRESH = "/tessera.identity.v1.RefreshService/Refresh";
const SESSIONS = 64;

export interface FloorResult {
  tps: number;
  transactions: number;
  /** Every UPDATE found its live row (used rows counted afterwards = transactions). */
  rotated: number;
  postgresCores: number;
  pgbenchCores: number;
}

/**
 * pgbench on Tessera's own tables: each client rotates its own chain
 * (`floor<run>-<client>-<seq>`, hashed to 64 hex digits like Tessera's
 * SHA-256 token hashes) within the session it is given; \gset takes the
 * session from the UPDATE's RETURNING, and fails the transaction if the
 * UPDATE found no live row.
 */
async function rotationFloor(db: ThrowawayDatabase, sessionIds: string[], run: number, seconds: number, clients = 16): Promise<FloorResult> {
  const key = (client: string, seq: string) => `encode(sha256(convert_to('floor${run}-' || ${client} || '-' || ${seq}, 'UTF8')), 'hex')`;
  await db.query(
    `insert into refresh_tokens (hash, session_id, created_at, expires_at, used_at)
     select ${key("c::text", "'1'")}, ($1::uuid[])[c + 1], now(), now() + interval '30 days', null from generate_series(0, $2::int - 1) c`,
    [Array.from({ length: clients }, (_, c) => sessionIds[c % sessionIds.length]), clients],
  );
  const dir = mkdtempSync(join(tmpdir(), "tessera-bench-floor-"));
  try {
    const script = join(dir, "rotate.sql");
    writeFileSync(
      script,
      [
        "\\set next :seq + 1",
        "BEGIN;",
        `UPDATE refresh_tokens SET used_at = now() WHERE hash = ${key(":client_id::text", ":seq::text")} AND used_at IS NULL RETURNING session_id, expires_at \\gset`,
        `INSERT INTO refresh_tokens (hash, session_id, created_at, expires_at, used_at) VALUES (${key(":client_id::text", ":next::text")}, :session_id::uuid, now(), now() + interval '30 days', NULL);`,
        "COMMIT;",
        "\\set seq :next",
        "",
      ].join("\n"),
    );
    const pgBefore = postgresSnapshot();
    const started = performance.now();
    const out = execFileSync(
      "/bin/sh",
      ["-c", 'pgbench "$@"; rc=$?; echo "SHELLSTAT $(cat /proc/$$/stat)"; exit $rc', "sh", "-n", "-M", "prepared", "-c", String(clients), "-j", "2", "-T", String(seconds), "-D", "seq=1", "-f", script, ...db.cliArgs],
      { encoding: "utf8", env: { ...process.env, ...db.cliEnv }, stdio: ["ignore", "pipe", "pipe"] },
    );
    const wall = (performance.now() - started) / 1000;
    const pgCpu = cpuBetween(pgBefore, postgresSnapshot());
    const tps = Number(/tps = ([\d.]+) \(without initial connection time\)/.exec(out)?.[1]);
    const transactions = Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1]);
    const stat = /SHELLSTAT (.*)/.exec(out)?.[1] ?? "";
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const rotated = Number(
      (await db.query(`select count(*)::int as n from refresh_tokens where used_at is not null and hash in (select ${key("c::text", "s::text")} from generate_series(0, $1::int - 1) c, generate_series(1, $2::int) s)`, [clients, transactions + clients])).rows[0].n,
    );
    if (!tps || rotated !== transactions) throw new Error(`pgbench floor: ${transactions} transactions but ${rotated} rotated rows\n${out}`);
    return { tps, transactions, rotated, postgresCores: pgCpu / wall, pgbenchCores: (Number(rest[13]) + Number(rest[14])) / 100 / wall };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface TesseraRefresh {
  load: LoadResult;
  /** RSS of the idle server after start, before any login. */
  startRssMb: number;
  /** RSS of the idle server after the logins that seeded the sessions (argon2 leaves memory behind). */
  idleRssMb: number;
  peakRssMb: number;
  /** Sessions whose last token no longer refreshed afterwards (an honest client logged out). */
  lost: number;
}

async function idleRss(pid: number): Promise<number> {
  await new Promise((r) => setTimeout(r, 1000));
  return rssMb(pid);
}

async function tesseraRefresh(grpcPort: number, pid: number, seconds: number, watchPostgres: boolean, startRssMb: number, seeded?: Seeded): Promise<TesseraRefresh> {
  seeded ??= await seedSessions(grpcPort, SESSIONS);
  const channel = createChannel(`127.0.0.1:${grpcPort}`);
  try {
    const refresh = createClient(RefreshServiceDefinition, channel);
    // One real call first: the generator does not decode grpc-status, a real client does.
    const first = await refresh.refresh({ refreshToken: seeded.sessions[0]!.refreshToken });
    const tokens = seeded.sessions.map((s) => s.refreshToken);
    tokens[0] = first.refreshToken;
    const idleRssMb = await idleRss(pid);
    const rss = sampleRss(pid);
    const load = await runLoad({ protocol: "grpc", port: grpcPort, path: REFRESH, connections: 4, mode: "chain", tokens, inFlight: SESSIONS, warmupSeconds: 2, seconds, serverPid: pid, watchPostgres });
    const { peakMb } = rss.stop();
    let lost = 0;
    for (const token of load.finalTokens ?? []) {
      if (!token) lost++;
      else await refresh.refresh({ refreshToken: token }).catch(() => lost++);
    }
    return { load, startRssMb, idleRssMb, peakRssMb: peakMb, lost };
  } finally {
    channel.close();
  }
}

export interface RefreshResult {
  postgresVersion: string;
  floorBefore: FloorResult;
  floorAfter: FloorResult;
  floorTps: number;
  postgres: TesseraRefresh;
  peer: { load: LoadResult; peakRssMb: number; idleRssMb: number; lost: number };
  pglite: TesseraRefresh;
}

export async function benchRefresh(seconds = 12): Promise<RefreshResult> {
  requireTool("pgbench", ["--version"], "apt-get install -y postgresql-client (pgbench)");
  const postgresVersion = await serverVersion();
  const db = await throwawayDatabase("refresh");
  const dir = mkdtempSync(join(tmpdir(), "tessera-bench-refresh-"));
  let floorBefore: FloorResult;
  let floorAfter: FloorResult;
  let postgres: TesseraRefresh;
  try {
    const server = await startServer(dir, { DATABASE_URL: db.url, TESSERA_MASTER_KEY: randomBytes(32).toString("hex") });
    try {
      // Sessions logged in through the API; the floor's chains hang off 16 of them (their own rows).
      const startRssMb = await idleRss(server.child.pid!);
      const seeded = await seedSessions(server.grpcPort, SESSIONS);
      const floorSessions = seeded.sessions.slice(0, 16).map((s) => s.sessionId);
      floorBefore = await rotationFloor(db, floorSessions, 1, seconds);
      postgres = await tesseraRefresh(server.grpcPort, server.child.pid!, seconds, true, startRssMb, seeded);
      floorAfter = await rotationFloor(db, floorSessions, 2, seconds);
    } finally {
      await server.stop();
    }
  } finally {
    await db.drop();
    rmSync(dir, { recursive: true, force: true });
  }

  const peerProcess = await startPeer();
  let peer: RefreshResult["peer"];
  try {
    await new Promise((r) => setTimeout(r, 500));
    const idleRssMb = rssMb(peerProcess.child.pid);
    const rss = sampleRss(peerProcess.child.pid);
    const load = await peerRefresh(peerProcess, seconds, SESSIONS);
    peer = { load, idleRssMb, peakRssMb: rss.stop().peakMb, lost: load.finalTokens?.filter((t) => t === null).length ?? 0 };
  } finally {
    await peerProcess.stop();
  }

  const liteDir = mkdtempSync(join(tmpdir(), "tessera-bench-refresh-pglite-"));
  let pglite: TesseraRefresh;
  try {
    const server = await startServer(liteDir, { DATABASE_URL: "" });
    try {
      pglite = await tesseraRefresh(server.grpcPort, server.child.pid!, seconds, false, await idleRss(server.child.pid!));
    } finally {
      await server.stop();
    }
  } finally {
    rmSync(liteDir, { recursive: true, force: true });
  }
  return { postgresVersion, floorBefore, floorAfter, floorTps: (floorBefore.tps + floorAfter.tps) / 2, postgres, peer, pglite };
}

const rssLine = (t: TesseraRefresh) =>
  `after start ${round(t.startRssMb)} MB, after the ${SESSIONS} seeding logins ${round(t.idleRssMb)} MB, peak under the refresh load ${round(t.peakRssMb)} MB`;

export function reportRefresh(r: RefreshResult): string {
  const floor = (f: FloorResult) => `${round(f.tps, 0)} tx/s (${f.transactions} rotations, all on a live row; CPU (cores busy): postgres ${f.postgresCores.toFixed(2)}, pgbench ${f.pgbenchCores.toFixed(2)})`;
  const pct = (a: number, b: number) => `${round((a / b) * 100)} %`;
  const t = r.postgres.load.rps;
  return [
    `PostgreSQL ${r.postgresVersion} at the BENCH_PG_URL server, throwaway databases; 64 sessions of 16 users, 64 refreshes in flight, each with the token its previous refresh returned`,
    `rotation floor (pgbench -M prepared -c 16, Tessera's refresh_tokens), before: ${floor(r.floorBefore)}`,
    `rotation floor, after Tessera's load:                                  ${floor(r.floorAfter)}`,
    `Tessera Refresh on PostgreSQL: ${genLine(r.postgres.load)}; sessions lost: ${r.postgres.lost}`,
    `  server RSS: ${rssLine(r.postgres)}  (target < 200 MB under this load: ${r.postgres.peakRssMb < 200 ? "met" : "MISSED"})`,
    `peer (oidc-provider ${peerVersion()}) refresh_token grant: ${genLine(r.peer.load)}; sessions lost: ${r.peer.lost}; RSS idle ${round(r.peer.idleRssMb)} MB, peak ${round(r.peer.peakRssMb)} MB`,
    `Tessera Refresh on PGlite: ${genLine(r.pglite.load)}; sessions lost: ${r.pglite.lost}`,
    `  server RSS: ${rssLine(r.pglite)}`,
    `ratio Tessera (PostgreSQL) / rotation floor (mean of before and after, ${round(r.floorTps, 0)} tx/s): ${pct(t, r.floorTps)}  (target >= 60 %: ${t >= 0.6 * r.floorTps ? "met" : "MISSED"})`,
    `ratio Tessera (PostgreSQL) / peer: ${pct(t, r.peer.load.rps)}  (target >= 100 %: ${t >= r.peer.load.rps ? "met" : "MISSED"})`,
    `ratio Tessera (PGlite) / rotation floor: ${pct(r.pglite.load.rps, r.floorTps)}; / peer: ${pct(r.pglite.load.rps, r.peer.load.rps)}`,
    `sessions lost (target 0): PostgreSQL ${r.postgres.lost}, PGlite ${r.pglite.lost}, peer ${r.peer.lost}`,
  ].join("\n");
}
