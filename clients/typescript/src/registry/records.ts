// The registry's published records (DESIGN "Region System records"): a region
// record and a capability record, each a JWT signed by the registry's
// authority key, in the same form on every registry kind: the HTTPS and
// local-store document `{"regions": [jwt…], "capabilities": [jwt…]}` and DNS
// TXT records (region at `<host>`, capability at
// `<capability>.capability.<region id>.<host>`, split into 255-byte strings).
import type { KeyObject } from "node:crypto";
import { parseJws, readPublicKey, signatureValid, signJws, type VerifyKey } from "./jws.ts";

export const REGION_RECORD_TYP = "region+jwt";
export const CAPABILITY_RECORD_TYP = "capability+jwt";
/** Records are small; anything larger is not one. */
export const MAX_RECORD_LENGTH = 4096;

export interface RegionRecord {
  active: boolean;
  id: string;
  alias: string;
  /** The tenant (name) the region belongs to, in a Tessera registry. */
  tenant?: string;
  /** A user's own region (the seed's user flow): outside verifiers do not take it for a service. */
  user?: boolean;
  /** NumericDate seconds. */
  created: number;
  updated: number;
  /** When the authority signed it. */
  iat: number;
}

export interface CapabilityRecord {
  active: boolean;
  region_id: string;
  capability: string;
  /** The public JWK (kty, crv, x[, y], kid, alg). */
  publickey: Record<string, string>;
  created: number;
  updated: number;
  /** When the capability stops verifying. */
  exp: number;
  iat: number;
}

export interface RegistryDocument {
  regions: string[];
  capabilities: string[];
}

const seconds = (date: Date) => Math.floor(date.getTime() / 1000);

export function regionRecord(r: { id: string; alias: string; active: boolean; createdAt: Date; updatedAt: Date; tenantName: string; user: boolean }, now: Date): RegionRecord {
  return {
    active: r.active,
    id: r.id,
    alias: r.alias,
    tenant: r.tenantName,
    ...(r.user ? { user: true } : {}),
    created: seconds(r.createdAt),
    updated: seconds(r.updatedAt),
    iat: seconds(now),
  };
}

export function capabilityRecord(
  c: { regionId: string; name: string; publicJwk: Record<string, string>; active: boolean; createdAt: Date; updatedAt: Date; expiresAt: Date },
  now: Date,
): CapabilityRecord {
  return {
    active: c.active,
    region_id: c.regionId,
    capability: c.name,
    publickey: c.publicJwk,
    created: seconds(c.createdAt),
    updated: seconds(c.updatedAt),
    exp: seconds(c.expiresAt),
    iat: seconds(now),
  };
}

export function signRecord(typ: string, record: object, authority: { kid: string; privateKey: KeyObject }): string {
  return signJws({ alg: "EdDSA", kid: authority.kid, typ }, record, authority.privateKey);
}

/** Why a record was refused (the resolver turns it into an error). */
export class RecordError extends Error {
  override readonly name = "RecordError";
}

/**
 * The claims of a record after its signature checked out against one of the
 * pinned authority keys; throws RecordError otherwise. Nothing of an
 * unverified record is used but the routing fields `peekRecord` returns.
 */
export function verifyRecord<T>(jwt: string, typ: string, authorities: readonly VerifyKey[]): T {
  const parsed = parseJws(jwt, MAX_RECORD_LENGTH, "registry record", (m) => new RecordError(m));
  if (parsed.header.typ !== typ) throw new RecordError(`registry record is not a ${typ}`);
  if (!authorities.some((a) => signatureValid(parsed, a))) throw new RecordError("registry record is not signed by the registry's authority");
  return parsed.payload as T;
}

/** The unverified id fields of a record, to find the one to verify among many (a document, a TXT RRset). */
export function peekRecord(jwt: string): { id?: unknown; region_id?: unknown; capability?: unknown } | undefined {
  try {
    return parseJws(jwt, MAX_RECORD_LENGTH, "registry record", (m) => new RecordError(m)).payload;
  } catch {
    return undefined;
  }
}

/** Checks a verified capability record's shape; returns its key. */
export function capabilityKey(record: CapabilityRecord): VerifyKey {
  if (typeof record.exp !== "number" || typeof record.active !== "boolean" || !record.publickey || typeof record.publickey !== "object") {
    throw new RecordError("capability record is malformed");
  }
  const read = readPublicKey(record.publickey);
  if ("problem" in read) throw new RecordError(`capability record's public key ${read.problem}`);
  return read.key;
}

// ---- DNS ------------------------------------------------------------------

/** TXT character-strings are at most 255 bytes. Records are ASCII (base64url and dots). */
export function splitTxt(value: string): string[] {
  const parts: string[] = [];
  for (let i = 0; i < value.length; i += 255) parts.push(value.slice(i, i + 255));
  return parts;
}

export const regionDnsName = (host: string) => host;
export const capabilityDnsName = (host: string, regionId: string, capability: string) => `${capability}.capability.${regionId}.${host}`;

export interface TxtRecord {
  name: string;
  values: string[];
  ttl: number;
}

export function dnsRecords(host: string, document: { regions: { id: string; jwt: string }[]; capabilities: { regionId: string; name: string; jwt: string }[] }, ttl: number): TxtRecord[] {
  return [
    ...document.regions.map((r) => ({ name: regionDnsName(host), values: splitTxt(r.jwt), ttl })),
    ...document.capabilities.map((c) => ({ name: capabilityDnsName(host, c.regionId, c.name), values: splitTxt(c.jwt), ttl })),
  ];
}

/** The records in zone-file syntax (RFC 1035 master file), owner names fully qualified. */
export function zoneFile(host: string, records: TxtRecord[], ttl: number): string {
  const lines = [`$ORIGIN ${host}.`, `$TTL ${ttl}`];
  for (const record of records) lines.push(`${record.name}. ${record.ttl} IN TXT ${record.values.map((v) => `"${v}"`).join(" ")}`);
  return `${lines.join("\n")}\n`;
}
