// The client SDK's TokenVerifier (clients/typescript/src/verifier.ts) on many
// distinct real access tokens, against raw node:crypto Ed25519 verification of
// the same tokens, in the same process and the same run:
//
//   - raw sync: crypto.verify(null, signingInput, publicKey, signature) in a
//     loop on one thread, the inputs split and decoded beforehand (the pure
//     signature cost: the floor); and, for reference, the same loop splitting
//     and base64url-decoding each token as it goes;
//   - raw async: crypto.verify with a callback (libuv's thread pool), 64 in
//     flight: what the pool itself gives on this machine;
//   - TokenVerifier, offload on (the default) and off, 64 verifications in
//     flight, each token verified once per verifier: a fresh verifier for each
//     pass over the list (its cache holds the whole list, so a pass never
//     evicts and never hits), warmed with one token outside the list so that
//     its first key lookup is not timed;
//   - TokenVerifier on repeated tokens: one verifier per round, warmed with
//     one pass over the list, then passes over the same list (cache hits).
//
// The tokens are real: a Tessera server (the embedded PGlite) logs in 64
// sessions and refreshes each of them REFRESHES times through the public API
// (every refresh returns a new access token); the key set is the server's
// GetJwks answer, fetched once and handed to every verifier (so that no pass
// times a gRPC call). The server is stopped before anything is measured.
// Every result is checked: the signature valid (raw), or the verified token's
// subject and session id those of the token's session (TokenVerifier).
//
// Each figure is measured in ROUNDS interleaved rounds (the variants' order
// rotates from round to round, so that the machine's drift spreads over all of
// them), `seconds` per figure per round; the report gives the median of the
// rounds, and every ratio is the ratio of the medians.
import { createPublicKey, verify, type KeyObject } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { createTesseraClient, TokenVerifier, type GetJwksResponse } from "@tessera/client";
import { seedSessions } from "./seed.ts";
import { median, round, startServer } from "./server.ts";

const SESSIONS = 64;
/** Refreshes per session: 64 logins + 64 × 32 refreshes = 2112 distinct tokens. */
const REFRESHES = Number(process.env.BENCH_VERIFIER_REFRESHES ?? 32);
const IN_FLIGHT = 64;
const ROUNDS = 3;
/** Access tokens live 5 min (TESSERA_ACCESS_TOKEN_TTL's default): the measurement must end before the first expires. */
const TOKEN_LIFETIME_SECONDS = 300;

export type VariantName = "rawSync" | "rawSyncParsing" | "rawAsync" | "offload" | "sync" | "cached";
const VARIANTS: VariantName[] = ["rawSync", "rawSyncParsing", "rawAsync", "offload", "sync", "cached"];

export interface Sample {
  perSecond: number;
  /** Cores busy in this process over the timed passes (all threads, the pool's included). */
  cores: number;
  /** CPU µs per verification. */
  cpuMicros: number;
  verifications: number;
  /** Cores busy in other processes meanwhile (the machine's busy time from /proc/stat minus this process's). */
  othersCores: number;
}

export interface ClientVerifierResult {
  tokens: number;
  refreshes: number;
  collectSeconds: number;
  seconds: number;
  threadpool: string;
  rounds: Record<VariantName, Sample[]>;
  /** Verifications checked (result as expected), all variants and warm-ups. */
  checked: number;
}

const decode = (segment: string) => JSON.parse(Buffer.from(segment, "base64url").toString("utf8")) as Record<string, unknown>;

/** Runs `fn(k)` for k = 0 … n-1 with `width` calls in flight. */
async function drive(n: number, width: number, fn: (k: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, n) }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

/** The machine's busy and total CPU time so far, in seconds of one core (/proc/stat, all CPUs). */
function machineCpu(): { busy: number; total: number } {
  const fields = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = fields.reduce((a, b) => a + b, 0);
  const idle = fields[3]! + fields[4]!; // idle + iowait
  return { busy: (total - idle) / 100, total: total / 100 };
}

/** Repeats timed passes (each prepared by `setup`, untimed) until `seconds` of passes have run. */
async function measure(seconds: number, n: number, setup: () => Promise<(k: number) => void | Promise<void>>, width: number | "loop"): Promise<Sample> {
  let elapsed = 0;
  let cpu = 0;
  let verifications = 0;
  // Other processes' CPU over the whole call (set-ups included): the machine's busy time minus this process's.
  const machineBefore = machineCpu();
  const ownBefore = process.cpuUsage();
  while (elapsed < seconds * 1000) {
    const one = await setup();
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    if (width === "loop") for (let k = 0; k < n; k++) one(k);
    else await drive(n, width, one as (k: number) => Promise<void>);
    elapsed += performance.now() - started;
    const used = process.cpuUsage(cpuBefore);
    cpu += used.user + used.system;
    verifications += n;
  }
  const machineAfter = machineCpu();
  const own = process.cpuUsage(ownBefore);
  const othersCores = Math.max(0, ((machineAfter.busy - machineBefore.busy - (own.user + own.system) / 1e6) / (machineAfter.total - machineBefore.total)) * cpus().length);
  return { perSecond: verifications / (elapsed / 1000), cores: cpu / 1000 / elapsed, cpuMicros: cpu / verifications, verifications, othersCores };
}

