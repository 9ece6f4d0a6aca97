// Bounded work for every request, before anything else looks at it. Every
// string and repeated field of every request message declares its limits in
// the proto (`(tessera.identity.v1.limits)`, options.proto); they are read
// from the descriptor set once at start. A request is checked in two passes
// inside its deserializer, so an oversized one is never fully decoded:
//  1. on the wire: each field's encoded size and each repeated field's entry
//     count, stopping at the first excess (an attacker's 340 000-entry list
//     costs 101 tags, not 340 000 strings);
//  2. after decoding: each string's length in characters, as sent and
//     NFKC-normalised and case-folded (U+FDFA expands 18-fold).
// A refused request becomes a marker that the first middleware turns into
// INVALID_ARGUMENT with at most MAX_VIOLATIONS field violations.
import { readFileSync } from "node:fs";
import { createFileRegistry, fromBinary, getOption, hasOption, ScalarType, type DescExtension, type DescField, type DescMessage, type FileRegistry } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import type { ServerMiddleware } from "nice-grpc";
import { Violations } from "../errors.ts";

export const DESCRIPTOR_SET = new URL("../../gen/descriptor-set.binpb", import.meta.url);

/** The API's descriptors (gen/descriptor-set.binpb). The server parses them once at start for the request limits and the access table, and keeps neither. */
export function apiRegistry(): FileRegistry {
  return createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(DESCRIPTOR_SET)));
}
const API_PACKAGE = "tessera.identity.v1";
const LIMITS_OPTION = `${API_PACKAGE}.limits`;

/** A field's encoded-size allowance beyond its content: tag and length prefix. */
const FRAMING = 11;
/** Fields that are not declared in the schema (newer clients) a message may carry. */
const UNKNOWN_FIELDS_ALLOWED = 16;
/** Singular fields sent more than this many times (protobuf merges them) are refused. */
const SINGULAR_REPEATS_ALLOWED = 2;

interface FieldRule {
  number: number;
  /** Proto field name, as field violations report it. */
  name: string;
  /** The ts-proto property holding the value (or the oneof union's property). */
  property: string;
  /** For oneof members: the union property; the value is `{ $case: property, value }`. */
  oneof?: string;
  repeated: boolean;
  kind: "string" | "message" | "mask" | "opaque";
  maxChars: number;
  maxItems: number;
  /** Largest allowed encoded size of one entry's content. */
  maxBytes: number;
  message?: MessageRule;
}

interface MessageRule {
  typeName: string;
  fields: FieldRule[];
  byNumber: Map<number, FieldRule>;
  maxBytes: number;
  maxTags: number;
}

const camel = (name: string) => name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/** Fixed-size well-known types, decoded by ts-proto into plain values (Date, number...). */
const OPAQUE_WKT_BYTES: Record<string, number> = {
  "google.protobuf.Timestamp": 32,
  "google.protobuf.Duration": 32,
};

function compileMessage(desc: DescMessage, limits: DescExtension, cache: Map<string, MessageRule>): MessageRule {
  const cached = cache.get(desc.typeName);
  if (cached) return cached;
  const rule: MessageRule = { typeName: desc.typeName, fields: [], byNumber: new Map(), maxBytes: 0, maxTags: UNKNOWN_FIELDS_ALLOWED };
  cache.set(desc.typeName, rule);
  for (const field of desc.fields) {
    const compiled = compileField(field, limits, cache);
    rule.fields.push(compiled);
    rule.byNumber.set(compiled.number, compiled);
    const entries = compiled.repeated ? compiled.maxItems : 1;
    rule.maxBytes += entries * (compiled.maxBytes + FRAMING);
    rule.maxTags += compiled.repeated ? compiled.maxItems : SINGULAR_REPEATS_ALLOWED;
  }
  return rule;
}

