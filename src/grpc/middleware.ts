// Cross-cutting concerns as nice-grpc middleware, composed once in server.ts:
// request logging -> error mapping -> per-call EntityManager fork (with its revocation recorder).
import { Status, type CallContext, type ServerMiddleware, ServerError } from "nice-grpc";
import { BadRequest, ErrorInfo, RetryInfo, RichServerError } from "nice-grpc-error-details";
import type { BlockList } from "node:net";
import type { Logger } from "pino";
import { clientAddress } from "./client-address.ts";
import type { Database } from "../db/orm.ts";
import { RevocationRecorder } from "../events/index.ts";
import { isDatabaseUnavailable } from "../db/errors.ts";
import { databaseUnavailable, TesseraError, type ErrorKind } from "../errors.ts";
import type { TesseraContext } from "./context.ts";

export const ERROR_DOMAIN = "tessera.identity.v1";

const STATUS_OF_KIND: Record<ErrorKind, Status> = {
  INVALID_ARGUMENT: Status.INVALID_ARGUMENT,
  UNAUTHENTICATED: Status.UNAUTHENTICATED,
  PERMISSION_DENIED: Status.PERMISSION_DENIED,
  NOT_FOUND: Status.NOT_FOUND,
  ALREADY_EXISTS: Status.ALREADY_EXISTS,
  FAILED_PRECONDITION: Status.FAILED_PRECONDITION,
  RESOURCE_EXHAUSTED: Status.RESOURCE_EXHAUSTED,
  UNAVAILABLE: Status.UNAVAILABLE,
};

/** Turns a domain error into a status with ErrorInfo (+ BadRequest, RetryInfo) details. */
export function toRichServerError(error: TesseraError): RichServerError {
  const details = [ErrorInfo.fromPartial({ reason: error.reason, domain: ERROR_DOMAIN, metadata: { ...error.metadata } })];
  if (error.fieldViolations.length > 0) {
    details.push(BadRequest.fromPartial({ fieldViolations: error.fieldViolations.map((v) => ({ ...v })) }) as never);
  }
  if (error.retryAfterMs !== undefined) {
    const ms = Math.max(0, Math.ceil(error.retryAfterMs));
    details.push(RetryInfo.fromPartial({ retryDelay: { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 } }) as never);
  }
  return new RichServerError(STATUS_OF_KIND[error.kind], error.message, details);
}

function internalError(): RichServerError {
  return new RichServerError(Status.INTERNAL, "internal error", [
    ErrorInfo.fromPartial({ reason: "INTERNAL_ERROR", domain: ERROR_DOMAIN }),
  ]);
}

/**
 * Maps every failure to a clear status: domain errors keep their reason, a
 * lost database is UNAVAILABLE, and anything else is a bug reported as
 * INTERNAL with no internals leaked (the stack goes to the log only).
 */
export function errorMappingMiddleware(): ServerMiddleware<{}, { log: Logger }> {
  return async function* mapErrors(call, context) {
    try {
      return yield* call.next(call.request, context);
    } catch (error) {
      if (error instanceof TesseraError) throw toRichServerError(error);
      if (error instanceof ServerError) throw error;
      if (isDatabaseUnavailable(error)) {
        context.log.warn({ err: error }, "database unavailable");
        throw toRichServerError(databaseUnavailable(error));
      }
      if (isAbort(error, context)) throw error;
      context.log.error({ err: error }, "unexpected error");
      throw internalError();
    }
  };
}

function isAbort(error: unknown, context: CallContext): boolean {
  return context.signal.aborted && (error as { name?: string })?.name === "AbortError";
}

/**
 * Gives each call its own EntityManager fork (never a global identity map),
 * carrying the call's RevocationRecorder. After a call that recorded
 * revocations (logout, refresh-token reuse, user disabled, tenant deleted,
 * grants changed...), on its success and its error path alike, waits until
 * this process has applied them, so the very next VerifyToken on this replica
 * already sees them.
 */
export function ormContextMiddleware(orm: Database, feed: { poll(): Promise<void> }): ServerMiddleware<Pick<TesseraContext, "em">, {}> {
  return async function* forkEntityManager(call, context) {
    const { em, recorder } = RevocationRecorder.fork(orm.em);
    try {
      return yield* call.next(call.request, { ...context, em });
    } finally {
      if (recorder.recorded) await feed.poll();
    }
  };
}

/**
 * Structured request logging: method, status, duration, peer; never request
 * bodies or metadata (they hold passwords and tokens). Successful calls log at
 * debug so that a busy verifier does not drown in its own logs; failures at info.
 */
export function loggingMiddleware(logger: Logger, trustedProxies: BlockList): ServerMiddleware<Pick<TesseraContext, "log" | "peer">, {}> {
  return async function* logCall(call, context) {
    const start = process.hrtime.bigint();
    const log = logger.child({ rpc: call.method.path });
    const peer = clientAddress(context.peer, context.metadata.get("x-forwarded-for"), trustedProxies);
    let code = "OK";
    try {
      return yield* call.next(call.request, { ...context, log, peer });
    } catch (error) {
      code = error instanceof ServerError ? Status[error.code] : "UNKNOWN";
      throw error;
    } finally {
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      const entry = { code, ms: Math.round(ms * 100) / 100, peer };
      if (code === "OK") log.debug(entry, "rpc");
      else log.info(entry, "rpc failed");
    }
  };
}
