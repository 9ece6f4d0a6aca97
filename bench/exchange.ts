// Token exchange (Region System): IssueToken with the `service_assertion`
// credential at 64 in flight, each request a distinct pre-signed assertion
// (sent once: the server remembers every jti), on the embedded PGlite (the
// default) and on PostgreSQL, against the peer's client_credentials grant
// with EdDSA JWT access tokens (h2load --h1 -c 64; measured before and after
// Tessera's loads, the mean is the reference), all in the same run, with
// the RSS of both servers sampled under load.
//
// The assertions are signed in this process before the measured window
// (test/support/assertions.ts: Ed25519, a fresh jti each, 5 min lifetime,
// audience = the server's TESSERA_ISSUER), enough for BENCH_ASSERTION_RATE
// (default 10 000) exchanges per second of warm-up and window. Every
// response is counted by the generator (a response message = grpc-status 0
// for this unary method; a refusal is trailers-only and counts as a
// failure); before and after each load one exchange is checked with a real
// gRPC client (status, principal kind, permissions, the token's subject),
// a replay of an assertion of the load must be refused (ASSERTION_REPLAYED),
// and afterwards the server's own count of remembered jtis
// (rows of its replay record) must equal the successes the generator counted
// plus those two checks.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PrincipalKind } from "@tessera/client";
import { createTesseraClient } from "@tessera/client";
import { runLoad, type LoadResult } from "./loadgen.ts";
import { CC_JWT_BODY, genLine, h2loadLine, h2loadPeer, peerVersion, startPeer } from "./peer.ts";
import { serverVersion, throwawayDatabase } from "./pg.ts";
import { requireTool, rssMb, sampleRss, type H2loadResult } from "./proc.ts";
import { commitCount, embeddedReplayCount, REPLAY_TABLE, exchangeRequest, failureReason, ISSUER, PERMISSION, publishServiceKey, REGION, regionEnv, signAssertions } from "./region.ts";
import { profileLine, round, startServer } from "./server.ts";

const ISSUE = "/tessera.identity.v1.IssueService/IssueToken";
const IN_FLIGHT = 64;
const WARMUP_SECONDS = 2;

export interface TesseraExchange {
  database: "PGlite" | "PostgreSQL";
  assertions: number;
  signSeconds: number;
  load: LoadResult;
  startRssMb: number;
  /** After the set-up (one password login, the registry records) and the first exchange. */
  idleRssMb: number;
  peakRssMb: number;
  /** The server's pid and the load's span in seconds after its spawn (for bench/cpuprofile.ts --from/--to). */
  profileSpan: { pid: number; from: number; to: number };
  /** PostgreSQL: transactions committed in the database over the load (warm-up and drain included). */
  commits?: number;
  /** Replay-record rows after the load: the server's own count of assertions that verified. */
  replayRows: number;
  /** The generator's successes (warm-up and drain included) plus the two checked exchanges. */
  expectedReplayRows: number;
}

const decode = (token: string) => JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString("utf8")) as Record<string, unknown>;
const settle = async (pid: number) => {
  await new Promise((r) => setTimeout(r, 1000));
  return rssMb(pid);
};

