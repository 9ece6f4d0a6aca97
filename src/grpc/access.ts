// Each RPC's access, declared once in the proto (`option (tessera.identity.v1.access)`
// on every method, options.proto) and read here from the descriptor set at
// start. The auth middleware refuses a method without a declaration (deny by
// default), lets anonymous callers reach only PUBLIC (and
// anonymous_when_configured) methods, and hands the declaration to the
// handler in its context, so that the permission a handler checks is the one
// the contract names.
import { getOption, hasOption, type FileRegistry } from "@bufbuild/protobuf";
import { apiRegistry } from "./request-limits.ts";

const API_PACKAGE = "tessera.identity.v1";
const ACCESS_OPTION = `${API_PACKAGE}.access`;

export type AccessKind = "public" | "authenticated" | "permission" | "self-or-permission" | "self";

export interface DeclaredAccess {
  kind: AccessKind;
  /** The permission the call needs ("" when none). */
  permission: string;
  /** The identity.self.* permission of a user acting on itself ("" when none). */
  selfPermission: string;
  systemOnly: boolean;
  /** Anonymous callers reach the handler, which decides (open tenant signup). */
  anonymousWhenConfigured: boolean;
}

/** Option values of AccessKind (options.proto). */
const KINDS: Record<number, AccessKind> = { 1: "public", 2: "authenticated", 3: "permission", 4: "self-or-permission", 5: "self" };

/** Standard services on the port, which are not Tessera's contract: open to anyone. */
const STANDARD_PUBLIC = [
  "/grpc.health.v1.Health/Check",
  "/grpc.health.v1.Health/Watch",
  "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
  "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

const PUBLIC: DeclaredAccess = { kind: "public", permission: "", selfPermission: "", systemOnly: false, anonymousWhenConfigured: false };

/** Every method's declared access, by path ("/tessera.identity.v1.IssueService/IssueToken"). */
export function readAccessTable(registry: FileRegistry = apiRegistry()): ReadonlyMap<string, DeclaredAccess> {
  const option = registry.getExtension(ACCESS_OPTION);
  if (!option) throw new Error(`the descriptor set lacks the ${ACCESS_OPTION} option`);
  const table = new Map<string, DeclaredAccess>(STANDARD_PUBLIC.map((path) => [path, PUBLIC]));
  for (const file of registry.files) {
    if (file.proto.package !== API_PACKAGE) continue;
    for (const service of file.services) {
      for (const method of service.methods) {
        if (!hasOption(method, option)) continue; // undeclared: refused by the middleware, and a test fails
        const value = getOption(method, option) as { kind: number; permission: string; selfPermission: string; systemOnly: boolean; anonymousWhenConfigured: boolean };
        const kind = KINDS[value.kind];
        if (!kind) continue;
        table.set(`/${service.typeName}/${method.name}`, {
          kind,
          permission: value.permission,
          selfPermission: value.selfPermission,
          systemOnly: value.systemOnly,
          anonymousWhenConfigured: value.anonymousWhenConfigured,
        });
      }
    }
  }
  return table;
}

/** May a call without a token reach the handler? */
export function allowsAnonymous(access: DeclaredAccess): boolean {
  return access.kind === "public" || access.anonymousWhenConfigured;
}
