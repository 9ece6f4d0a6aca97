// Revocation propagation: the time from RevokeSession's reply to a
// TokenVerifier in another process refusing the session's token, on loopback,
// on the embedded PGlite (the default) and on PostgreSQL (a throwaway
// database on the BENCH_PG_URL server).
//
// The server is a real Tessera process (bench/server.ts, `npm start`'s
// command). The verifier runs in a child process of this one (this file with
// --watcher, `node --conditions=tessera-source`, as the SDK's users would run
// it): a RevocationWatcher (failMode "closed") follows WatchRevocations with
// the system admin's token, and a TokenVerifier (its default options, the key
// set from GetJwks) uses it. For each watched token the child calls
// verifier.verify() on every event the watcher applies (onEvent) and, in
// case a refusal came some other way, every millisecond; it reports the
// moment a verify() first rejects with SESSION_REVOKED.
//
// The parent logs in BENCH_REVOCATIONS (200) sessions of tenant `bench`
// (bench/seed.ts) plus WARMUP more, and for each, one at a time: sends the
// access token to the child and waits until the child has verified it (OK,
// the right session); then the session itself logs out (RevokeSession of its
// own session id with its own token) and t0 is taken when the reply arrives;
// the child's t1 is the refusal. Both timestamps are process.hrtime.bigint(),
// CLOCK_MONOTONIC on Linux: one clock for every process of the machine (no
// wall-clock step or per-process time origin can move it); the bench checks
// this with ping-pongs before measuring (each child timestamp must fall
// between the parent's send and receive). t1 − t0 can be negative: the server
// puts the event on the watch stream before it sends the reply (the call's
// middleware polls the revocation feed after the commit), so the child may
// see it first.
import { fork, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTesseraClient, errorReason, RevocationWatcher, TokenVerificationError, TokenVerifier } from "@tessera/client";
import { serverVersion, throwawayDatabase } from "./pg.ts";
import { seedSessions } from "./seed.ts";
import { ADMIN_PASSWORD, median, round, startServer } from "./server.ts";

const REVOCATIONS = Number(process.env.BENCH_REVOCATIONS ?? 200);
/** Revocations before the measured ones (JIT, first stream writes), reported apart. */
const WARMUP = 5;
const PINGS = 20;
const POLL_MS = 1;
const VERIFIED_TIMEOUT_MS = 10_000;
/** Longer than the feed's gap wait (15 s, src/events/revocation-feed.ts), so that such a wait would show as a figure, not as a failure. */
const REFUSED_TIMEOUT_MS = 20_000;

const now = () => process.hrtime.bigint();
const ms = (ns: bigint) => Number(ns) / 1e6;

type ToChild = { type: "start"; address: string; adminToken: string } | { type: "ping"; id: number } | { type: "watch"; id: number; token: string } | { type: "stop" };
type FromChild =
  | { type: "ready" }
  | { type: "pong"; id: number; at: bigint }
  | { type: "verified"; id: number; ok: boolean; subject?: string; sessionId?: string; error?: string }
  | { type: "refused"; id: number; at: bigint; via: "event" | "poll"; reason: string; eventAt?: bigint }
  | { type: "stats"; id: number; events: number; polls: number }
  | { type: "error"; id: number; error: string };

// ---------------------------------------------------------------- the child: watcher + verifier

