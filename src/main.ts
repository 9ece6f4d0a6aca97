// `npm start`: Tessera as a process. Configuration errors stop it with a message
// naming the variable; SIGTERM/SIGINT drain in-flight calls and close the database.
// With TESSERA_WORKERS above 1 this process is the primary of its workers (cluster.ts),
// and each worker runs this file again as a server of its own.
import cluster from "node:cluster";
import { announceReady, isWorker, prepareWorker, runPrimary } from "./cluster.ts";
import { createLogger } from "./logging.ts";
import { ConfigError, loadConfig, type Config } from "./config.ts";
import { startTracing } from "./observability/tracing.ts";

let config: Config;
try {
  config = loadConfig();
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(`tessera: ${error.message}\n`);
    process.exit(2);
  }
  throw error;
}

/** What a worker does when its primary is gone: while it starts, end; once it serves, drain. */
let onPrimaryGone: () => void = () => process.exit(0);
if (isWorker) prepareWorker(() => onPrimaryGone());
let logger = createLogger({ level: config.logLevel });
if (config.workers > 1 && cluster.isPrimary) {
  await runPrimary(config, logger);
} else {
  if (isWorker) logger = logger.child({ worker: cluster.worker!.id });
  await serve(config, logger);
}

/** One Tessera in this process, until SIGTERM or SIGINT (or, for a worker, its primary's end). */
async function serve(config: Config, logger: ReturnType<typeof createLogger>): Promise<void> {
  // OpenTelemetry first (when the OTEL_ variables ask for it), so that every span has its provider.
  const tracing = config.tracing ? startTracing() : undefined;
  if (tracing) logger.info("OpenTelemetry tracing on (OTEL_ environment variables)");
  // Imported here, not above: the primary of TESSERA_WORKERS loads no server code.
  const { startTessera } = await import("./app.ts");

  try {
    const tessera = await startTessera(config, logger);
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, "shutting down: draining in-flight calls");
      tessera
        .close()
        .then(() => tracing?.shutdown())
        .then(
          () => {
            logger.info("stopped");
            process.exit(0);
          },
          (error) => {
            logger.error({ err: error }, "shutdown failed");
            process.exit(1);
          },
        );
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
    if (isWorker) {
      // A worker whose primary is gone (killed without draining it) drains itself.
      onPrimaryGone = () => stop("primary exited");
      announceReady(tessera.listening);
    }
  } catch (error) {
    if (error instanceof ConfigError) {
      // A taken port is the operator's to fix: one line, no stack trace.
      process.stderr.write(`tessera: ${error.message}\n`);
      process.exit(2);
    }
    logger.fatal({ err: error }, "tessera failed to start");
    process.exit(1);
  }
}
