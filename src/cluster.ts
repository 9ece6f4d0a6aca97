// TESSERA_WORKERS: several Tessera processes behind the same ports, started by
// one command, so that one host's cores all serve. The primary process runs no
// server of its own: it forks the workers (node:cluster, which shares the gRPC
// and HTTP listening sockets and hands each new connection to the next worker
// in turn), starts another when one dies, answers a worker's /metrics with
// every worker's series (each labelled with its worker slot), and on SIGTERM
// drains them all. Each worker is a whole Tessera, exactly a replica on the
// same PostgreSQL: revocations, rate limits, replay records, keys and the
// registry are shared through the database (or Redis) as between replicas on
// several machines, which is why more than one worker needs DATABASE_URL.
import cluster, { type Worker } from "node:cluster";
import { AggregatorRegistry, type Registry } from "prom-client";
import type { Logger } from "pino";
import type { Config } from "./config.ts";

const READY = "tessera:ready";
/** Worker → primary: "my /metrics was asked for"; primary → worker: the exposition (or an error). */
const METRICS = "tessera:metrics";
/** Primary → worker: "your series, please"; worker → primary: them, as prom-client's JSON. */
const COLLECT = "tessera:collect";

/** One registry's series as prom-client's JSON (what AggregatorRegistry.aggregate takes). */
type MetricJson = Awaited<ReturnType<Registry["getMetricsAsJSON"]>>[number];

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
interface CollectMessage {
  type: typeof COLLECT;
  id: number;
  metrics?: MetricJson[];
}

/** True in a process forked by the primary of TESSERA_WORKERS. */
export const isWorker = cluster.isWorker;

/** How long the primary waits for each worker's series; a worker that has not answered by then is left out of that scrape. */
const COLLECT_TIMEOUT_MS = 3000;
/** How long a worker's /metrics waits for the primary's answer. */
const METRICS_TIMEOUT_MS = COLLECT_TIMEOUT_MS + 2000;

/**
 * In a worker, first thing: a worker whose primary is gone drains itself. Node's
 * cluster would otherwise end the process at once (its own disconnect handler
 * exits unless the worker is marked as leaving), cutting calls in flight.
 */
export function prepareWorker(onPrimaryGone: () => void): void {
  const worker = cluster.worker!;
  worker.once("disconnect", () => {
    worker.exitedAfterDisconnect = true;
    onPrimaryGone();
  });
}

/** In a worker, once it serves: tells the primary. */
export function announceReady(listening: Listening): void {
  process.send?.({ type: READY, ...listening } satisfies ReadyMessage);
}

/**
 * In a worker: `registry` is what this worker gives to the primary's
 * collections, and the returned function is this worker's /metrics
 * exposition: every worker's series, which the primary collects.
 */