function compileField(field: DescField, limits: DescExtension, cache: Map<string, MessageRule>): FieldRule {
  const declared = hasOption(field, limits) ? (getOption(field, limits) as { maxChars: number; maxItems: number }) : undefined;
  const where = `${field.parent.typeName}.${field.name}`;
  const base = {
    number: field.number,
    name: field.name,
    property: camel(field.name),
    oneof: field.oneof ? camel(field.oneof.name) : undefined,
    repeated: field.fieldKind === "list",
    maxChars: declared?.maxChars ?? 0,
    maxItems: declared?.maxItems ?? 0,
  };
  if (base.repeated && !base.maxItems) throw new Error(`${where} is repeated but declares no (limits).max_items`);
  const scalar = field.fieldKind === "scalar" ? field.scalar : field.fieldKind === "list" && field.listKind === "scalar" ? field.scalar : undefined;
  if (scalar === ScalarType.STRING) {
    if (!base.maxChars) throw new Error(`${where} declares no (limits).max_chars`);
    // A code point is at most 4 bytes of UTF-8.
    return { ...base, kind: "string", maxBytes: base.maxChars * 4 };
  }
  if (scalar === ScalarType.BYTES) throw new Error(`${where}: bytes fields have no limit rule yet`);
  const message = field.fieldKind === "message" ? field.message : field.fieldKind === "list" && field.listKind === "message" ? field.message : undefined;
  if (message?.typeName === "google.protobuf.FieldMask") {
    if (!base.maxChars || !base.maxItems) throw new Error(`${where} (a FieldMask) declares no (limits) max_chars and max_items`);
    // ts-proto decodes a FieldMask into its string[] of paths.
    return { ...base, kind: "mask", maxBytes: base.maxItems * (base.maxChars * 4 + FRAMING) };
  }
  if (message && message.typeName in OPAQUE_WKT_BYTES) return { ...base, kind: "opaque", maxBytes: OPAQUE_WKT_BYTES[message.typeName]! };
  if (message) {
    const rule = compileMessage(message, limits, cache);
    return { ...base, kind: "message", message: rule, maxBytes: rule.maxBytes };
  }
  // Numbers, booleans and enums: a varint, or a packed run of them.
  return { ...base, kind: "opaque", maxBytes: 10 * Math.max(1, base.maxItems) };
}

const path = (prefix: string, name: string) => (prefix ? `${prefix}.${name}` : name);

/** Pass 1: sizes and counts on the wire. Returns false (with a violation) at the first excess. */
function scanWire(rule: MessageRule, bytes: Uint8Array, prefix: string, v: Violations, depth = 0): boolean {
  if (depth > 16) return !v.add(prefix || "request", "is nested too deeply");
  const reader = new BinaryReader(bytes);
  const counts = new Map<number, number>();
  let tags = 0;
  try {
    while (reader.pos < reader.len) {
      if (++tags > rule.maxTags) return !v.add(prefix || "request", "has too many fields");
      const [number, wireType] = reader.tag();
      const field = rule.byNumber.get(number);
      if (!field) {
        reader.skip(wireType, number);
        continue;
      }
      const seen = (counts.get(number) ?? 0) + 1;
      counts.set(number, seen);
      const at = path(prefix, field.name);
      if (field.repeated && seen > field.maxItems) return !v.add(at, `must have at most ${field.maxItems} entries`);
      if (!field.repeated && seen > SINGULAR_REPEATS_ALLOWED) return !v.add(at, "is sent more than once");
      if (wireType !== WireType.LengthDelimited) {
        reader.skip(wireType, number);
        continue;
      }
      const length = reader.uint32();
      const end = reader.pos + length;
      if (end > reader.len) return !v.add(prefix || "request", "is not a valid protobuf message");
      // A nested message is scanned even when too large, to name the field inside it that is.
      if (field.kind === "message" && !scanWire(field.message!, bytes.subarray(reader.pos, end), field.repeated ? `${at}[${seen - 1}]` : at, v, depth + 1)) {
        return false;
      }
      if (length > field.maxBytes) {
        return !v.add(at, field.kind === "string" ? `must be at most ${field.maxChars} characters` : "is too large");
      }
      reader.pos = end;
    }
  } catch {
    return !v.add(prefix || "request", "is not a valid protobuf message");
  }
  return true;
}

const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

/** Code points of `value`, or `max + 1` once it is known to be over `max` (never counts past that). */
function exceeds(value: string, max: number): boolean {
  if (value.length <= max) return false;
  if (value.length > 2 * max) return true;
  let count = 0;
  for (const _ of value) if (++count > max) return true;
  return false;
}

/** Over the limit as sent, or once normalised and case-folded as identifiers are (foldKey). */
export function overCharLimit(value: string, max: number): boolean {
  if (exceeds(value, max)) return true;
  if (PRINTABLE_ASCII.test(value)) return false;
  return exceeds(value.normalize("NFKC").toLowerCase(), max);
}

function checkStrings(values: readonly unknown[], field: FieldRule, at: string, v: Violations, indexed: boolean): void {
  values.forEach((value, i) => {
    if (v.full) return;
    if (typeof value === "string" && overCharLimit(value, field.maxChars)) v.add(indexed ? `${at}[${i}]` : at, `must be at most ${field.maxChars} characters`);
  });
}

