// TESSERA_WORKERS: several Tessera processes behind the same ports, started by
// one command, so that one host's cores all serve. The primary process runs no
// server of its own: it forks the workers (node:cluster, which shares the gRPC
// and HTTP listening sockets and hands each new connection to the next worker
// in turn), starts another when one dies, answers a worker's /metrics with the
// sum over every worker (prom-client's AggregatorRegistry), and on SIGTERM
// drains them all. Each worker is a whole Tessera, exactly a replica on the
// same PostgreSQL: revocations, rate limits, replay records, keys and the
// registry are shared through the database (or Redis) as between replicas on
// several machines, which is why more than one worker needs DATABASE_URL.
import cluster, { type Worker } from "node:cluster";
import { AggregatorRegistry, type Registry } from "prom-client";
import type { Logger } from "pino";
import type { Config } from "./config.ts";

const READY = "tessera:ready";
const METRICS = "tessera:metrics";

/** Where a worker listens (every worker shares the same ports). */
export interface Listening {
  grpc: string;
  http: string;
  database: string;
}
interface ReadyMessage extends Listening {
  type: typeof READY;
}
interface MetricsMessage {
  type: typeof METRICS;
  id: number;
  body?: string;
  error?: string;
}

/** True in a process forked by the primary of TESSERA_WORKERS. */
export const isWorker = cluster.isWorker;

/** How long a worker's /metrics waits for the primary's sum; prom-client gives each worker 5 s. */
const METRICS_TIMEOUT_MS = 8000;

/**
 * In a worker, first thing: answer the primary's metrics collection at once
 * (with nothing until `clusterExposition` names the registry), so that a scrape
 * while a worker starts does not wait for it.
 */
export function prepareWorker(): void {
  new AggregatorRegistry();
}

/** In a worker, once it serves: tells the primary. */
export function announceReady(listening: Listening): void {
  process.send?.({ type: READY, ...listening } satisfies ReadyMessage);
}

/**
 * In a worker: `registry` is what this worker gives to the primary's sum, and
 * the returned function is this worker's /metrics exposition: the sum over
 * every worker, which the primary collects.
 */
export function clusterExposition(registry: Registry): () => Promise<string> {
  prepareWorker();
  AggregatorRegistry.setRegistries([registry]);
  let next = 0;
  const pending = new Map<number, { resolve(body: string): void; reject(error: Error): void; timer: NodeJS.Timeout }>();
  process.on("message", (message: MetricsMessage) => {
    if (message?.type !== METRICS) return;
    const waiting = pending.get(message.id);
    if (!waiting) return;
    pending.delete(message.id);
    clearTimeout(waiting.timer);
    if (message.error !== undefined) waiting.reject(new Error(message.error));
    else waiting.resolve(message.body ?? "");
  });
  return () =>
    new Promise<string>((resolve, reject) => {
      const id = next++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`the primary did not sum the workers' metrics in ${METRICS_TIMEOUT_MS / 1000} s`));
      }, METRICS_TIMEOUT_MS);
      pending.set(id, { resolve, reject, timer });
      process.send!({ type: METRICS, id } satisfies MetricsMessage);
    });
}

/** A worker that starts and dies within this time is a failing start: the next one waits longer. */
const STEADY_MS = 10_000;
const FIRST_RESTART_DELAY_MS = 500;
const MAX_RESTART_DELAY_MS = 30_000;

/**
 * The primary: forks `config.workers` workers (the first alone, since it
 * migrates the database and bootstraps the first tenant), logs "tessera
 * listening" once all of them serve, keeps their number, and drains them on
 * SIGTERM or SIGINT. Exits the process when done.
 */
export async function runPrimary(config: Config, logger: Logger): Promise<void> {
  const aggregator = new AggregatorRegistry();
  /** Set once every worker served; until then a worker's exit fails the start instead of being replaced. */
  let serving = false;
  let stopping = false;
  /** The exit code of the primary once its workers are gone. */
  let exitCode = 0;
  let restartDelay = FIRST_RESTART_DELAY_MS;
  const startedAt = new WeakMap<Worker, number>();
  const live = () => Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);

  cluster.on("message", (worker: Worker, message: MetricsMessage) => {
    if (message?.type !== METRICS) return;
    const answer = (reply: MetricsMessage) => {
      if (worker.isConnected()) worker.send(reply);
    };
    aggregator.clusterMetrics().then(
      (body) => answer({ type: METRICS, id: message.id, body }),
      (error: Error) => answer({ type: METRICS, id: message.id, error: error.message }),
    );
  });

  const fork = () => {
    const worker = cluster.fork();
    startedAt.set(worker, Date.now());
    return worker;
  };

  /** Resolves with where the worker listens, or with its exit code should it end first. */
  const started = (worker: Worker) =>
    new Promise<Listening | { exitCode: number }>((resolve) => {
      const onMessage = (message: ReadyMessage) => {
        if (message?.type !== READY) return;
        worker.off("exit", onExit);
        worker.off("message", onMessage);
        resolve({ grpc: message.grpc, http: message.http, database: message.database });
      };
      const onExit = (code: number | null, signal: string | null) => {
        worker.off("message", onMessage);
        resolve({ exitCode: code ?? (signal ? 1 : 0) });
      };
      worker.on("message", onMessage);
      worker.once("exit", onExit);
    });

  /** Asks every worker to drain (SIGTERM), kills those still there after the grace period, exits when all are gone. */
  const stopAll = (code: number) => {
    stopping = true;
    exitCode ||= code;
    const workers = live();
    if (workers.length === 0) process.exit(exitCode);
    for (const worker of workers) worker.process.kill("SIGTERM");
    setTimeout(() => {
      for (const worker of live()) worker.process.kill("SIGKILL");
    }, (config.shutdownGraceSeconds + 10) * 1000).unref();
  };
  const onSignal = (signal: string) => {
    if (stopping) return;
    logger.info({ signal, workers: live().length }, "shutting down: draining every worker");
    stopAll(0);
  };
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));

  cluster.on("exit", (worker, code, signal) => {
    if (stopping) {
      if (code !== 0) exitCode ||= 1;
      if (live().length === 0) {
        logger.info("stopped");
        process.exit(exitCode);
      }
      return;
    }
    if (!serving) return; // the start below sees it and fails
    const lived = Date.now() - (startedAt.get(worker) ?? 0);
    restartDelay = lived < STEADY_MS ? Math.min(restartDelay * 2, MAX_RESTART_DELAY_MS) : FIRST_RESTART_DELAY_MS;
    logger.error({ worker: worker.id, pid: worker.process.pid, code, signal, restartInMs: restartDelay }, "worker exited; starting another");
    setTimeout(() => {
      if (!stopping) fork();
    }, restartDelay).unref();
  });

  const fail = (code: number, why: string) => {
    if (stopping) return; // a signal during the start: its workers' exits end the process
    logger.fatal({ code }, why);
    stopAll(code);
  };
  const first = await started(fork());
  if ("exitCode" in first) return fail(first.exitCode || 1, "the first worker did not start (its output says why)");
  const rest = await Promise.all(Array.from({ length: config.workers - 1 }, () => (stopping ? { exitCode: 0 } : started(fork()))));
  if (stopping) return;
  const failed = rest.find((r): r is { exitCode: number } => "exitCode" in r);
  if (failed) return fail(failed.exitCode || 1, "a worker did not start (its output says why)");
  serving = true;
  logger.info({ ...first, workers: config.workers, pids: live().map((w) => w.process.pid) }, "tessera listening");
}
