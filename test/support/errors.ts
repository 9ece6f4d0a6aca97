// Assertions on gRPC failures: status code, ErrorInfo reason and field violations.
import { Status } from "nice-grpc";
import { BadRequest, ErrorInfo, RichClientError } from "nice-grpc-error-details";
import { expect } from "vitest";
import { TesseraError } from "../../src/errors.ts";
import { toRichServerError } from "../../src/grpc/middleware.ts";

export interface ExpectedFailure {
  code: Status;
  reason: string;
  /** Field paths that must appear in BadRequest violations. */
  fields?: string[];
}

export async function expectFailure(promise: Promise<unknown>, expected: ExpectedFailure): Promise<RichClientError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, "the call should have failed").toBeInstanceOf(RichClientError);
  const rich = error as RichClientError;
  expect({ code: Status[rich.code], message: rich.details }).toMatchObject({ code: Status[expected.code] });
  const info = rich.extra.find((d): d is ErrorInfo => d.$type === ErrorInfo.$type);
  expect(info?.reason).toBe(expected.reason);
  expect(info?.domain).toBe("tessera.identity.v1");
  if (expected.fields) {
    const bad = rich.extra.find((d): d is BadRequest => d.$type === BadRequest.$type);
    const fields = bad?.fieldViolations.map((v) => v.field) ?? [];
    for (const field of expected.fields) expect(fields).toContain(field);
  }
  return rich;
}

/** The TesseraError `fn` throws, as {kind, reason, message}; fails if it returns or throws anything else (unit tests of domain checks). */
export function refusal(fn: () => unknown): { kind: string; reason: string; message: string } {
  try {
    fn();
  } catch (error) {
    if (error instanceof TesseraError) return { kind: error.kind, reason: error.reason, message: error.message };
    throw error;
  }
  throw new Error("accepted, but should have been refused");
}

/**
 * How the gRPC layer reports what `promise` rejects with: the status code
 * (by name), the ErrorInfo reason, the message, and the BadRequest field
 * violations, through the same mapping the server applies
 * (toRichServerError). Fails if it resolves or rejects with anything but a TesseraError.
 */
export async function grpcRefusal(promise: Promise<unknown>): Promise<{ code: string; reason: string | undefined; message: string; violations: { field: string; description: string }[] }> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, "the call should have been refused").toBeInstanceOf(TesseraError);
  const rich = toRichServerError(error as TesseraError);
  const info = rich.extra.find((d): d is ErrorInfo => d.$type === ErrorInfo.$type);
  expect(info?.domain).toBe("tessera.identity.v1");
  const bad = rich.extra.find((d): d is BadRequest => d.$type === BadRequest.$type);
  return {
    code: Status[rich.code],
    reason: info?.reason,
    message: rich.details,
    violations: bad?.fieldViolations.map((v) => ({ field: v.field, description: v.description })) ?? [],
  };
}
