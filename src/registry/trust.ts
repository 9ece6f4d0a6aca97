// Which registries this server trusts for service assertions (the
// allow-list), read from the environment at start:
//
//   TESSERA_REGISTRY_SELF   names under which assertions are resolved against
//                           this server's own registry (its database; no
//                           network), e.g. https://id.example.com/registry.json
//   TESSERA_REGISTRIES      a JSON array (or @/path/to/file.json) of outside
//                           registries: {"registry": <name>, "authority_keys":
//                           [<JWK or SPKI PEM>...], "tenant": <tenant name>,
//                           "capabilities"?: {<capability>: <group name>},
//                           "source_tenant"?: <the registry's tenant name>,
//                           "document_file"?: <path>, "document_env"?: <var>}
//
// An outside registry's services get permissions only through the explicit
// `capabilities` map (capability name → a group of `tenant`): a registry is
// shared by many publishers (a Tessera's holds every tenant's regions), so
// nothing may gain a group's grants by merely naming a capability after it.
//
// A name is an exact https:// URL (path and query included) for an HTTPS
// registry, `local:<name>` for a local store (its document from a file or an
// environment variable), and anything else a DNS host.
import { readFileSync } from "node:fs";
import { HOSTNAME } from "../shared/validation.ts";
import { readPublicKey, type VerifyKey } from "./jws.ts";

export type RegistryKind = "self" | "https" | "dns" | "local";

export interface TrustedRegistry {
  /** Exactly as assertions name it in `regionmeta.registry`. */
  name: string;
  kind: RegistryKind;
  /** Keys its records must be signed by (none for self: the records are Tessera's own rows). */
  authorities: VerifyKey[];
  /** The tenant (by name) whose principals its assertions become; its own region's tenant for self. */
  tenant: string;
  /** Capability name → group name in `tenant`: the only way its principals get permissions. */
  capabilities: Record<string, string>;
  /** Accept only regions whose record names this tenant (a Tessera registry's records carry `tenant`). */
  sourceTenant?: string;
  /** A local store's document: read again on each refetch. */
  readDocument?: () => string;
}

export function registryKind(name: string): Exclude<RegistryKind, "self"> | undefined {
  if (name.startsWith("https://")) return "https";
  if (name.startsWith("local:")) return /^local:[A-Za-z0-9._-]{1,100}$/.test(name) ? "local" : undefined;
  const host = name.toLowerCase();
  return HOSTNAME.test(host) && !host.includes(":") && host === name ? "dns" : undefined;
}

/** Reads the allow-list; throws an Error naming what is wrong (config.ts adds the variable). */
export function parseTrustedRegistries(raw: string | undefined, env: Record<string, string | undefined>): TrustedRegistry[] {
  if (!raw?.trim()) return [];
  const text = raw.trim().startsWith("@") ? readFileSync(raw.trim().slice(1), "utf8") : raw;
  let entries: unknown;
  try {
    entries = JSON.parse(text);
  } catch {
    throw new Error("must be a JSON array of registries (or @/path/to/file.json)");
  }
  if (!Array.isArray(entries)) throw new Error("must be a JSON array of registries");
  const names = new Set<string>();
  return entries.map((entry: unknown, i) => {
    const at = `entry ${i}`;
    if (!entry || typeof entry !== "object") throw new Error(`${at} must be an object`);
    const e = entry as Record<string, unknown>;
    const name = e.registry;
    if (typeof name !== "string") throw new Error(`${at} needs "registry" (an https:// URL, a DNS host or local:<name>)`);
    const kind = registryKind(name);
    if (!kind) throw new Error(`${at}: "${name}" is not an https:// URL, a lowercase DNS host or local:<name>`);
    if (kind === "https") {
      try {
        const url = new URL(name);
        if (url.username || url.password || url.hash) throw new Error();
      } catch {
        throw new Error(`${at}: "${name}" is not a valid https:// URL without credentials or fragment`);
      }
    }
    if (names.has(name)) throw new Error(`${at}: "${name}" is listed twice`);
    names.add(name);
    const keys = Array.isArray(e.authority_keys) ? e.authority_keys : e.authority_key !== undefined ? [e.authority_key] : [];
    if (keys.length === 0) throw new Error(`${at} needs "authority_keys": the registry authority's public key(s), JWK or SPKI PEM`);
    const authorities = keys.map((k: unknown, j) => {
      const read = typeof k === "string" || (k && typeof k === "object") ? readPublicKey(k as string | Record<string, unknown>) : { problem: "must be a JWK object or a PEM string" };
      if ("problem" in read) throw new Error(`${at} authority key ${j} ${read.problem}`);
      return read.key;
    });
    if (typeof e.tenant !== "string" || !e.tenant) throw new Error(`${at} needs "tenant": the tenant (name) its services belong to`);
    const capabilities: Record<string, string> = {};
    if (e.capabilities !== undefined) {
      if (!e.capabilities || typeof e.capabilities !== "object" || Array.isArray(e.capabilities)) throw new Error(`${at}: "capabilities" must map capability names to group names`);
      for (const [capability, group] of Object.entries(e.capabilities as Record<string, unknown>)) {
        if (!/^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/.test(capability) || typeof group !== "string" || !group || group.length > 100) {
          throw new Error(`${at}: "capabilities" maps "${capability.slice(0, 64)}" to something that is not a group name`);
        }
        capabilities[capability] = group;
      }
    }
    if (e.source_tenant !== undefined && (typeof e.source_tenant !== "string" || !e.source_tenant)) throw new Error(`${at}: "source_tenant" must be a tenant name`);
    let readDocument: (() => string) | undefined;
    if (kind === "local") {
      if (typeof e.document_file === "string") {
        const path = e.document_file;
        readFileSync(path, "utf8"); // fails at start when unreadable
        readDocument = () => readFileSync(path, "utf8");
      } else if (typeof e.document_env === "string") {
        const value = env[e.document_env];
        if (!value) throw new Error(`${at}: environment variable ${e.document_env} (its document) is not set`);
        readDocument = () => value;
      } else {
        throw new Error(`${at}: a local store needs "document_file" or "document_env"`);
      }
    }
    return { name, kind, authorities, tenant: e.tenant, capabilities, ...(e.source_tenant ? { sourceTenant: e.source_tenant as string } : {}), readDocument };
  });
}

/** TESSERA_REGISTRY_SELF: comma-separated names of this server's own registry. */
export function parseSelfNames(raw: string | undefined): string[] {
  const names = (raw ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  for (const name of names) if (!registryKind(name)) throw new Error(`"${name}" is not an https:// URL, a lowercase DNS host or local:<name>`);
  return names;
}
