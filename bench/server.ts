// Starts Tessera as a real process (as `npm start` does) for benchmarks.
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { availableParallelism } from "node:os";
import { createChannel, createClient } from "nice-grpc";
import { HealthDefinition } from "nice-grpc-server-health";
import { processTree } from "./proc.ts";

export const ADMIN_PASSWORD = "bench-admin-password";

export async function freePort(): Promise<number> {
  const server = createServer().listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as { port: number }).port;
  server.close();
  return port;
}

export interface RunningServer {
  child: ChildProcess;
  grpcPort: number;
  httpPort: number;
  /** Milliseconds from spawn to the first SERVING health answer. */
  readyMs: number;
  stop(): Promise<number | null>;
}

/**
 * The command `npm start` runs (package.json), so that the benchmark measures
 * what users start, flags and environment included. BENCH_START overrides it
 * for experiments, e.g. BENCH_START="node src/main.ts".
 */
export function startCommand(): string {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { scripts: { start: string } };
  return process.env.BENCH_START ?? pkg.scripts.start;
}

/**
 * BENCH_WORKERS=n (or auto) runs the servers on PostgreSQL with TESSERA_WORKERS=n: a primary and
 * its workers, whose CPU and RSS the benchmarks add up (proc.ts processTree). PGlite runs stay one
 * process (the embedded database lives inside one).
 */
export function serverWorkers(env: Record<string, string> = {}): { TESSERA_WORKERS?: string } {
  const asked = process.env.BENCH_WORKERS;
  const databaseUrl = env.DATABASE_URL ?? process.env.DATABASE_URL;
  if (!asked || !databaseUrl) return {};
  return { TESSERA_WORKERS: asked === "auto" ? String(availableParallelism()) : asked };
}

/** Spawns the server and polls grpc.health.v1.Health/Check every 10 ms until SERVING. */
export async function startServer(dataDir: string, env: Record<string, string> = {}): Promise<RunningServer> {
  const grpcPort = await freePort();
  const httpPort = await freePort();
  const started = performance.now();
  // `exec` (after any leading VAR=value) makes the shell become node, so
  // child.pid is the server itself.
  const workersEnv = serverWorkers(env);
  const workers = Number(workersEnv.TESSERA_WORKERS ?? 1);
  const command = startCommand().replace(/^((?:\w+=\S*\s+)*)/, "$1exec ");
  const child = spawn("/bin/sh", ["-c", command], {
    env: {
      PATH: process.env.PATH ?? "",
      TESSERA_GRPC_ADDR: `127.0.0.1:${grpcPort}`,
      TESSERA_HTTP_ADDR: `127.0.0.1:${httpPort}`,
      TESSERA_DATA_DIR: dataDir,
      TESSERA_ADMIN_PASSWORD: ADMIN_PASSWORD,
      TESSERA_LOG_LEVEL: "warn",
      // Set both to benchmark against a real PostgreSQL (an empty database).
      ...(process.env.DATABASE_URL ? { DATABASE_URL: process.env.DATABASE_URL, TESSERA_MASTER_KEY: process.env.TESSERA_MASTER_KEY ?? "" } : {}),
      ...env,
      ...workersEnv,
    },
    // stdout (the log, level warn) is kept, not shown: its tail explains a failed start.
    stdio: ["ignore", "pipe", "inherit"],
  });
  let log = "";
  child.stdout!.on("data", (c: Buffer) => (log = (log + c.toString()).slice(-8000)));
  const serving = async () => {
    // A fresh channel (and connection) per attempt: a refused connection would otherwise put the
    // channel into grpc-js's reconnect backoff (1 s and more) and inflate the figure; with
    // TESSERA_WORKERS each connection goes to the next worker.
    const channel = createChannel(`127.0.0.1:${grpcPort}`, undefined, { "grpc.use_local_subchannel_pool": 1 });
    const ok = await createClient(HealthDefinition, channel)
      .check({ service: "" })
      .then((r) => r.status === 1, () => false);
    channel.close();
    return ok;
  };
  const waitFor = async (ready: () => Promise<boolean> | boolean) => {
    while (!(await ready())) {
      if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}${log ? `:\n${log}` : ""}`);
      await new Promise((r) => setTimeout(r, 10));
      if (performance.now() - started > 60_000) throw new Error("server did not become ready in 60 s");
    }
  };
  await waitFor(serving);
  if (workers > 1) {
    // Every worker forked, then enough SERVING answers in a row on fresh connections (handed to
    // the workers in turn) that each worker gave some.
    await waitFor(() => processTree(child.pid!).length > workers);
    let inARow = 0;
    await waitFor(async () => ((inARow = (await serving()) ? inARow + 1 : 0) >= 4 * workers));
  }
  const readyMs = performance.now() - started;
  return {
    child,
    grpcPort,
    httpPort,
    readyMs,
    async stop() {
      if (child.exitCode !== null) return child.exitCode;
      child.kill("SIGTERM");
      const [code] = await once(child, "exit");
      return code as number | null;
    },
  };
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export const round = (value: number, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits;

/** A target's verdict: "met" only when the figure meets it and its loads had no failed call. */
export const verdict = (failures: number, met: boolean) => (failures === 0 && met ? "met" : `MISSED${failures ? ` (${failures} failed calls)` : ""}`);

/** When BENCH_START profiles (--cpu-prof), where a load sits in that server's profile, for bench/cpuprofile.ts. */
export function profileLine(span: { pid: number; from: number; to: number }): string[] {
  if (!/--cpu-prof\b/.test(process.env.BENCH_START ?? "")) return [];
  return [`  profile: CPU.*.${span.pid}.*.cpuprofile; the load (warm-up included) is node bench/cpuprofile.ts <file> --from ${span.from} --to ${span.to}`];
}
