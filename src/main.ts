// `npm start`: Tessera as a process. Configuration errors stop it with a message
// naming the variable; SIGTERM/SIGINT drain in-flight calls and close the database.
import { createLogger } from "./logging.ts";
import { ConfigError, loadConfig, type Config } from "./config.ts";
import { startTessera } from "./app.ts";
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

const logger = createLogger({ level: config.logLevel });
// OpenTelemetry first (when the OTEL_ variables ask for it), so that every span has its provider.
const tracing = config.tracing ? startTracing() : undefined;
if (tracing) logger.info("OpenTelemetry tracing on (OTEL_ environment variables)");

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
} catch (error) {
  if (error instanceof ConfigError) {
    // A taken port is the operator's to fix: one line, no stack trace.
    process.stderr.write(`tessera: ${error.message}\n`);
    process.exit(2);
  }
  logger.fatal({ err: error }, "tessera failed to start");
  process.exit(1);
}
