// The declared request limits, checked the way an attacker would probe them:
// every string field of every request of the API (nested and oneof members
// included) is sent one step over its limit, and every repeated field one
// entry over its count, through the real decoder the server uses.
import { readFileSync } from "node:fs";
import { create, createFileRegistry, fromBinary, getExtension, hasExtension, toBinary, type DescField, type DescMessage, type Message } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { API_SERVICES } from "../../src/grpc/api.ts";
import { DESCRIPTOR_SET, overCharLimit, RequestLimits, requestLimitsMiddleware } from "../../src/grpc/request-limits.ts";
import { MAX_VIOLATIONS, TesseraError, type FieldViolation } from "../../src/errors.ts";

const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(DESCRIPTOR_SET)));
const limitsOption = registry.getExtension("tessera.identity.v1.limits")!;
const limits = new RequestLimits();

interface Probe {
  method: string;
  /** Field path as violations report it. */
  path: string;
  /** Builds the request with the field set to `value`. */
  build(value: unknown): Message;
  field: DescField;
}

function optionOf(field: DescField): { maxChars: number; maxItems: number } {
  const options = field.proto.options;
  if (!options || !hasExtension(options, limitsOption)) return { maxChars: 0, maxItems: 0 };
  return getExtension(options, limitsOption) as { maxChars: number; maxItems: number };
}

/** Every string/repeated field reachable from each request, with a builder that sets it. */
function probes(): Probe[] {
  const out: Probe[] = [];
  const walk = (method: string, desc: DescMessage, prefix: string, wrap: (inner: (m: Message) => void) => Message, depth: number) => {
    for (const field of desc.fields) {
      const path = prefix ? `${prefix}.${field.name}` : field.name;
      const set = (value: unknown) => (m: Message) => {
        const target = m as unknown as Record<string, unknown>;
        if (field.oneof) target[field.oneof.localName] = { case: field.localName, value };
        else target[field.localName] = value;
      };
      const isMessage = field.fieldKind === "message" || (field.fieldKind === "list" && field.listKind === "message");
      const isMask = field.fieldKind === "message" && field.message.typeName === "google.protobuf.FieldMask";
      const isString = (field.fieldKind === "scalar" || (field.fieldKind === "list" && field.listKind === "scalar")) && field.scalar === 9;
      if (isString || field.fieldKind === "list" || isMask) out.push({ method, path, field, build: (value) => wrap(set(value)) });
      if (isMessage && !isMask && depth < 4 && !field.message!.typeName.startsWith("google.protobuf.")) {
        const sub = field.message!;
        walk(method, sub, field.fieldKind === "list" ? `${path}[0]` : path, (inner) => {
          const child = create(sub);
          inner(child);
          return wrap(set(field.fieldKind === "list" ? [child] : child));
        }, depth + 1);
      }
    }
  };
  for (const definition of API_SERVICES) {
    const service = registry.getService(definition.fullName)!;
    for (const method of service.methods) {
      const input = method.input;
      walk(`/${service.typeName}/${method.name}`, input, "", (inner) => {
        const m = create(input);
        inner(m);
        return m;
      }, 0);
    }
  }
  return out;
}

function decoderOf(method: string): (bytes: Uint8Array) => unknown {
  const [, serviceName, methodName] = method.split("/");
  const definition = API_SERVICES.find((d) => d.fullName === serviceName)!;
  const guarded = limits.guard(definition);
  const entry = Object.values(guarded.methods).find((m) => m.name === methodName)!;
  return (bytes) => entry.requestType.decode(bytes);
}

/** Runs the decoded request through the middleware as the server does; returns its field violations (none when accepted). */
async function violationsOf(method: string, message: Message): Promise<FieldViolation[]> {
  const descMessage = registry.getMessage(message.$typeName)!;
  const request = decoderOf(method)(toBinary(descMessage, message));
  const middleware = requestLimitsMiddleware();
  try {
    const run = middleware({ request, method: { path: method } as never, requestStream: false, responseStream: false, next: async function* () { return {}; } } as never, {} as never);
    await (run as AsyncGenerator).next();
    return [];
  } catch (error) {
    expect(error).toBeInstanceOf(TesseraError);
    expect((error as TesseraError).kind).toBe("INVALID_ARGUMENT");
    return [...(error as TesseraError).fieldViolations];
  }
}

const all = probes();

