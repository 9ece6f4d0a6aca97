// Domain errors. Services throw these; src/grpc/errors.middleware.ts is the one
// place that maps them to gRPC status codes and google.rpc error details.
import type { ErrorReason } from "@tessera/client";

/** An ErrorReason value name, sent verbatim as google.rpc.ErrorInfo.reason. */
export type Reason = Exclude<keyof typeof ErrorReason, "ERROR_REASON_UNSPECIFIED">;

/** How an error is reported to callers (maps 1:1 to a gRPC status code). */
export type ErrorKind =
  | "INVALID_ARGUMENT"
  | "UNAUTHENTICATED"
  | "PERMISSION_DENIED"
  | "NOT_FOUND"
  | "ALREADY_EXISTS"
  | "FAILED_PRECONDITION"
  | "RESOURCE_EXHAUSTED"
  | "UNAVAILABLE";

export interface FieldViolation {
  /** Field path in the request, snake_case as in the proto (e.g. "user.email"). */
  field: string;
  description: string;
}

export class TesseraError extends Error {
  readonly kind: ErrorKind;
  readonly reason: Reason;
  readonly fieldViolations: readonly FieldViolation[];
  /** Extra ErrorInfo metadata; never secrets. */
  readonly metadata: Readonly<Record<string, string>>;
  /** For RESOURCE_EXHAUSTED: how long to wait before retrying. */
  readonly retryAfterMs?: number;

  constructor(
    kind: ErrorKind,
    reason: Reason,
    message: string,
    options: {
      fieldViolations?: FieldViolation[];
      metadata?: Record<string, string>;
      retryAfterMs?: number;
      cause?: unknown;
    } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = "TesseraError";
    this.kind = kind;
    this.reason = reason;
    this.fieldViolations = options.fieldViolations ?? [];
    this.metadata = options.metadata ?? {};
    this.retryAfterMs = options.retryAfterMs;
  }
}

export function invalidInput(violations: FieldViolation[], reason: Reason = "INVALID_INPUT"): TesseraError {
  const summary = violations.map((v) => `${v.field}: ${v.description}`).join("; ");
  return new TesseraError("INVALID_ARGUMENT", reason, `invalid request: ${summary}`, { fieldViolations: violations });
}

export function notFound(reason: Reason, message: string): TesseraError {
  return new TesseraError("NOT_FOUND", reason, message);
}

export function alreadyExists(message: string, field?: string): TesseraError {
  return new TesseraError("ALREADY_EXISTS", "ALREADY_EXISTS", message, {
    fieldViolations: field ? [{ field, description: message }] : [],
  });
}

export function unauthenticated(reason: Reason, message: string): TesseraError {
  return new TesseraError("UNAUTHENTICATED", reason, message);
}

export function permissionDenied(message: string, reason: Reason = "PERMISSION_DENIED"): TesseraError {
  return new TesseraError("PERMISSION_DENIED", reason, message);
}

export function failedPrecondition(reason: Reason, message: string): TesseraError {
  return new TesseraError("FAILED_PRECONDITION", reason, message);
}

export function tooManyAttempts(retryAfterMs: number): TesseraError {
  return new TesseraError("RESOURCE_EXHAUSTED", "TOO_MANY_ATTEMPTS", "too many failed attempts; retry later", {
    retryAfterMs,
  });
}

export function databaseUnavailable(cause: unknown): TesseraError {
  return new TesseraError("UNAVAILABLE", "DATABASE_UNAVAILABLE", "the database is unavailable; retry later", { cause });
}

/**
 * The most field violations one error carries. Each is a few dozen bytes of
 * the google.rpc.BadRequest trailer; hundreds overflow grpc-js's header limit
 * (the client then sees INTERNAL "Protocol error"), and collecting them is
 * work an attacker chooses. Twenty are plenty for a human to fix a request.
 */
export const MAX_VIOLATIONS = 20;

/** Collects field violations so a request reports its problems at once, up to MAX_VIOLATIONS. */
export class Violations {
  readonly list: FieldViolation[] = [];
  readonly #reasons = new Set<Reason>();
  #dropped = false;
  /** Adds a violation; `reason` refines INVALID_INPUT (e.g. WEAK_PASSWORD). Beyond the cap it is dropped. */
  add(field: string, description: string, reason: Reason = "INVALID_INPUT"): this {
    if (this.list.length >= MAX_VIOLATIONS) {
      this.#dropped = true;
      return this;
    }
    this.list.push({ field, description });
    this.#reasons.add(reason);
    return this;
  }
  get empty(): boolean {
    return this.list.length === 0;
  }
  /** True once the cap is reached: validators stop looking for more. */
  get full(): boolean {
    return this.list.length >= MAX_VIOLATIONS;
  }
  /** The INVALID_ARGUMENT error for the violations; the reason is specific only when all agree. */
  toError(): TesseraError {
    const error = invalidInput(this.list, this.#reasons.size === 1 ? [...this.#reasons][0]! : "INVALID_INPUT");
    if (this.#dropped) error.message += "; and more";
    return error;
  }
  /** Throws INVALID_ARGUMENT with the violations, if any. */
  throwIfAny(): void {
    if (!this.empty) throw this.toError();
  }
}