export function clusterExposition(registry: Registry): () => Promise<string> {
  let next = 0;
  const pending = new Map<number, { resolve(body: string): void; reject(error: Error): void; timer: NodeJS.Timeout }>();
  process.on("message", (message: MetricsMessage | CollectMessage) => {
    if (message?.type === COLLECT) {
      registry.getMetricsAsJSON().then(
        (metrics) => process.connected && process.send!({ type: COLLECT, id: message.id, metrics } satisfies CollectMessage),
        () => process.connected && process.send!({ type: COLLECT, id: message.id } satisfies CollectMessage),
      );
      return;
    }
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
      if (!process.connected) return reject(new Error("the primary is gone"));
      const id = next++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`the primary did not answer with the workers' metrics in ${METRICS_TIMEOUT_MS / 1000} s`));
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
  /** Set once every worker served; until then any worker's exit fails the start. */
  let serving = false;
  let stopping = false;
  /** The exit code of the primary once its workers are gone. */
  let exitCode = 0;
  let restartDelay = FIRST_RESTART_DELAY_MS;
  /** Referenced timers: a primary whose every worker is dead waits for them, not for nothing. */
  const restarts = new Set<NodeJS.Timeout>();
  const startedAt = new WeakMap<Worker, number>();
  /** Each worker's slot, 1…n, the label of its series; a replacement takes its predecessor's. */
  const slots = new Map<Worker, number>();
  /** Workers that said they serve: the ones a scrape asks. */
  const ready = new Set<Worker>();
  const live = () => Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && !w.isDead());

  /**
   * Once the first worker listens: its ports. node:cluster keeps a listening socket while a worker
   * holds it, keyed by the address asked for; when every worker is gone it closes it, and a worker
   * asking for port 0 again would get a new one. So the worker forked when none is left asks for
   * the ports themselves, and every worker after it too (the same key).
   */
  let portsEnv: Record<string, string> = {};
  let forkEnv: Record<string, string> = {};
  const fork = (slot: number) => {
    if (serving && live().length === 0) forkEnv = portsEnv;
    const worker = cluster.fork(forkEnv);
    startedAt.set(worker, Date.now());
    slots.set(worker, slot);
    // A send to a worker that has just died fails with EPIPE as an 'error' event: not the primary's end.
    worker.on("error", (error: Error) => logger.warn({ worker: worker.id, err: error }, "worker channel error"));
    worker.on("message", (message: ReadyMessage) => {
      if (message?.type === READY) ready.add(worker);
    });
    return worker;
  };

  // One collection at a time, shared by the scrapes that arrive while it runs.
  let collecting: Promise<string> | undefined;
  let nextCollect = 0;
  const collectOne = (worker: Worker) =>
    new Promise<MetricJson[]>((resolve) => {
      const id = nextCollect++;
      const done = (metrics: MetricJson[]) => {
        clearTimeout(timer);
        worker.off("message", onMessage);
        worker.off("exit", onExit);
        resolve(metrics);
      };
      const onMessage = (message: CollectMessage) => {
        if (message?.type === COLLECT && message.id === id) done(message.metrics ?? []);
      };
      const onExit = () => done([]);
      const timer = setTimeout(() => done([]), COLLECT_TIMEOUT_MS);
      worker.on("message", onMessage);
      worker.once("exit", onExit);
      if (worker.isConnected()) worker.send({ type: COLLECT, id } satisfies CollectMessage);
      else done([]);
    });
  const collect = async () => {
    const workers = [...ready].filter((w) => !w.isDead());
    const perWorker = await Promise.all(
      workers.map(async (worker) => {
        const slot = String(slots.get(worker));
        // Each series carries its worker's slot: summed series would fall when a worker is replaced,
        // and rate() would read the fall as a reset. Distinct labels leave nothing to aggregate, so
        // every metric is "summed" (one value each), process_start_time_seconds too (prom-client omits it).
        return (await collectOne(worker)).map((m) => ({ ...m, aggregator: "sum" as const, values: m.values.map((v) => ({ ...v, labels: { ...v.labels, worker: slot } })) }));
      }),
    );
    return AggregatorRegistry.aggregate(perWorker as Parameters<typeof AggregatorRegistry.aggregate>[0]).metrics();
  };
  cluster.on("message", (worker: Worker, message: MetricsMessage) => {
    if (message?.type !== METRICS) return;
    const answer = (reply: MetricsMessage) => {
      if (worker.isConnected()) worker.send(reply);
    };
    (collecting ??= collect().finally(() => (collecting = undefined))).then(
      (body) => answer({ type: METRICS, id: message.id, body }),
      (error: Error) => answer({ type: METRICS, id: message.id, error: error.message }),
    );
  });

  /** Asks every worker to drain (SIGTERM), kills those still there after the grace period, exits when all are gone. */
  const stopAll = (code: number) => {
    stopping = true;
    exitCode ||= code;
    for (const timer of restarts) clearTimeout(timer);
    restarts.clear();
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

  const fail = (code: number, why: string) => {
    if (stopping) return; // a signal during the start: its workers' exits end the process
    logger.fatal({ code }, why);
    stopAll(code);
  };

  cluster.on("exit", (worker, code, signal) => {
    ready.delete(worker);
    const slot = slots.get(worker)!;
    slots.delete(worker);
    if (stopping) {
      // A worker still starting when SIGTERM came has no handler yet and dies of the signal: a clean stop too.
      if (code !== 0 && signal !== "SIGTERM") exitCode ||= 1;
      if (live().length === 0) {
        logger.info("stopped");
        process.exit(exitCode);
      }
      return;
    }
    if (!serving) return fail(code || 1, "a worker exited during the start (its output says why)");
    const lived = Date.now() - (startedAt.get(worker) ?? 0);
    const delay = lived < STEADY_MS ? restartDelay : FIRST_RESTART_DELAY_MS;
    restartDelay = Math.min(delay * 2, MAX_RESTART_DELAY_MS);
    logger.error({ worker: worker.id, pid: worker.process.pid, code, signal, restartInMs: delay }, "worker exited; starting another");
    const timer = setTimeout(() => {
      restarts.delete(timer);
      if (!stopping) fork(slot);
    }, delay);
    restarts.add(timer);
  });

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

  const first = await started(fork(1));
  if ("exitCode" in first) return fail(first.exitCode || 1, "the first worker did not start (its output says why)");
  const port = (address: string) => address.slice(address.lastIndexOf(":") + 1);
  portsEnv = {
    TESSERA_GRPC_ADDR: config.grpcAddr.replace(/:\d+$/, `:${port(first.grpc)}`),
    TESSERA_HTTP_ADDR: config.httpAddr.replace(/:\d+$/, `:${port(first.http)}`),
  };
  const rest = await Promise.all(Array.from({ length: config.workers - 1 }, (_, i) => (stopping ? { exitCode: 0 } : started(fork(i + 2)))));
  const failed = rest.find((r): r is { exitCode: number } => "exitCode" in r);
  if (failed) return fail(failed.exitCode || 1, "a worker did not start (its output says why)");
  if (stopping) return;
  serving = true;
  logger.info({ ...first, workers: config.workers, pids: live().map((w) => w.process.pid) }, "tessera listening");
}
