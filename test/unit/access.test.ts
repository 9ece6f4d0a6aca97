// Each RPC's access is declared once, in the proto; these tests hold the
// declarations complete, sound, and in agreement with the comments callers read.
import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { API_SERVICES } from "../../src/grpc/api.ts";
import { readAccessTable, type DeclaredAccess } from "../../src/grpc/access.ts";
import { IDENTITY_PERMISSIONS } from "../../src/permissions/index.ts";

const table = readAccessTable();
const PROTO_DIR = new URL("../../proto/tessera/identity/v1/", import.meta.url);

/** The "Required permission:" paragraph of each rpc's comment, by method path. */
function requiredPermissionLines(): Map<string, string> {
  const lines = new Map<string, string>();
  for (const file of readdirSync(PROTO_DIR).filter((f) => f.endsWith("_service.proto"))) {
    const source = readFileSync(new URL(file, PROTO_DIR), "utf8").split("\n");
    let service = "";
    source.forEach((line, i) => {
      const s = /^service (\w+)/.exec(line);
      if (s) service = s[1]!;
      const rpc = /^\s*rpc (\w+)\(/.exec(line);
      if (!rpc) return;
      const comment: string[] = [];
      for (let j = i - 1; j >= 0 && /^\s*\/\//.test(source[j]!); j--) comment.unshift(source[j]!.replace(/^\s*\/\/ ?/, ""));
      const text = comment.join("\n");
      const paragraph = /Required permission:([\s\S]*?)(?:\n\s*\n|\nError reasons:|$)/.exec(text)?.[1] ?? "";
      lines.set(`/tessera.identity.v1.${service}/${rpc[1]}`, paragraph.replace(/\s+/g, " ").trim());
    });
  }
  return lines;
}

const methodPaths = API_SERVICES.flatMap((service) => Object.values(service.methods as Record<string, { name: string }>).map((m) => `/${service.fullName}/${m.name}`));

describe("declared access", () => {
  it("is declared for every RPC of the contract", () => {
    expect(methodPaths.length).toBeGreaterThan(40);
    expect(methodPaths.filter((path) => !table.has(path))).toEqual([]);
  });

  it("names only permissions Tessera defines, with the fields each kind needs", () => {
    const problems: string[] = [];
    for (const path of methodPaths) {
      const a = table.get(path)!;
      const needs: Record<DeclaredAccess["kind"], [boolean, boolean]> = {
        public: [false, false],
        authenticated: [false, false],
        permission: [true, false],
        "self-or-permission": [true, true],
        self: [false, true],
      };
      const [permission, self] = needs[a.kind];
      if (permission !== (a.permission !== "")) problems.push(`${path}: permission ${permission ? "missing" : "not expected"}`);
      if (self !== (a.selfPermission !== "")) problems.push(`${path}: self_permission ${self ? "missing" : "not expected"}`);
      if (a.permission && !(a.permission in IDENTITY_PERMISSIONS)) problems.push(`${path}: unknown permission ${a.permission}`);
      if (a.selfPermission && !(a.selfPermission.startsWith("identity.self.") && a.selfPermission in IDENTITY_PERMISSIONS)) problems.push(`${path}: bad self permission ${a.selfPermission}`);
      if (a.systemOnly && a.kind !== "permission") problems.push(`${path}: system_only without a permission`);
    }
    expect(problems).toEqual([]);
  });

  it("agrees with every RPC's 'Required permission:' comment", () => {
    const comments = requiredPermissionLines();
    const problems: string[] = [];
    for (const path of methodPaths) {
      const a = table.get(path)!;
      const text = comments.get(path) ?? "";
      if (!text) {
        problems.push(`${path}: no "Required permission:" line`);
        continue;
      }
      const named = new Set(text.match(/identity\.[a-z_]+\.[a-z_*]+/g) ?? []);
      const declared = new Set([a.permission, a.selfPermission].filter(Boolean));
      for (const p of declared) if (!named.has(p)) problems.push(`${path}: comment does not name ${p}`);
      for (const p of named) if (!declared.has(p)) problems.push(`${path}: comment names ${p}, which is not declared`);
      if ((a.kind === "public") !== /^none \(public/.test(text)) problems.push(`${path}: public is ${a.kind === "public"} but the comment says "${text}"`);
      if (a.systemOnly !== /\(system tenant/.test(text)) problems.push(`${path}: system_only is ${a.systemOnly} but the comment says "${text}"`);
      if (a.anonymousWhenConfigured !== /or none when/.test(text)) problems.push(`${path}: anonymous_when_configured is ${a.anonymousWhenConfigured} but the comment says "${text}"`);
      if (a.kind === "authenticated" && !/any valid access token/.test(text)) problems.push(`${path}: authenticated, but the comment says "${text}"`);
    }
    expect(problems).toEqual([]);
  });

  it("refuses what it does not know: health and reflection are the only other methods", () => {
    const others = [...table.keys()].filter((path) => !methodPaths.includes(path));
    expect(others.sort()).toEqual([
      "/grpc.health.v1.Health/Check",
      "/grpc.health.v1.Health/Watch",
      "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
      "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ]);
  });
});
