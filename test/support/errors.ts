// Assertions on gRPC failures: status code, ErrorInfo reason and field violations.
import { Status } from "nice-grpc";
import { BadRequest, ErrorInfo, RichClientError } from "nice-grpc-error-details";
import { expect } from "vitest";
import { TesseraError } from "../../src/errors.ts";

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