/** Logs in SESSIONS sessions on a fresh embedded server and refreshes each REFRESHES times; returns the tokens, each with its session and subject, and the server's JWKS. */
async function collectTokens(): Promise<{ tokens: string[]; sessionIds: string[]; subjects: string[]; warm: { token: string; sessionId: string; subject: string }; jwks: GetJwksResponse; seconds: number }> {
  const dir = mkdtempSync(join(tmpdir(), "tessera-bench-client-verifier-"));
  try {
    const server = await startServer(dir, { DATABASE_URL: "" });
    try {
      const started = performance.now();
      const seeded = await seedSessions(server.grpcPort, SESSIONS + 1);
      const client = createTesseraClient({ address: `127.0.0.1:${server.grpcPort}` });
      try {
        const tokens: string[] = [];
        const sessionIds: string[] = [];
        const add = (token: string, sessionId: string) => {
          tokens.push(token);
          sessionIds.push(sessionId);
        };
        const [warmSession, ...sessions] = seeded.sessions;
        for (const s of sessions) add(s.accessToken, s.sessionId);
        await Promise.all(
          sessions.map(async (s) => {
            let refreshToken = s.refreshToken;
            for (let i = 0; i < REFRESHES; i++) {
              const r = await client.refresh.refresh({ refreshToken, requestedPermissions: [] });
              if (r.sessionId !== s.sessionId) throw new Error(`a refresh of session ${s.sessionId} answered session ${r.sessionId}`);
              add(r.accessToken, r.sessionId);
              refreshToken = r.refreshToken;
            }
          }),
        );
        if (new Set(tokens).size !== tokens.length) throw new Error("the server returned the same access token twice");
        const jwks = await client.verify.getJwks({});
        const subjectOf = (token: string) => String(decode(token.split(".")[1]!).sub);
        return {
          tokens,
          sessionIds,
          subjects: tokens.map(subjectOf),
          warm: { token: warmSession!.accessToken, sessionId: warmSession!.sessionId, subject: subjectOf(warmSession!.accessToken) },
          jwks,
          seconds: (performance.now() - started) / 1000,
        };
      } finally {
        client.close();
      }
    } finally {
      await server.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchClientVerifier(seconds = 2): Promise<ClientVerifierResult> {
  const planned = ROUNDS * VARIANTS.length * seconds;
  if (planned > TOKEN_LIFETIME_SECONDS / 2) throw new Error(`BENCH_SECONDS=${seconds} plans ${planned} s of passes: the tokens live ${TOKEN_LIFETIME_SECONDS} s; at most ${Math.floor(TOKEN_LIFETIME_SECONDS / 2 / ROUNDS / VARIANTS.length)}`);
  const { tokens, sessionIds, subjects, warm, jwks, seconds: collectSeconds } = await collectTokens();
  const n = tokens.length;
  const kid = String(decode(tokens[0]!.split(".")[0]!).kid);
  const jwk = jwks.keys.find((k) => k.kid === kid);
  if (!jwk) throw new Error(`GetJwks has no key ${kid}`);
  const publicKey: KeyObject = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: jwk.x }, format: "jwk" });
  // The raw floor's inputs, split and decoded once.
  const data = tokens.map((t) => Buffer.from(t.slice(0, t.lastIndexOf(".")), "latin1"));
  const signatures = tokens.map((t) => Buffer.from(t.slice(t.lastIndexOf(".") + 1), "base64url"));
  const source = async () => jwks;

  let checked = 0;
  const expect = (k: number, r: { subject: string; sessionId: string }) => {
    if (r.subject !== subjects[k] || r.sessionId !== sessionIds[k]) throw new Error(`token ${k} verified as ${r.subject}/${r.sessionId}, not ${subjects[k]}/${sessionIds[k]}`);
    checked++;
  };
  const freshVerifier = async (offload: boolean) => {
    const verifier = new TokenVerifier(source, { offload, cacheSize: n + 1 });
    const r = await verifier.verify(warm.token); // fetches the key set: not timed
    if (r.subject !== warm.subject || r.sessionId !== warm.sessionId) throw new Error("the warm-up token verified wrongly");
    return verifier;
  };
  const verifierPass = (offload: boolean) => async () => {
    const verifier = await freshVerifier(offload);
    return async (k: number) => expect(k, await verifier.verify(tokens[k]!));
  };

  const run: Record<VariantName, (seconds: number) => Promise<Sample>> = {
    rawSync: (seconds) =>
      measure(seconds, n, async () => (k) => {
        if (!verify(null, data[k]!, publicKey, signatures[k]!)) throw new Error(`token ${k}: bad signature`);
        checked++;
      }, "loop"),
    rawSyncParsing: (seconds) =>
      measure(seconds, n, async () => (k) => {
        const t = tokens[k]!;
        const dot = t.lastIndexOf(".");
        if (!verify(null, Buffer.from(t.slice(0, dot), "latin1"), publicKey, Buffer.from(t.slice(dot + 1), "base64url"))) throw new Error(`token ${k}: bad signature`);
        checked++;
      }, "loop"),
    rawAsync: (seconds) =>
      measure(seconds, n, async () => (k) =>
        new Promise<void>((resolve, reject) =>
          verify(null, data[k]!, publicKey, signatures[k]!, (error, ok) => {
            if (error || !ok) return reject(error ?? new Error(`token ${k}: bad signature`));
            checked++;
            resolve();
          }),
        ), IN_FLIGHT),
    offload: (seconds) => measure(seconds, n, verifierPass(true), IN_FLIGHT),
    sync: (seconds) => measure(seconds, n, verifierPass(false), IN_FLIGHT),
    cached: async (seconds) => {
      const verifier = await freshVerifier(true);
      await drive(n, IN_FLIGHT, async (k) => expect(k, await verifier.verify(tokens[k]!))); // fills the cache
      return measure(seconds, n, async () => async (k) => expect(k, await verifier.verify(tokens[k]!)), IN_FLIGHT);
    },
  };

  for (const name of VARIANTS) await run[name](0.3); // JIT warm-up of every path, not recorded
  const rounds = Object.fromEntries(VARIANTS.map((v) => [v, [] as Sample[]])) as Record<VariantName, Sample[]>;
  for (let r = 0; r < ROUNDS; r++) {
    for (let i = 0; i < VARIANTS.length; i++) {
      const name = VARIANTS[(i + r) % VARIANTS.length]!;
      rounds[name].push(await run[name](seconds));
    }
  }
  return { tokens: n, refreshes: SESSIONS * REFRESHES, collectSeconds, seconds, threadpool: process.env.UV_THREADPOOL_SIZE ?? "4 (default)", rounds, checked };
}