async function watcherChild(): Promise<void> {
  const send = (m: FromChild) => process.send!(m);
  let verifier: TokenVerifier | undefined;
  let watcher: RevocationWatcher | undefined;
  let client: ReturnType<typeof createTesseraClient> | undefined;
  const watched = new Map<number, { token: string; sessionId: string }>();
  /** Session id → when the watcher applied its SESSION_REVOKED event. */
  const eventAt = new Map<string, bigint>();
  let events = 0;
  let polls = 0;
  let timer: NodeJS.Timeout | undefined;

  const check = (via: "event" | "poll") => {
    for (const [id, w] of watched) {
      verifier!.verify(w.token).then(
        () => undefined,
        (error: unknown) => {
          const at = now();
          if (!watched.delete(id)) return; // another check reported it first
          if (!watched.size) timer = (clearInterval(timer), undefined);
          const reason = error instanceof TokenVerificationError ? error.reason : String(error);
          send({ type: "refused", id, at, via, reason, eventAt: eventAt.get(w.sessionId) });
        },
      );
    }
  };

  process.on("message", (m: ToChild) => {
    switch (m.type) {
      case "start":
        void (async () => {
          client = createTesseraClient({ address: m.address });
          watcher = new RevocationWatcher(client.withToken(m.adminToken), {
            failMode: "closed",
            onEvent: (event) => {
              events++;
              if (event.sessionId) eventAt.set(event.sessionId, now());
              if (watched.size) check("event");
            },
          });
          verifier = new TokenVerifier(client, { revocations: watcher });
          watcher.start();
          await watcher.ready();
          await verifier.verify(m.adminToken); // fetches the key set
          send({ type: "ready" });
        })().catch((error: Error) => send({ type: "error", id: -1, error: error.stack ?? String(error) }));
        break;
      case "ping":
        send({ type: "pong", id: m.id, at: now() });
        break;
      case "watch":
        verifier!.verify(m.token).then(
          (r) => {
            watched.set(m.id, { token: m.token, sessionId: r.sessionId });
            timer ??= setInterval(() => (polls++, check("poll")), POLL_MS);
            send({ type: "verified", id: m.id, ok: true, subject: r.subject, sessionId: r.sessionId });
          },
          (error: unknown) => send({ type: "verified", id: m.id, ok: false, error: error instanceof TokenVerificationError ? error.reason : String(error) }),
        );
        break;
      case "stop":
        void (async () => {
          clearInterval(timer);
          await watcher?.stop();
          client?.close();
          process.send!({ type: "stats", id: 0, events, polls } satisfies FromChild, () => process.exit(0));
        })();
        break;
    }
  });
}

if (process.argv[2] === "--watcher") void watcherChild();

// ---------------------------------------------------------------- the parent

/** The child process and its messages, by type and id (a message may arrive before anyone waits for it). */
class WatcherProcess {
  readonly child: ChildProcess;
  readonly #arrived = new Map<string, FromChild>();
  readonly #waiting = new Map<string, (m: FromChild) => void>();
  #exited?: Error;

