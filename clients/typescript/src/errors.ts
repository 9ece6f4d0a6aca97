// Failed calls as one typed error: the gRPC status, plus what Tessera puts in
// google.rpc details (ErrorInfo reason and metadata, BadRequest field
// violations, RetryInfo delay), so callers branch on a reason instead of
// parsing messages.
import { ClientError, Status, type ClientMiddleware } from "nice-grpc-common";
import { BadRequest, ErrorInfo, RetryInfo, RichClientError, type ErrorDetails } from "nice-grpc-error-details";
import type { ErrorReason } from "./gen/tessera/identity/v1/error_reason.ts";

/** An ErrorInfo reason Tessera sends (the ErrorReason enum's names); other strings may come from newer servers. */
export type ErrorReasonName = Exclude<keyof typeof ErrorReason, "ERROR_REASON_UNSPECIFIED"> | (string & {});

/** The ErrorInfo domain of Tessera's errors. */
export const ERROR_DOMAIN = "tessera.identity.v1";

/** One invalid request field (google.rpc.BadRequest.FieldViolation). */
export interface FieldViolation {
  /** The field path, e.g. `user.username`. */
  field: string;
  description: string;
}

/**
 * A call Tessera refused, or that failed on the way. Extends nice-grpc's
 * RichClientError (itself a ClientError), so `instanceof ClientError` and
 * `error.code` keep working.
 */
export class TesseraClientError extends RichClientError {
  /** The ErrorInfo reason, e.g. "TOKEN_EXPIRED"; undefined when the server sent none (e.g. a transport failure). */
  readonly reason: ErrorReasonName | undefined;
  /** The ErrorInfo domain ("tessera.identity.v1" for Tessera's own errors). */
  readonly domain: string | undefined;
  /** ErrorInfo metadata (e.g. the permission that was missing). */
  readonly metadata: Readonly<Record<string, string>>;
  /** BadRequest field violations, for INVALID_INPUT. */
  readonly fieldViolations: readonly FieldViolation[];
  /** RetryInfo: how long to wait before trying again (throttled logins, rate limits), in milliseconds. */
  readonly retryDelayMs: number | undefined;

  constructor(path: string, code: Status, details: string, extra: ErrorDetails[]) {
    super(path, code, details, extra);
    this.name = "TesseraClientError";
    const info = extra.find((d): d is ErrorInfo => d.$type === ErrorInfo.$type);
    this.reason = info?.reason || undefined;
    this.domain = info?.domain || undefined;
    this.metadata = Object.freeze({ ...info?.metadata });
    const bad = extra.find((d): d is BadRequest => d.$type === BadRequest.$type);
    this.fieldViolations = Object.freeze((bad?.fieldViolations ?? []).map((v) => ({ field: v.field, description: v.description })));
    const retry = extra.find((d): d is RetryInfo => d.$type === RetryInfo.$type);
    const delay = retry?.retryDelay;
    this.retryDelayMs = delay ? Number(delay.seconds) * 1000 + Math.round(Number(delay.nanos) / 1e6) : undefined;
  }

  /** The status name, e.g. "UNAUTHENTICATED". */
  get status(): string {
    return Status[this.code] ?? String(this.code);
  }
}

/** The ErrorInfo reason of a failed call (e.g. "TOKEN_EXPIRED"), or undefined. */
export function errorReason(error: unknown): ErrorReasonName | undefined {
  if (error instanceof TesseraClientError) return error.reason;
  if (!(error instanceof RichClientError)) return undefined;
  const reason = error.extra.find((d): d is ErrorInfo => d.$type === ErrorInfo.$type)?.reason;
  return reason || undefined;
}

/** Wraps a ClientError (rich or not) into a TesseraClientError; anything else unchanged. */
export function toTesseraClientError(error: unknown): unknown {
  if (error instanceof TesseraClientError || !(error instanceof ClientError)) return error;
  const extra = error instanceof RichClientError ? error.extra : [];
  const wrapped = new TesseraClientError(error.path, error.code, error.details, extra);
  if (error.stack) wrapped.stack = error.stack;
  return wrapped;
}

/** Client middleware: every failed call throws a TesseraClientError. Runs outside errorDetailsClientMiddleware. */
export const tesseraErrorsMiddleware: ClientMiddleware = async function* tesseraErrors(call, options) {
  try {
    return yield* call.next(call.request, options);
  } catch (error) {
    throw toTesseraClientError(error);
  }
};