export function reportClientVerifier(r: ClientVerifierResult): string {
  const med = (v: VariantName) => median(r.rounds[v].map((s) => s.perSecond));
  const rates = (v: VariantName) => r.rounds[v].map((s) => round(s.perSecond, 0)).join(", ");
  const cpu = (v: VariantName) => `${round(median(r.rounds[v].map((s) => s.cores)), 2)} cores, ${round(median(r.rounds[v].map((s) => s.cpuMicros)), 1)} µs CPU/verification`;
  const raw = med("rawSync");
  const pct = (v: VariantName) => `${round((med(v) / raw) * 100)} %`;
  const perRound = (v: VariantName) => r.rounds[v].map((s, i) => round((s.perSecond / r.rounds.rawSync[i]!.perSecond) * 100)).join(" / ");
  const line = (label: string, v: VariantName, tail = "") => `${label}${round(med(v), 0)} /s [${rates(v)}] (${cpu(v)})${tail}`;
  const others = (i: number) => round(Math.max(...VARIANTS.map((v) => r.rounds[v][i]!.othersCores)), 1);
  const offload = med("offload") / raw;
  const cached = med("cached") / raw;
  return [
    `${r.tokens} distinct access tokens from a real server (PGlite; ${SESSIONS} logins + ${r.refreshes} refreshes through the API in ${round(r.collectSeconds)} s), key set from its GetJwks, server stopped before measuring`,
    `${ROUNDS} interleaved rounds, ${r.seconds} s of passes per figure per round; medians, the rounds in brackets; libuv thread pool ${r.threadpool}; ${IN_FLIGHT} in flight where async`,
    line("raw Ed25519, sync, one thread (inputs split beforehand): ", "rawSync"),
    line("raw Ed25519, sync, splitting + decoding each token:       ", "rawSyncParsing", ` = ${pct("rawSyncParsing")} of raw`),
    line("raw Ed25519, async (callback, thread pool):               ", "rawAsync", ` = ${pct("rawAsync")} of raw (rounds ${perRound("rawAsync")} %)`),
    line("TokenVerifier, offload (default), distinct tokens:        ", "offload", ` = ${pct("offload")} of raw (rounds ${perRound("offload")} %)  (target >= 100 %: ${offload >= 1 ? "met" : "MISSED"})`),
    line("TokenVerifier, offload: false, distinct tokens:           ", "sync", ` = ${pct("sync")} of raw (rounds ${perRound("sync")} %)`),
    line("TokenVerifier, repeated tokens (cache hits):              ", "cached", ` = ${round(cached, 1)}× raw  (target >= 10×: ${cached >= 10 ? "met" : "MISSED"})`),
    `  TokenVerifier offload / raw async: ${round((med("offload") / med("rawAsync")) * 100)} %; offload: false / raw with parsing: ${round((med("sync") / med("rawSyncParsing")) * 100)} %`,
    `other processes' CPU during each round (most busy figure of the round, cores of ${cpus().length}): ${r.rounds.rawSync.map((_, i) => others(i)).join(" / ")}; per figure, rounds in order: ${VARIANTS.map((v) => `${v} ${r.rounds[v].map((s) => round(s.othersCores, 1)).join("/")}`).join(", ")}`,
    `every verification checked (raw: signature valid; TokenVerifier: subject and session id of the token's session): ${r.checked} checked, 0 wrong`,
  ].join("\n");
}