  constructor() {
    this.child = fork(new URL(import.meta.url).pathname, ["--watcher"], {
      execArgv: ["--conditions=tessera-source"],
      serialization: "advanced", // bigint timestamps
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    this.child.on("message", (m: FromChild) => {
      if (m.type === "error") {
        this.#exited = new Error(`the watcher process failed: ${m.error}`);
        for (const w of this.#waiting.values()) w(m);
        return;
      }
      const key = `${m.type}:${"id" in m ? m.id : ""}`;
      const waiter = this.#waiting.get(key);
      if (waiter) {
        this.#waiting.delete(key);
        waiter(m);
      } else this.#arrived.set(key, m);
    });
    this.child.on("exit", (code) => {
      this.#exited ??= new Error(`the watcher process exited with ${code}`);
      for (const w of this.#waiting.values()) w({ type: "error", id: -1, error: String(code) });
    });
  }

  send(m: ToChild): void {
    this.child.send(m);
  }

  expect<T extends FromChild["type"]>(type: T, id: number | "", timeoutMs: number): Promise<Extract<FromChild, { type: T }>> {
    const key = `${type}:${id}`;
    const early = this.#arrived.get(key);
    if (early) {
      this.#arrived.delete(key);
      return Promise.resolve(early as Extract<FromChild, { type: T }>);
    }
    if (this.#exited) return Promise.reject(this.#exited);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(key);
        reject(new Error(`no ${type} ${id} from the watcher process within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiting.set(key, (m) => {
        clearTimeout(timer);
        if (m.type === "error") reject(this.#exited ?? new Error(m.error));
        else resolve(m as Extract<FromChild, { type: T }>);
      });
    });
  }
}

export interface Propagation {
  /** t1 (child refused) − t0 (RevokeSession's reply), ms. */
  fromReply: number;
  /** t1 − the moment RevokeSession was called, ms. */
  fromCall: number;
  /** RevokeSession's round trip, ms. */
  rpc: number;
  via: "event" | "poll";
  /** Refusal − the watcher's applying the event, ms. */
  afterEvent?: number;
}

export interface DatabasePropagation {
  database: string;
  samples: Propagation[];
  warmup: Propagation[];
  clock: { ok: number; pings: number; roundTripMs: number };
  child: { events: number; polls: number };
  seedSeconds: number;
}

export interface RevocationPropagationResult {
  revocations: number;
  runs: DatabasePropagation[];
}

async function propagation(database: "PGlite" | "PostgreSQL"): Promise<DatabasePropagation> {
  const dir = mkdtempSync(join(tmpdir(), "tessera-bench-revocation-"));
  const db = database === "PostgreSQL" ? await throwawayDatabase("revocation") : undefined;
  try {
    const server = await startServer(dir, db ? { DATABASE_URL: db.url, TESSERA_MASTER_KEY: randomBytes(32).toString("hex") } : { DATABASE_URL: "" });
    const address = `127.0.0.1:${server.grpcPort}`;
    const client = createTesseraClient({ address });
    let watcher: WatcherProcess | undefined;
    try {
      const seedStarted = performance.now();
      const admin = await client.issue.issueToken({ credential: { $case: "password", value: { tenant: "system", username: "admin", password: ADMIN_PASSWORD } }, requestedPermissions: [], audience: "" });
      const { sessions } = await seedSessions(server.grpcPort, WARMUP + REVOCATIONS);
      const seedSeconds = (performance.now() - seedStarted) / 1000;
      watcher = new WatcherProcess();
      watcher.send({ type: "start", address, adminToken: admin.accessToken });
      await watcher.expect("ready", "", 30_000);

      // One clock for both processes: the child's timestamp lies between the parent's send and receive.
      let ok = 0;
      const trips: number[] = [];
      for (let id = 0; id < PINGS; id++) {
        const sent = now();
        watcher.send({ type: "ping", id });
        const { at } = await watcher.expect("pong", id, 5_000);
        const received = now();
        if (sent <= at && at <= received) ok++;
        trips.push(ms(received - sent));
      }
      if (ok !== PINGS) throw new Error(`the watcher's clock is not this process's: ${ok}/${PINGS} pings consistent`);

      const measured: Propagation[] = [];
      for (let i = 0; i < sessions.length; i++) {
        const s = sessions[i]!;
        const self = client.withToken(s.accessToken);
        watcher.send({ type: "watch", id: i, token: s.accessToken });
        const verified = await watcher.expect("verified", i, VERIFIED_TIMEOUT_MS);
        if (!verified.ok || verified.sessionId !== s.sessionId) throw new Error(`the watcher process did not verify session ${s.sessionId}'s token before the revocation: ${JSON.stringify(verified)}`);
        const refused = watcher.expect("refused", i, REFUSED_TIMEOUT_MS);
        const called = now();
        await self.issue.revokeSession({ sessionId: s.sessionId });
        const replied = now();
        const r = await refused;
        if (r.reason !== "SESSION_REVOKED") throw new Error(`the watcher process refused session ${s.sessionId}'s token with ${r.reason}, not SESSION_REVOKED`);
        measured.push({ fromReply: ms(r.at - replied), fromCall: ms(r.at - called), rpc: ms(replied - called), via: r.via, afterEvent: r.eventAt === undefined ? undefined : ms(r.at - r.eventAt) });
      }
      watcher.send({ type: "stop" });
      const stats = await watcher.expect("stats", 0, 10_000);
      // The server agrees: the last session's token is refused by VerifyToken too.
      const last = await client.verify.verifyToken({ token: sessions.at(-1)!.accessToken, audience: "" }).then(
        () => "OK",
        (e: unknown) => errorReason(e) ?? String(e),
      );
      if (last !== "SESSION_REVOKED") throw new Error(`VerifyToken of a revoked session's token answered ${last}`);
      return {
        database: db ? `PostgreSQL ${await serverVersion()}` : "PGlite",
        warmup: measured.slice(0, WARMUP),
        samples: measured.slice(WARMUP),
        clock: { ok, pings: PINGS, roundTripMs: median(trips) },
        child: { events: stats.events, polls: stats.polls },
        seedSeconds,
      };
    } finally {
      if (watcher && watcher.child.exitCode === null) watcher.child.kill();
      client.close();
      await server.stop();
    }
  } finally {
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchRevocationPropagation(): Promise<RevocationPropagationResult> {
  const runs: DatabasePropagation[] = [];
  for (const database of ["PGlite", "PostgreSQL"] as const) runs.push(await propagation(database));
  return { revocations: REVOCATIONS, runs };
}

/** Nearest-rank percentile of ascending `sorted`. */
const percentile = (sorted: number[], p: number) => sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;

export function reportRevocationPropagation(r: RevocationPropagationResult): string {
  const stats = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return { p50: percentile(s, 50), p99: percentile(s, 99), max: s.at(-1)!, min: s[0]! };
  };
  const f = (x: number) => `${round(x, 2)}`;
  const lines = [
    `${r.revocations} revocations per database, one at a time, after ${WARMUP} unrecorded ones; RevokeSession of the session's own id with its own token; the watcher + TokenVerifier in a child process (verify on each event and every ${POLL_MS} ms); clock: process.hrtime (CLOCK_MONOTONIC)`,
  ];
  for (const run of r.runs) {
    const reply = stats(run.samples.map((s) => s.fromReply));
    const call = stats(run.samples.map((s) => s.fromCall));
    const rpc = stats(run.samples.map((s) => s.rpc));
    const afterEvent = stats(run.samples.flatMap((s) => (s.afterEvent === undefined ? [] : [s.afterEvent])));
    const viaPoll = run.samples.filter((s) => s.via === "poll").length;
    const before = run.samples.filter((s) => s.fromReply < 0).length;
    lines.push(
      `${run.database}:`,
      `  reply → refused (t1 − t0): p50 ${f(reply.p50)} ms, p99 ${f(reply.p99)} ms, max ${f(reply.max)} ms, min ${f(reply.min)} ms  (target p99 < 100 ms: ${reply.p99 < 100 ? "met" : "MISSED"}); refused before the reply arrived: ${before}/${run.samples.length}`,
      `  call → refused:            p50 ${f(call.p50)} ms, p99 ${f(call.p99)} ms, max ${f(call.max)} ms; RevokeSession round trip p50 ${f(rpc.p50)} ms, p99 ${f(rpc.p99)} ms`,
      `  found by the onEvent check ${run.samples.length - viaPoll}, by the ${POLL_MS} ms poll ${viaPoll}; event applied → verify() refused p50 ${f(afterEvent.p50)} ms, max ${f(afterEvent.max)} ms`,
      `  warm-up (not counted), reply → refused: ${run.warmup.map((s) => f(s.fromReply)).join(", ")} ms; clock check ${run.clock.ok}/${run.clock.pings} pings consistent (IPC round trip ${f(run.clock.roundTripMs)} ms); the watcher applied ${run.child.events} events; set-up (admin login, ${WARMUP + r.revocations} logins) ${round(run.seedSeconds)} s`,
    );
  }
  return lines.join("\n");
}
