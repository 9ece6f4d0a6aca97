// Service-assertion verification (Region System) with a warm registry cache,
// against bare node:crypto Ed25519 verification of the same tokens, in the
// same run:
//
// (a) over gRPC: VerifyToken of distinct assertions (each sent once, 64 in
//     flight, bench/loadgen.ts list mode; `aud` and the request's audience a
//     receiver, "bench-receiver", as VerifyToken of an assertion requires) on the embedded PGlite (the default)
//     and on PostgreSQL, against a raw `crypto.verify` loop over the first
//     assertions of the same list, on one core in this process while the
//     server is idle, before and after the load (the mean is the reference).
//     The server's own registry (TESSERA_REGISTRY_SELF) is warm: one
//     assertion is verified before the load, and the server keeps the
//     capability's record for 30 s (a refetch then is one lookup). Echo
//     (Health/Check, same generator) on the PGlite server gives the gRPC floor.
// (b) in process, one core, a child started with the server's V8 flags
//     (--liftoff-only, which slows PGlite's WebAssembly), over freshly signed
//     assertions of the same kind: what each layer of the verification costs —
//     the raw signature check; parseJws; parseJws + signatureValid
//     (src/registry/jws.ts); the server's AssertionVerifier
//     (src/registry/assertions.ts) with the warm cache's record and an
//     in-memory jti set; and the same verifier with the server's ReplayStore
//     (src/throttling/replay-store.ts, batched INSERT … ON CONFLICT) on an
//     embedded PGlite of its own, 64 verifications at a time. Each as
//     verifications per second and CPU µs per verification, against the
//     server's CPU µs per VerifyToken from (a); and, for comparison only, the
//     raw check through crypto.verify's callback form (the libuv threadpool).
import { fork } from "node:child_process";
import { createPublicKey, randomBytes, randomUUID, verify } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PrincipalKind } from "@tessera/client";
import { createTesseraClient } from "@tessera/client";
import { runLoad, type LoadResult } from "./loadgen.ts";
import { genLine } from "./peer.ts";
import { serverVersion, throwawayDatabase } from "./pg.ts";
import { rssMb, sampleRss } from "./proc.ts";
import { AUDIENCE, CAPABILITY, commitCount, embeddedReplayCount, REPLAY_TABLE, failureReason, verifyRequest, PERMISSION, publishServiceKey, REGION, REGISTRY_SELF, regionEnv, signAssertions } from "./region.ts";
import { profileLine, round, startServer } from "./server.ts";
import { serviceKey } from "../test/support/assertions.ts";

const VERIFY = "/tessera.identity.v1.VerifyService/VerifyToken";
const ECHO = "/grpc.health.v1.Health/Check";
const IN_FLIGHT = 64;
const WARMUP_SECONDS = 2;
/** Assertions of the raw loop (each run) and of each in-process step. */
const SAMPLE = 20_000;

/** Bare Ed25519 verification of compact JWS tokens, one thread: ops per second and CPU µs per op. */
function rawVerify(tokens: string[], publicJwk: string): { perSecond: number; cpuMicros: number } {
  const key = createPublicKey({ key: JSON.parse(publicJwk) as import("node:crypto").JsonWebKey, format: "jwk" });
  const cpu = process.cpuUsage();
  const started = performance.now();
  for (const token of tokens) {
    const dot = token.lastIndexOf(".");
    if (!verify(null, Buffer.from(token.slice(0, dot)), key, Buffer.from(token.slice(dot + 1), "base64url"))) throw new Error("an assertion does not verify");
  }
  const used = process.cpuUsage(cpu);
  return { perSecond: tokens.length / ((performance.now() - started) / 1000), cpuMicros: (used.user + used.system) / tokens.length };
}