/** Pass 2: every decoded string's length in characters, raw and folded. */
function checkDecoded(rule: MessageRule, message: Record<string, unknown>, prefix: string, v: Violations): void {
  for (const field of rule.fields) {
    if (v.full) return;
    let value = message[field.oneof ?? field.property];
    if (field.oneof) {
      const union = value as { $case?: string; value?: unknown } | undefined;
      value = union?.$case === field.property ? union.value : undefined;
    }
    if (value === undefined || value === null) continue;
    const at = path(prefix, field.name);
    const list = Array.isArray(value) ? value : undefined;
    if ((field.repeated || field.kind === "mask") && list && list.length > field.maxItems) {
      v.add(at, `must have at most ${field.maxItems} entries`);
      continue;
    }
    switch (field.kind) {
      case "string":
        checkStrings(list ?? [value], field, at, v, field.repeated);
        break;
      case "mask":
        checkStrings(list ?? [], field, at, v, true);
        break;
      case "message":
        if (list) list.forEach((entry, i) => checkDecoded(field.message!, entry as Record<string, unknown>, `${at}[${i}]`, v));
        else checkDecoded(field.message!, value as Record<string, unknown>, at, v);
        break;
      default:
        break;
    }
  }
}

const REJECTED = Symbol("tessera.rejectedRequest");
type Rejected = { [REJECTED]: Violations };

function isRejected(request: unknown): request is Rejected {
  return typeof request === "object" && request !== null && REJECTED in request;
}

/** The declared limits of every request message of the API, compiled once. */
export class RequestLimits {
  readonly #byType = new Map<string, MessageRule>();
  /** Request rules by method path, e.g. "/tessera.identity.v1.IssueService/IssueToken". */
  readonly #byMethod = new Map<string, MessageRule>();

  constructor(registry: FileRegistry = apiRegistry()) {
    const limits = registry.getExtension(LIMITS_OPTION);
    if (!limits) throw new Error(`the descriptor set lacks the ${LIMITS_OPTION} option`);
    // Only Tessera's own API declares limits; health and reflection (also in the set) are not guarded.
    for (const file of registry.files) {
      if (file.proto.package !== API_PACKAGE) continue;
      for (const service of file.services) {
        for (const method of service.methods) this.#byMethod.set(`/${service.typeName}/${method.name}`, compileMessage(method.input, limits, this.#byType));
      }
    }
  }

  /** Type names of the compiled request messages (and the messages they contain). */
  get messageTypes(): string[] {
    return [...this.#byType.keys()];
  }

  /** Checks an already decoded message (e.g. an AMQP registration parsed from JSON); violations go to `v`. */
  checkMessage(typeName: string, message: object, v: Violations): void {
    const rule = this.#rule(typeName);
    checkDecoded(rule, message as Record<string, unknown>, "", v);
  }

  /** Checks the encoded request before and after decoding; a refused request decodes to a marker the middleware rejects. */
  #guardedDecode<T>(rule: MessageRule, decode: (bytes: Uint8Array) => T): (bytes: Uint8Array) => T {
    return (bytes) => {
      const v = new Violations();
      if (!scanWire(rule, bytes, "", v)) return { [REJECTED]: v } as T;
      let message: T;
      try {
        message = decode(bytes);
      } catch {
        return { [REJECTED]: v.add("request", "is not a valid protobuf message") } as T;
      }
      checkDecoded(rule, message as Record<string, unknown>, "", v);
      return (v.empty ? message : { [REJECTED]: v }) as T;
    };
  }

  /** A ts-proto service definition whose request decoders check the limits. */
  guard<D extends { fullName: string; methods: Record<string, { name: string; requestType: { decode(bytes: Uint8Array): unknown } }> }>(definition: D): D {
    const methods: Record<string, unknown> = {};
    for (const [key, method] of Object.entries(definition.methods)) {
      const path = `/${definition.fullName}/${method.name}`;
      const rule = this.#byMethod.get(path);
      if (!rule) throw new Error(`no request limits for ${path}`);
      const { requestType } = method;
      methods[key] = { ...method, requestType: { ...requestType, decode: this.#guardedDecode(rule, (b) => requestType.decode(b)) } };
    }
    return { ...definition, methods };
  }

  #rule(typeName: string): MessageRule {
    const rule = this.#byType.get(typeName);
    if (!rule) throw new Error(`no request limits for ${typeName}`);
    return rule;
  }
}

/** First middleware after error mapping: a request refused by its decoder ends here, before any other work. */
export function requestLimitsMiddleware(): ServerMiddleware {
  return async function* refuseOverLimit(call, context) {
    if (isRejected(call.request)) throw call.request[REJECTED].toError();
    return yield* call.next(call.request, context);
  };
}
