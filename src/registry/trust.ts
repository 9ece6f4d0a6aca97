// Which registries this server trusts for service assertions (the
// allow-list), read from the environment at start:
//
//   TESSERA_REGISTRY_SELF   names under which assertions are resolved against
//                           this server's own registry (its database; no
//                           network), e.g. https://id.example.com/registry.json
//   TESSERA_REGISTRIES      a JSON array (or @/path/to/file.json) of outside
//                           registries: {"registry": <name>, "authority_keys":
//                           [<JWK or SPKI PEM>...], "tenant": <tenant name>,
//                           "document_file"?: <path>, "document_env"?: <var>}
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
    return { name, kind, authorities, tenant: e.tenant, readDocument };
  });
}

/** TESSERA_REGISTRY_SELF: comma-separated names of this server's own registry. */
export function parseSelfNames(raw: string | undefined): string[] {
  const names = (raw ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  for (const name of names) if (!registryKind(name)) throw new Error(`"${name}" is not an https:// URL, a lowercase DNS host or local:<name>`);
  return names;
}