async function tesseraExchange(database: TesseraExchange["database"], seconds: number, rate: number): Promise<TesseraExchange> {
  const dir = mkdtempSync(join(tmpdir(), "tessera-bench-exchange-"));
  const db = database === "PostgreSQL" ? await throwawayDatabase("exchange") : undefined;
  try {
    const server = await startServer(dir, { ...regionEnv, ...(db ? { DATABASE_URL: db.url, TESSERA_MASTER_KEY: randomBytes(32).toString("hex") } : { DATABASE_URL: "" }) });
    const pid = server.child.pid!;
    const spawned = performance.now() - server.readyMs;
    const since = () => Math.round((performance.now() - spawned) / 100) / 10;
    let result: Omit<TesseraExchange, "replayRows">;
    try {
      const startRssMb = await settle(pid);
      const key = await publishServiceKey(server.grpcPort);
      const n = Math.ceil(rate * (WARMUP_SECONDS + seconds));
      const { assertions, signSeconds } = signAssertions(key, n + 2, ISSUER);
      const client = createTesseraClient({ address: `127.0.0.1:${server.grpcPort}` });
      try {
        const exchange = (assertion: string) => client.issue.issueToken({ credential: { $case: "serviceAssertion", value: { assertion } } });
        const check = async (assertion: string, when: string) => {
          const r = await exchange(assertion);
          const claims = decode(r.accessToken);
          if (r.principalKind !== PrincipalKind.PRINCIPAL_KIND_SERVICE || r.refreshToken || claims.sub !== REGION || r.grantedPermissions.join() !== PERMISSION) {
            throw new Error(`the exchange ${when} the load answered ${JSON.stringify({ ...r, claims })}`);
          }
        };
        await check(assertions[n]!, "before"); // also warms the registry cache
        const idleRssMb = await settle(pid);
        const payloads = assertions.slice(0, n).map(exchangeRequest);
        const rss = sampleRss(pid);
        const commitsBefore = db ? await commitCount(db) : 0;
        const loadFrom = since();
        const load = await runLoad({ protocol: "grpc", port: server.grpcPort, path: ISSUE, connections: 4, mode: "list", payloads, inFlight: IN_FLIGHT, warmupSeconds: WARMUP_SECONDS, seconds, serverPid: pid, watchPostgres: !!db });
        const { peakMb } = rss.stop();
        const profileSpan = { pid, from: loadFrom, to: since() };
        const commits = db ? (await commitCount(db)) - commitsBefore - 1 : undefined; // - 1: the first count's own query
        await check(assertions[n + 1]!, "after");
        const replay = await failureReason(exchange(assertions[0]!));
        if (replay !== "ASSERTION_REPLAYED") throw new Error(`a replayed assertion was refused with ${replay}, not ASSERTION_REPLAYED`);
        result = { database, assertions: n, signSeconds, load, startRssMb, idleRssMb, peakRssMb: peakMb, profileSpan, commits, expectedReplayRows: load.total + 2 };
      } finally {
        client.channel.close();
      }
      if (db) {
        const rows = Number((await db.query(`select count(*)::int as n from ${REPLAY_TABLE}`)).rows[0].n);
        return { ...result, replayRows: rows };
      }
    } finally {
      await server.stop();
    }
    return { ...result, replayRows: await embeddedReplayCount(dir) };
  } finally {
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface ExchangeResult {
  postgresVersion: string;
  pglite: TesseraExchange;
  postgres: TesseraExchange;
  /** The peer's client_credentials (EdDSA JWT) before and after Tessera's loads. */
  peer: { runs: (H2loadResult & { serverCpuSeconds: number })[]; idleRssMb: number; peakRssMb: number };
}

export async function benchExchange(seconds = 8): Promise<ExchangeResult> {
  requireTool("h2load", ["--version"], "apt-get install -y nghttp2-client");
  const rate = Number(process.env.BENCH_ASSERTION_RATE ?? 10_000);
  const postgresVersion = await serverVersion();
  const dir = mkdtempSync(join(tmpdir(), "tessera-bench-exchange-peer-"));
  const peer = await startPeer();
  try {
    const r = await peer.post("/token", CC_JWT_BODY);
    const token = String(r.json.access_token);
    if (r.status !== 200 || token.split(".").length !== 3 || JSON.parse(Buffer.from(token.split(".")[0]!, "base64url").toString()).alg !== "EdDSA") {
      throw new Error(`the peer's client_credentials grant did not answer an EdDSA JWT: ${r.status} ${JSON.stringify(r.json)}`);
    }
    const idleRssMb = await settle(peer.child.pid!);
    const ccJwt = () => {
      const rss = sampleRss(peer.child.pid);
      const run = h2loadPeer(peer, "/token", CC_JWT_BODY, seconds, dir);
      return { run, peakMb: rss.stop().peakMb };
    };
    const before = ccJwt();
    const pglite = await tesseraExchange("PGlite", seconds, rate);
    const postgres = await tesseraExchange("PostgreSQL", seconds, rate);
    const after = ccJwt();
    return { postgresVersion, pglite, postgres, peer: { runs: [before.run, after.run], idleRssMb, peakRssMb: Math.max(before.peakMb, after.peakMb) } };
  } finally {
    await peer.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function reportExchange(r: ExchangeResult): string {
  const pct = (a: number, b: number) => `${round((a / b) * 100)} %`;
  const peerRps = r.peer.runs.reduce((a, x) => a + x.rps, 0) / r.peer.runs.length;
  const tessera = (t: TesseraExchange) => [
    `Tessera IssueToken (service_assertion) on ${t.database}: ${genLine(t.load)}${t.load.exhausted ? " (list exhausted: raise BENCH_ASSERTION_RATE)" : ""}`,
    `  ${t.assertions} distinct assertions pre-signed in ${round(t.signSeconds, 1)} s before the load; jtis the server remembered: ${t.replayRows} (expected ${t.expectedReplayRows} = the generator's successes + 2 checks: ${t.replayRows === t.expectedReplayRows ? "match" : "MISMATCH"}); a replay refused with ASSERTION_REPLAYED`,
    `  server RSS: after start ${round(t.startRssMb)} MB, after the set-up ${round(t.idleRssMb)} MB, peak under the load ${round(t.peakRssMb)} MB`,
    ...(t.commits !== undefined ? [`  PostgreSQL transactions committed over the load: ${t.commits} for ${t.load.total} remembered jtis: ${round(t.load.total / t.commits, 1)} per replay-store INSERT on average (its batch)`] : []),
    ...profileLine(t.profileSpan),
  ];
  const failures = r.pglite.load.failures + r.postgres.load.failures + r.peer.runs.reduce((a, x) => a + x.failed, 0);
  return [
    `${IN_FLIGHT} in flight; Tessera: generator bench/loadgen.ts (4 HTTP/2 connections × 16 streams, list mode, each assertion sent once, ${WARMUP_SECONDS} s warm-up); PostgreSQL ${r.postgresVersion} at the BENCH_PG_URL server, throwaway database`,
    ...r.peer.runs.map((x, i) => `peer (oidc-provider ${peerVersion()}) client_credentials, EdDSA JWT (h2load --h1 -c 64), ${i ? "after " : "before"}: ${h2loadLine(x)}`),
    `  peer RSS: idle ${round(r.peer.idleRssMb)} MB, peak under the load ${round(r.peer.peakRssMb)} MB`,
    ...tessera(r.pglite),
    ...tessera(r.postgres),
    `ratio exchange / peer client_credentials (mean of before and after, ${round(peerRps, 0)} req/s): PGlite ${pct(r.pglite.load.rps, peerRps)}  (target >= 100 %: ${r.pglite.load.rps >= peerRps ? "met" : "MISSED"}); PostgreSQL ${pct(r.postgres.load.rps, peerRps)}  (target >= 100 %: ${r.postgres.load.rps >= peerRps ? "met" : "MISSED"})`,
    `RSS peak under load: Tessera PGlite ${round(r.pglite.peakRssMb)} MB, PostgreSQL ${round(r.postgres.peakRssMb)} MB; peer ${round(r.peer.peakRssMb)} MB`,
    `failed responses (target 0): ${failures}${r.pglite.load.errors[0] ?? r.postgres.load.errors[0] ? ` (first: ${r.pglite.load.errors[0] ?? r.postgres.load.errors[0]})` : ""}`,
  ].join("\n");
}
