// Cross-cutting concerns as nice-grpc middleware, composed once in server.ts:
// request logging -> error mapping -> per-call EntityManager fork (with its revocation recorder).
import { Status, type CallContext, type ServerMiddleware, ServerError } from "nice-grpc";
import { BadRequest, ErrorInfo, RetryInfo, RichServerError } from "nice-grpc-error-details";
import { randomUUID } from "node:crypto";
import type { BlockList } from "node:net";
import type { Logger } from "pino";
import { clientAddress } from "./client-address.ts";
import { activeTraceId } from "../observability/tracing.ts";
import type { Database } from "../db/orm.ts";
import { RevocationRecorder } from "../events/index.ts";
import { isDatabaseUnavailable } from "../db/errors.ts";
import { databaseUnavailable, TesseraError, type ErrorKind } from "../errors.ts";
import { CallScope, type TesseraContext } from "./context.ts";

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
      // The caller is gone (deadline or cancellation): its database work was cancelled with it (db/call-deadline.ts).
      if (context.signal.aborted) {
        context.log.debug({ err: error }, "call abandoned by its caller");
        throw new ServerError(Status.CANCELLED, "the call was cancelled or its deadline passed");
      }
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
 * carrying the call's RevocationRecorder. The fork is made when the call first
 * reads `context.em`: a VerifyToken answered from the caches, or a health
 * check, never makes one. After a call that recorded revocations (logout,
 * refresh-token reuse, user disabled, tenant deleted, grants changed...), on
 * its success and its error path alike, waits until this process has applied
 * them, so the very next VerifyToken on this replica already sees them.
 */
export function ormContextMiddleware(orm: Database, feed: { poll(): Promise<boolean>; distrust(): void }): ServerMiddleware<Pick<TesseraContext, "em">, {}> {
  return async function* forkEntityManager(call, context) {
    let forked: ReturnType<typeof RevocationRecorder.fork> | undefined;
    const scope = CallScope.of(context);
    scope.emFrom(() => (forked = RevocationRecorder.fork(orm.em)).em);
    try {
      return yield* call.next(call.request, scope);
    } finally {
      // The revocation may be committed while the log cannot be read back (the database was lost
      // right after the commit): then no cached session state may answer until it has been.
      if (forked?.recorder.recorded && !(await feed.poll())) feed.distrust();
    }
  };
}

/** A caller's x-request-id is kept when it is a plain token (no log injection, bounded); otherwise one is made. */
const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

export function requestIdOf(given: string | undefined): string {
  return given !== undefined && REQUEST_ID.test(given) ? given : randomUUID();
}

/**
 * Structured request logging: method, status, duration, peer and the request
 * id; never request bodies or metadata (they hold passwords and tokens).
 * Every line a call logs (context.log) carries its request id: the caller's
 * `x-request-id` metadata when it sends a usable one, else a new UUID; either
 * way it is returned in the response's `x-request-id` header. Successful calls
 * log at debug so that a busy verifier does not drown in its own logs;
 * failures at info.
 */
export function loggingMiddleware(logger: Logger, trustedProxies: BlockList): ServerMiddleware<Pick<TesseraContext, "log" | "peer" | "requestId">, {}> {
  return async function* logCall(call, context) {
    const start = process.hrtime.bigint();
    const requestId = requestIdOf(context.metadata.get("x-request-id"));
    context.header.set("x-request-id", requestId);
    const traceId = activeTraceId();
    // The call's logger is made when first used: most successful calls log nothing at the default level.
    const scope = CallScope.of(context);
    scope.logWith(() => logger.child(traceId ? { rpc: call.method.path, reqId: requestId, traceId } : { rpc: call.method.path, reqId: requestId }));
    const peer = clientAddress(context.peer, context.metadata.get("x-forwarded-for"), trustedProxies);
    scope.peer = peer;
    scope.requestId = requestId;
    let code = "OK";
    try {
      return yield* call.next(call.request, scope);
    } catch (error) {
      code = error instanceof ServerError ? Status[error.code] : "UNKNOWN";
      throw error;
    } finally {
      if (code !== "OK" || logger.isLevelEnabled("debug")) {
        const ms = Number(process.hrtime.bigint() - start) / 1e6;
        const entry = { code, ms: Math.round(ms * 100) / 100, peer };
        if (code === "OK") scope.log.debug(entry, "rpc");
        else scope.log.info(entry, "rpc failed");
      }
    }
  };
}