export interface TesseraAssertionVerify {
  database: "PGlite" | "PostgreSQL";
  assertions: number;
  signSeconds: number;
  rawBefore: { perSecond: number; cpuMicros: number };
  rawAfter: { perSecond: number; cpuMicros: number };
  load: LoadResult;
  /** Health/Check with the same generator after the load (PGlite only). */
  echo?: LoadResult;
  idleRssMb: number;
  peakRssMb: number;
  /** The server's pid and the load's span in seconds after its spawn (for bench/cpuprofile.ts --from/--to). */
  profileSpan: { pid: number; from: number; to: number };
  /** PostgreSQL: transactions committed in the database over the load (warm-up and drain included). */
  commits?: number;
  replayRows: number;
  expectedReplayRows: number;
}

const settle = async (pid: number) => {
  await new Promise((r) => setTimeout(r, 1000));
  return rssMb(pid);
};

async function tesseraVerify(database: TesseraAssertionVerify["database"], seconds: number, rate: number): Promise<TesseraAssertionVerify> {
  const dir = mkdtempSync(join(tmpdir(), "tessera-bench-assertion-verify-"));
  const db = database === "PostgreSQL" ? await throwawayDatabase("assertverify") : undefined;
  try {
    const server = await startServer(dir, { ...regionEnv, ...(db ? { DATABASE_URL: db.url, TESSERA_MASTER_KEY: randomBytes(32).toString("hex") } : { DATABASE_URL: "" }) });
    const pid = server.child.pid!;
    const spawned = performance.now() - server.readyMs;
    const since = () => Math.round((performance.now() - spawned) / 100) / 10;
    let result: Omit<TesseraAssertionVerify, "replayRows">;
    try {
      const key = await publishServiceKey(server.grpcPort);
      const n = Math.ceil(rate * (WARMUP_SECONDS + seconds));
      const { assertions, signSeconds } = signAssertions(key, n + 2, AUDIENCE);
      const client = createTesseraClient({ address: `127.0.0.1:${server.grpcPort}` });
      try {
        const check = async (token: string, when: string) => {
          const { principal } = await client.verify.verifyToken({ token, audience: AUDIENCE });
          if (principal?.kind !== PrincipalKind.PRINCIPAL_KIND_SERVICE || principal.subject !== REGION || principal.permissions.join() !== PERMISSION || principal.region?.capability !== CAPABILITY) {
            throw new Error(`VerifyToken of an assertion ${when} the load answered ${JSON.stringify(principal)}`);
          }
        };
        await check(assertions[n]!, "before"); // warms the registry cache
        const idleRssMb = await settle(pid);
        const sample = assertions.slice(0, Math.min(SAMPLE, n));
        rawVerify(sample.slice(0, 2000), key.publicJwk); // JIT warm-up
        const rawBefore = rawVerify(sample, key.publicJwk);
        const rss = sampleRss(pid);
        const commitsBefore = db ? await commitCount(db) : 0;
        const loadFrom = since();
        const load = await runLoad({ protocol: "grpc", port: server.grpcPort, path: VERIFY, connections: 4, mode: "list", payloads: assertions.slice(0, n).map(verifyRequest), inFlight: IN_FLIGHT, warmupSeconds: WARMUP_SECONDS, seconds, serverPid: pid, watchPostgres: !!db });
        const { peakMb } = rss.stop();
        const profileSpan = { pid, from: loadFrom, to: since() };
        const commits = db ? (await commitCount(db)) - commitsBefore - 1 : undefined; // - 1: the first count's own query
        const rawAfter = rawVerify(sample, key.publicJwk);
        await check(assertions[n + 1]!, "after");
        const replay = await failureReason(client.verify.verifyToken({ token: assertions[0]!, audience: AUDIENCE }));
        if (replay !== "ASSERTION_REPLAYED") throw new Error(`a replayed assertion was refused with ${replay}, not ASSERTION_REPLAYED`);
        const echo = db ? undefined : await runLoad({ protocol: "grpc", port: server.grpcPort, path: ECHO, connections: 4, mode: "fixed", payloads: [""], inFlight: IN_FLIGHT, warmupSeconds: 1, seconds, serverPid: pid });
        result = { database, assertions: n, signSeconds, rawBefore, rawAfter, load, echo, idleRssMb, peakRssMb: peakMb, profileSpan, commits, expectedReplayRows: load.total + 2 };
      } finally {
        client.channel.close();
      }
      if (db) return { ...result, replayRows: Number((await db.query(`select count(*)::int as n from ${REPLAY_TABLE}`)).rows[0].n) };
    } finally {
      await server.stop();
    }
    return { ...result, replayRows: await embeddedReplayCount(dir) };
  } finally {
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- (b) the in-process split

export interface SplitStep {
  name: string;
  perSecond: number;
  cpuMicros: number;
}

interface SplitRequest {
  publicJwk: string;
  warmup: string[];
  tokens: string[];
  /** For the ReplayStore step: fresh ones (the in-memory step used up `tokens` in its own set, not in the database; kept apart anyway). */
  dbWarmup: string[];
}

async function split(request: SplitRequest): Promise<SplitStep[]> {
  const { parseJws, readPublicKey, signatureValid } = await import("../src/registry/jws.ts");
  const { AssertionVerifier } = await import("../src/registry/assertions.ts");
  const { ReplayStore } = await import("../src/throttling/index.ts");
  const { migrate, openDatabase } = await import("../src/db/orm.ts");
  const read = readPublicKey(request.publicJwk);
  if (!("key" in read)) throw new Error(`the published key does not read: ${read.problem}`);
  const key = read.key;
  const steps: SplitStep[] = [];
  const timeSync = (name: string, fn: (token: string) => unknown) => {
    for (const t of request.warmup) fn(t);
    const cpu = process.cpuUsage();
    const started = performance.now();
    for (const t of request.tokens) fn(t);
    const used = process.cpuUsage(cpu);
    steps.push({ name, perSecond: request.tokens.length / ((performance.now() - started) / 1000), cpuMicros: (used.user + used.system) / request.tokens.length });
  };
  const timeConcurrent = async (name: string, warmup: string[], fn: (token: string) => Promise<unknown>) => {
    const run = async (tokens: string[]) => {
      let next = 0;
      await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
        while (next < tokens.length) await fn(tokens[next++]!);
      }));
    };
    await run(warmup);
    const cpu = process.cpuUsage();
    const started = performance.now();
    await run(request.tokens);
    const used = process.cpuUsage(cpu);
    steps.push({ name, perSecond: request.tokens.length / ((performance.now() - started) / 1000), cpuMicros: (used.user + used.system) / request.tokens.length });
  };

  rawVerify(request.warmup, request.publicJwk);
  const raw = rawVerify(request.tokens, request.publicJwk);
  steps.push({ name: "raw node:crypto Ed25519 verify (split at the last dot, base64url-decode the signature)", ...raw });
  {
    // Not what the server does (it verifies synchronously on its main thread): the same check on the libuv threadpool.
    const publicKey = createPublicKey({ key: JSON.parse(request.publicJwk) as import("node:crypto").JsonWebKey, format: "jwk" });
    await timeConcurrent("raw node:crypto Ed25519 verify, asynchronous (callback: libuv threadpool, both cores; not what the server does)", request.warmup, (t) => {
      const dot = t.lastIndexOf(".");
      return new Promise<void>((resolve, reject) =>
        verify(null, Buffer.from(t.slice(0, dot)), publicKey, Buffer.from(t.slice(dot + 1), "base64url"), (error, ok) => (error || !ok ? reject(error ?? new Error("an assertion does not verify")) : resolve())),
      );
    });
  }
  timeSync("parseJws (split, base64url + JSON.parse of header and payload, header checks)", (t) => parseJws(t, 8192, "assertion"));
  timeSync("parseJws + signatureValid (alg check, canonical signature, crypto.verify)", (t) => {
    if (!signatureValid(parseJws(t, 8192, "assertion"), key)) throw new Error("signature invalid");
  });
  const now = new Date();
  const capability = {
    id: randomUUID(), regionId: REGION, name: CAPABILITY, tenantId: randomUUID(), tenantName: "system", active: true,
    expiresAt: new Date(Date.now() + 3600_000), key, userId: null, username: "", createdAt: now, updatedAt: now,
  };
  const cached = Promise.resolve({ capability, granted: [PERMISSION] });
  const verifierWith = (remember: (parts: readonly string[], expiresAt: Date) => Promise<boolean>) =>
    new AssertionVerifier(
      { maxLifetimeSeconds: 300, selfNames: [REGISTRY_SELF], trusted: [] },
      {
        // What the server's RegistryService.selfLookup returns from its warm cache.
        registry: { selfLookup: () => cached } as never,
        resolvers: {} as never,
        tenantByName: async () => null,
        remember,
      },
    );
  const seen = new Set<string>();
  const inMemory = verifierWith(async (parts) => {
    const k = parts.join("\u0000");
    return !seen.has(k) && !!seen.add(k);
  });
  const em = {} as never; // the self-registry path hands it only to the stubbed dependencies
  await timeConcurrent("AssertionVerifier.verify, warm registry record, in-memory jti set (all of the verifier but the database and the replay key's SHA-256)", request.warmup, (t) => inMemory.verify(em, t, AUDIENCE));
  const dir = mkdtempSync(join(tmpdir(), "tessera-bench-split-"));
  const orm = await openDatabase({ dataDir: dir });
  try {
    await migrate(orm);
    const replays = new ReplayStore(orm);
    // As src/registry/index.ts wires it.
    const withDb = verifierWith((parts, expiresAt) => replays.remember("assertion", parts, expiresAt));
    await timeConcurrent("AssertionVerifier.verify + ReplayStore on an embedded PGlite (the server's verifier without gRPC)", request.dbWarmup, (t) => withDb.verify(em, t, AUDIENCE));
    const rows = (await orm.em.getConnection().execute<{ n: number }[]>(`select count(*)::int as n from ${REPLAY_TABLE}`, [], "all"))[0]!.n;
    if (rows !== request.tokens.length + request.dbWarmup.length) throw new Error(`the replay store holds ${rows} rows, expected ${request.tokens.length + request.dbWarmup.length}`);
  } finally {
    await orm.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return steps;
}

