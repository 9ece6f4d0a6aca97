// The process logger: structured JSON (pino) with secrets kept out. Request
// bodies and metadata are never logged (grpc/middleware.ts); what could still
// carry a secret is redacted by path, and errors go through a serializer that
// keeps only what explains them: a database error's SQL text, bound
// parameters and value-bearing fields (an argon2 hash, an e-mail, a token
// hash) never reach a log line.
import { pino, type DestinationStream, type Logger } from "pino";

export const LOG_REDACT = [
  "password",
  "*.password",
  "newPassword",
  "currentPassword",
  "refreshToken",
  "accessToken",
  "token",
  "authorization",
  "*.authorization",
  "req.headers.authorization",
  "req.headers.cookie",
];

/**
 * Fields of an error that explain it without carrying data. Everything else
 * (pg's query, params, detail, where, hint, internalQuery; MikroORM's
 * wrapped query; any field a library adds later) is dropped.
 */
const ERROR_FIELDS = new Set(["code", "errno", "severity", "routine", "constraint", "table", "column", "schema", "dataType", "name", "reason", "kind", "syscall", "address", "port"]);
/** A message that begins with the statement the driver ran ("insert into ... - duplicate key ..."). */
const SQL_PREFIX = /^\s*(insert|update|delete|select|with|merge|copy|create|alter|drop)\b[\s\S]*? - /i;

function scrubMessage(message: string): string {
  return message.replace(SQL_PREFIX, "[sql omitted] - ");
}

type SerializedError = Record<string, unknown>;

/**
 * An error as a log object: its type, scrubbed message, stack frames, the
 * fields that explain it, and its cause the same way. Built here rather than
 * with pino's serializer, which copies every field and folds the causes'
 * messages (SQL included) into the message and stack.
 */
export function safeErrorSerializer(error: unknown, depth = 0): SerializedError | unknown {
  // A thrown non-Error (an object or a string from some library) is logged by its type only: its fields are unknown.
  if (!(error instanceof Error)) return error === undefined || error === null ? error : { type: typeof error, message: "[non-Error value omitted]" };
  if (depth > 5) return { type: error.name, message: "[cause chain truncated]" };
  const message = scrubMessage(error.message);
  const frames = (error.stack ?? "").split("\n").filter((line) => /^\s+at /.test(line));
  const safe: SerializedError = { type: error.constructor?.name ?? error.name, message, stack: [`${error.name}: ${message}`, ...frames].join("\n") };
  for (const [key, value] of Object.entries(error)) {
    if (ERROR_FIELDS.has(key) && (typeof value === "string" || typeof value === "number")) safe[key] = key === "message" ? message : value;
  }
  if (error.cause !== undefined) safe.cause = safeErrorSerializer(error.cause, depth + 1);
  return safe;
}

export function createLogger(options: { level: string; destination?: DestinationStream }): Logger {
  return pino(
    {
      level: options.level,
      redact: { paths: LOG_REDACT, censor: "[redacted]" },
      base: { service: "tessera" },
      serializers: { err: (error: unknown) => safeErrorSerializer(error) },
    },
    options.destination,
  );
}