describe("request limits", () => {
  it("are declared on every string and repeated field of every request message", () => {
    const missing = all.filter((p) => {
      const o = optionOf(p.field);
      return p.field.fieldKind === "list" ? !o.maxItems : !o.maxChars;
    });
    expect(missing.map((p) => `${p.method} ${p.path}`)).toEqual([]);
    expect(all.length).toBeGreaterThan(80);
  });

  it("refuse every string one character over its limit, counted after NFKC folding (U+FDFA expands 18-fold)", async () => {
    const stringProbes = all.filter((p) => p.field.scalar === 9 || p.field.fieldKind === "message");
    for (const probe of stringProbes) {
      const { maxChars, maxItems } = optionOf(probe.field);
      const folded = "\uFDFA".repeat(Math.max(1, Math.floor(maxChars / 2)));
      const value = probe.field.fieldKind === "list" ? [folded] : probe.field.fieldKind === "message" ? create(registry.getMessage("google.protobuf.FieldMask")!, { paths: [folded] }) : folded;
      const expected = probe.field.fieldKind === "list" ? `${probe.path}[0]` : probe.field.fieldKind === "message" ? `${probe.path}[0]` : probe.path;
      expect(await violationsOf(probe.method, probe.build(value)), `${probe.method} ${probe.path} (max ${maxChars}, ${maxItems})`).toEqual([
        { field: expected, description: `must be at most ${maxChars} characters` },
      ]);
      // Exactly at the limit (ASCII) is accepted as far as limits go.
      const atLimit = "a".repeat(maxChars);
      const ok = probe.field.fieldKind === "list" ? [atLimit] : probe.field.fieldKind === "message" ? create(registry.getMessage("google.protobuf.FieldMask")!, { paths: [atLimit] }) : atLimit;
      expect(await violationsOf(probe.method, probe.build(ok)), `${probe.method} ${probe.path} at its limit`).toEqual([]);
    }
  });

  it("refuse a string far over its limit on the wire, before decoding it", async () => {
    const probe = all.find((p) => p.method.endsWith("/IssueToken") && p.path === "password.tenant")!;
    expect(await violationsOf(probe.method, probe.build("\uFDFA".repeat(300_000)))).toEqual([{ field: "password.tenant", description: "must be at most 63 characters" }]);
  });

  it("refuse a repeated field one entry over its count with one violation, not one per entry", async () => {
    for (const probe of all.filter((p) => p.field.fieldKind === "list")) {
      const { maxItems } = optionOf(probe.field);
      const entry = probe.field.fieldKind === "list" && probe.field.listKind === "message" ? create(probe.field.message) : "x";
      const violations = await violationsOf(probe.method, probe.build(Array.from({ length: maxItems + 1 }, () => entry)));
      expect(violations, `${probe.method} ${probe.path}`).toEqual([{ field: probe.path, description: `must have at most ${maxItems} entries` }]);
    }
  });

  it("stop at the first excess of a huge list (340 000 entries cost one violation)", async () => {
    const probe = all.find((p) => p.method.endsWith("/IssueToken") && p.path === "requested_permissions")!;
    const violations = await violationsOf(probe.method, probe.build(Array.from({ length: 340_000 }, () => "x")));
    expect(violations).toEqual([{ field: "requested_permissions", description: "must have at most 100 entries" }]);
  });

  it(`report at most ${MAX_VIOLATIONS} violations however many fields are over`, async () => {
    const probe = all.find((p) => p.method.endsWith("/IssueToken") && p.path === "requested_permissions")!;
    const violations = await violationsOf(probe.method, probe.build(Array.from({ length: 100 }, () => "\uFDFA".repeat(100))));
    expect(violations).toHaveLength(MAX_VIOLATIONS);
  });

  it("refuse bytes that are not a protobuf message", async () => {
    const decode = decoderOf("/tessera.identity.v1.IssueService/IssueToken");
    const request = decode(Uint8Array.from([0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01]));
    await expect(async () => {
      const run = requestLimitsMiddleware()({ request, next: async function* () { return {}; } } as never, {} as never);
      await (run as AsyncGenerator).next();
    }).rejects.toThrow(/not a valid protobuf message/);
  });

  it("count characters as code points, raw and folded", () => {
    expect(overCharLimit("a".repeat(10), 10)).toBe(false);
    expect(overCharLimit("a".repeat(11), 10)).toBe(true);
    expect(overCharLimit("😀".repeat(10), 10)).toBe(false); // 20 UTF-16 units, 10 code points
    expect(overCharLimit("😀".repeat(11), 10)).toBe(true);
    expect(overCharLimit("\uFDFA", 17)).toBe(true);
    expect(overCharLimit("\uFDFA", 18)).toBe(false);
    expect(overCharLimit("İ".repeat(10), 10)).toBe(true); // lower-cases to i + combining dot
  });
});