if (process.argv[2] === "--split") {
  process.once("message", (request: SplitRequest) => {
    split(request).then(
      (steps) => process.send!({ steps }, () => process.exit(0)),
      (error: Error) => process.send!({ error: error.stack ?? String(error) }, () => process.exit(1)),
    );
  });
}

export async function runSplit(): Promise<SplitStep[]> {
  const key = serviceKey("Ed25519");
  const { assertions } = signAssertions(key, SAMPLE + 4000, AUDIENCE);
  const child = fork(new URL(import.meta.url).pathname, ["--split"], { execArgv: ["--liftoff-only"], serialization: "advanced", stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const reply = await new Promise<{ steps: SplitStep[] } | { error: string }>((resolve, reject) => {
    child.once("message", (m) => resolve(m as { steps: SplitStep[] } | { error: string }));
    child.once("exit", (code) => reject(new Error(`the split process exited with ${code}`)));
    child.send({ publicJwk: key.publicJwk, warmup: assertions.slice(0, 2000), dbWarmup: assertions.slice(2000, 4000), tokens: assertions.slice(4000) } satisfies SplitRequest);
  });
  child.disconnect();
  if ("error" in reply) throw new Error(`split: ${reply.error}`);
  return reply.steps;
}

// ---------------------------------------------------------------- the benchmark

export interface AssertionVerifyResult {
  postgresVersion: string;
  pglite: TesseraAssertionVerify;
  postgres: TesseraAssertionVerify;
  split: SplitStep[];
}

export async function benchAssertionVerify(seconds = 8): Promise<AssertionVerifyResult> {
  const rate = Number(process.env.BENCH_ASSERTION_RATE ?? 10_000);
  const postgresVersion = await serverVersion();
  const pglite = await tesseraVerify("PGlite", seconds, rate);
  const postgres = await tesseraVerify("PostgreSQL", seconds, rate);
  return { postgresVersion, pglite, postgres, split: await runSplit() };
}

export function reportAssertionVerify(r: AssertionVerifyResult): string {
  const pct = (a: number, b: number) => `${round((a / b) * 100)} %`;
  const rawMean = (t: TesseraAssertionVerify) => (t.rawBefore.perSecond + t.rawAfter.perSecond) / 2;
  const perCall = (l: LoadResult) => (l.serverCpuSeconds / l.requests) * 1e6;
  const tessera = (t: TesseraAssertionVerify) => [
    `Tessera VerifyToken (bare assertion) on ${t.database}: ${genLine(t.load)}${t.load.exhausted ? " (list exhausted: raise BENCH_ASSERTION_RATE)" : ""}`,
    `  server CPU per verification ${round(perCall(t.load), 0)} µs${t.load.postgresCpuSeconds ? ` (+ postgres ${round((t.load.postgresCpuSeconds / t.load.requests) * 1e6, 0)} µs)` : ""}; ${t.assertions} distinct assertions pre-signed in ${round(t.signSeconds, 1)} s; jtis remembered ${t.replayRows} (expected ${t.expectedReplayRows}: ${t.replayRows === t.expectedReplayRows ? "match" : "MISMATCH"}); a replay refused with ASSERTION_REPLAYED; server RSS after the set-up ${round(t.idleRssMb)} MB, peak ${round(t.peakRssMb)} MB`,
    `  raw node:crypto Ed25519 verify of the first ${Math.min(SAMPLE, t.assertions)} of these assertions (this process, one thread, server idle): before ${round(t.rawBefore.perSecond, 0)} /s, after ${round(t.rawAfter.perSecond, 0)} /s (${round(t.rawBefore.cpuMicros, 0)} / ${round(t.rawAfter.cpuMicros, 0)} CPU µs each)`,
    ...(t.echo ? [`  echo floor (Health/Check, same generator, after): ${genLine(t.echo)}; server CPU per call ${round(perCall(t.echo), 0)} µs`] : []),
    `  ratio VerifyToken / raw verify (mean ${round(rawMean(t), 0)} /s): ${pct(t.load.rps, rawMean(t))}  (target >= 80 %: ${t.load.rps >= 0.8 * rawMean(t) ? "met" : "MISSED"})`,
    ...(t.commits !== undefined ? [`  PostgreSQL transactions committed over the load: ${t.commits} for ${t.load.total} remembered jtis: ${round(t.load.total / t.commits, 1)} per replay-store INSERT on average (its batch)`] : []),
    ...profileLine(t.profileSpan),
  ];
  const raw = r.split[0]!;
  return [
    `(a) over gRPC, ${IN_FLIGHT} in flight (4 HTTP/2 connections × 16 streams), each assertion sent once, ${WARMUP_SECONDS} s warm-up, warm registry record; PostgreSQL ${r.postgresVersion} (throwaway database)`,
    ...tessera(r.pglite),
    ...tessera(r.postgres),
    `(b) in process, one core unless stated (child with --liftoff-only, as npm start), ${SAMPLE} fresh assertions of the same kind per step; CPU µs count all the process's threads:`,
    ...r.split.map((s) => `  ${s.name}: ${round(s.perSecond, 0)} /s, ${round(s.cpuMicros, 1)} CPU µs each (${round(s.cpuMicros / raw.cpuMicros, 2)}× raw)`),
    `  server, VerifyToken over gRPC: PGlite ${round(perCall(r.pglite.load), 0)} CPU µs per verification (${round(perCall(r.pglite.load) / raw.cpuMicros, 2)}× raw)${r.pglite.echo ? `, of which the gRPC echo floor is ${round(perCall(r.pglite.echo), 0)} µs` : ""}; PostgreSQL ${round(perCall(r.postgres.load), 0)} µs in the server (${round(perCall(r.postgres.load) / raw.cpuMicros, 2)}× raw) + ${round((r.postgres.load.postgresCpuSeconds / r.postgres.load.requests) * 1e6, 0)} µs in postgres`,
  ].join("\n");
}
