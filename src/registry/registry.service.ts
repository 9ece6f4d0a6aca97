// The registry Tessera keeps (Region System): regions and capabilities per
// tenant, the authority-signed document served at /registry.json, its DNS
// zone, and the lookups Tessera's own verification makes without a network
// hop. No gRPC here.
import { createHash, randomUUID } from "node:crypto";
import type { EntityManager } from "@mikro-orm/core";
import { alreadyExists, notFound, permissionDenied, Violations } from "../errors.ts";
import { isUniqueViolation } from "../db/errors.ts";
import { entityManagerOf, type EntityManagerSource } from "../db/entity-manager-source.ts";
import { refKey } from "../db/refs.ts";
import { recordRevocation } from "../events/index.ts";
import { anyCovers, GroupEntity, GroupMemberEntity } from "../permissions/index.ts";
import { nextPageToken, readPage, type PageRequest } from "../shared/pagination.ts";
import { checkMaxLength, HOSTNAME, readUpdateMask, UUID } from "../shared/validation.ts";
import { AuthorityKeys } from "./authority.ts";
import { readPublicKey, type VerifyKey } from "./jws.ts";
import {
  CAPABILITY_RECORD_TYP,
  capabilityRecord,
  dnsRecords,
  REGION_RECORD_TYP,
  regionRecord,
  signRecord,
  zoneFile,
  type RegistryDocument,
  type TxtRecord,
} from "./records.ts";
import { CapabilityEntity, RegionEntity, type Capability, type Region } from "./registry.entity.ts";

/** A DNS label: lowercase letters, digits and inner hyphens (hyphenated names work). */
export const REGION_ID = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
/** A capability is a DNS label too (it is one in the DNS registry); `_` allowed, as in the seed's `staff_members`. */
export const CAPABILITY_NAME = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/;
const REGION_UPDATABLE = ["alias", "active"] as const;
/** Longest a capability may be published for. */
const MAX_CAPABILITY_LIFETIME_MS = 5 * 366 * 86400_000;

export interface RegionFields {
  id: string;
  alias: string;
  active: boolean;
}

export interface CapabilityInput {
  regionId: string;
  capability: string;
  publicKey: string;
  expireTime: Date | undefined;
}

/** A capability as Tessera's own verification sees it. */
export interface LocalCapability {
  id: string;
  regionId: string;
  name: string;
  tenantId: string;
  tenantName: string;
  /** Region active, tenant enabled, user (of a user region) enabled, capability active. */
  active: boolean;
  expiresAt: Date;
  key: VerifyKey;
  /** The group whose grants it carries. */
  groupId: string | null;
  /** The user of a user region. */
  userId: string | null;
  username: string;
  createdAt: Date;
  updatedAt: Date;
}

export interface RegistrySettings {
  masterKey: Buffer;
  /** Cache-Control max-age of the document, and the TTL suggested in DNS records. */
  publishMaxAgeSeconds: number;
}

export function checkRegionId(id: string, field: string, v: Violations): void {
  if (!REGION_ID.test(id)) v.add(field, "must be a DNS label: 1-63 lowercase letters, digits and inner hyphens");
}

export function checkCapabilityName(name: string, field: string, v: Violations): void {
  if (!CAPABILITY_NAME.test(name)) v.add(field, "must be a DNS label: 1-63 lowercase letters, digits, '_' and inner hyphens");
}

interface BuiltDocument {
  document: RegistryDocument;
  body: string;
  etag: string;
  regions: { id: string; jwt: string }[];
  capabilities: { regionId: string; name: string; jwt: string }[];
  authorityJwk: Record<string, string>;
}

/** How long Tessera's own lookups are cached; every change drops them at once (here, and on other replicas at their next feed poll). */
const SELF_CACHE_MS = 30_000;
const SELF_CACHE_MAX = 10_000;

export class RegistryService {
  readonly authority: AuthorityKeys;
  readonly #settings: RegistrySettings;
  #built: Promise<BuiltDocument> | undefined;
  #builtAt = 0;
  readonly #self = new Map<string, { at: number; value: Promise<{ capability: LocalCapability | null; granted: string[] }> }>();

  constructor(settings: RegistrySettings) {
    this.#settings = settings;
    this.authority = new AuthorityKeys(settings.masterKey);
  }

  get maxAgeSeconds(): number {
    return this.#settings.publishMaxAgeSeconds;
  }

  /** Something in the registry (or a grant, a user, a tenant) changed, here or on another replica: drop what was derived from it. */
  changed(): void {
    this.#built = undefined;
    this.#self.clear();
  }

  /** Tessera's own lookup of (region, capability) with its grants, cached. */
  selfLookup(source: EntityManagerSource, regionId: string, name: string): Promise<{ capability: LocalCapability | null; granted: string[] }> {
    const key = `${regionId}\u0000${name}`;
    const cached = this.#self.get(key);
    if (cached && Date.now() - cached.at < SELF_CACHE_MS) return cached.value;
    const value = (async () => {
      const em = entityManagerOf(source);
      const capability = await this.localCapability(em, { regionId, name });
      return { capability, granted: capability ? await this.capabilityGrants(em, capability) : [] };
    })();
    if (this.#self.size >= SELF_CACHE_MAX) this.#self.clear();
    this.#self.set(key, { at: Date.now(), value });
    value.catch(() => this.#self.delete(key));
    return value;
  }

  // ---- regions --------------------------------------------------------------

  async createRegion(em: EntityManager, tenantId: string, fields: RegionFields): Promise<Region> {
    const v = new Violations();
    checkRegionId(fields.id, "region.id", v);
    if (UUID.test(fields.id)) v.add("region.id", "UUID-shaped ids are reserved for users' own regions (PublishCapability for yourself)");
    checkMaxLength(fields.alias, 200, "region.alias", v);
    v.throwIfAny();
    const region = em.create(RegionEntity, { id: fields.id, tenant: tenantId, alias: fields.alias, active: fields.active, user: null });
    try {
      await em.flush();
    } catch (error) {
      if (isUniqueViolation(error)) throw alreadyExists(`region ${fields.id} already exists`, "region.id");
      throw error;
    }
    this.#recordChange(em, tenantId);
    await em.flush();
    return region;
  }

  async regionRow(em: EntityManager, id: string): Promise<Region | null> {
    return em.fork().findOne(RegionEntity, { id });
  }

  async getRegion(em: EntityManager, tenantId: string, id: string): Promise<Region> {
    const region = REGION_ID.test(id) ? await em.findOne(RegionEntity, { id, tenant: tenantId }) : null;
    if (!region) throw notFound("REGION_NOT_FOUND", "region not found");
    return region;
  }

  async listRegions(em: EntityManager, tenantId: string, request: PageRequest): Promise<{ regions: Region[]; nextPageToken: string }> {
    const v = new Violations();
    const query = { kind: "regions", tenantId };
    const page = readPage(request, query, v);
    v.throwIfAny();
    const rows = await em.find(RegionEntity, { tenant: tenantId, ...(page.after ? { id: { $gt: page.after } } : {}) }, { orderBy: { id: "asc" }, limit: page.limit + 1 });
    const { items, next } = nextPageToken(rows, page, (r) => r.id, query);
    return { regions: items, nextPageToken: next };
  }

  async updateRegion(em: EntityManager, tenantId: string, fields: RegionFields, mask: readonly string[]): Promise<Region> {
    const v = new Violations();
    const masked = readUpdateMask(mask, REGION_UPDATABLE, v);
    if (masked.has("alias")) checkMaxLength(fields.alias, 200, "region.alias", v);
    v.throwIfAny();
    return em.transactional(async (tem) => {
      const region = await this.getRegion(tem, tenantId, fields.id);
      if (masked.has("alias")) region.alias = fields.alias;
      if (masked.has("active") && region.active !== fields.active) {
        region.active = fields.active;
        // Its capabilities are revoked for good (activating the region again does not bring their tokens back).
        if (!fields.active) await this.#revokeCapabilities(tem, tenantId, { region: { id: region.id } });
      }
      this.#recordChange(tem, tenantId);
      await tem.flush();
      return region;
    });
  }

  async deleteRegion(em: EntityManager, tenantId: string, id: string): Promise<void> {
    await em.transactional(async (tem) => {
      const region = await this.getRegion(tem, tenantId, id);
      await this.#revokeTokensOf(tem, tenantId, { region: region.id });
      tem.remove(region);
      this.#recordChange(tem, tenantId);
      await tem.flush();
    });
  }

  // ---- capabilities -----------------------------------------------------------

  /**
   * Publishes (or, for an existing active capability, rotates) a key. A
   * revoked capability published again gets a new id, so that the tokens its
   * revocation ended stay ended. `self`: a user publishing for itself, into
   * its own region (its id is the user's id, created on first use), for one
   * of its groups.
   */
  async publishCapability(
    em: EntityManager,
    tenantId: string,
    input: CapabilityInput,
    who: { self: { userId: string } } | { grants: readonly string[] },
  ): Promise<{ capability: Capability; region: Region }> {
    const self = "self" in who ? who.self : undefined;
    const v = new Violations();
    const regionId = input.regionId || (self ? self.userId : "");
    checkRegionId(regionId, "region_id", v);
    checkCapabilityName(input.capability, "capability", v);
    const read = readPublicKey(input.publicKey);
    if ("problem" in read) v.add("public_key", read.problem);
    const now = Date.now();
    if (!input.expireTime) v.add("expire_time", "is required");
    else if (input.expireTime.getTime() <= now) v.add("expire_time", "must be in the future");
    else if (input.expireTime.getTime() > now + MAX_CAPABILITY_LIFETIME_MS) v.add("expire_time", "must be within five years");
    if (self && regionId !== self.userId) v.add("region_id", "a user publishes only into its own region: empty or its own user id");
    v.throwIfAny();
    const key = (read as { key: VerifyKey }).key;
    return em.transactional(async (tem) => {
      let region = await tem.findOne(RegionEntity, { id: regionId });
      if (self) {
        const member = await tem.findOne(GroupMemberEntity, { user: self.userId, group: { tenant: tenantId, name: input.capability } });
        if (!member) throw permissionDenied(`you are not a member of a group named ${input.capability}`);
        if (region && (!region.user || refKey(region.user) !== self.userId)) {
          throw permissionDenied("this region is not yours");
        }
        region ??= tem.create(RegionEntity, { id: regionId, tenant: tenantId, alias: "", active: true, user: self.userId });
      } else if (!region || refKey(region.tenant) !== tenantId) {
        throw notFound("REGION_NOT_FOUND", "region not found");
      } else if (region.user) {
        // Only the user publishes into its own region: anyone else's key there would verify as that user.
        throw permissionDenied("this is a user's own region: only that user publishes keys into it");
      }
      const group = await tem.findOne(GroupEntity, { tenant: tenantId, name: input.capability });
      // The capability gets the group's grants: publishing it must not give more than the publisher holds.
      if (group && "grants" in who) {
        const beyond = group.permissions.find((p) => !anyCovers(who.grants, p));
        if (beyond) throw permissionDenied(`the group ${input.capability} grants ${beyond}, which you do not hold`);
      }
      let capability = await tem.findOne(CapabilityEntity, { region: regionId, name: input.capability });
      if (capability && !capability.active) {
        tem.remove(capability);
        await tem.flush();
        capability = null;
      }
      if (capability) {
        capability.group = group ?? null;
        capability.publicJwk = key.jwk;
        capability.kid = key.kid;
        capability.algorithm = key.alg;
        capability.expiresAt = input.expireTime!;
      } else {
        capability = tem.create(CapabilityEntity, {
          id: randomUUID(),
          region: regionId,
          name: input.capability,
          group: group ? group.id : null,
          publicJwk: key.jwk,
          kid: key.kid,
          algorithm: key.alg,
          active: true,
          expiresAt: input.expireTime!,
        });
      }
      this.#recordChange(tem, tenantId);
      await tem.flush();
      return { capability, region };
    }).catch((error: unknown) => {
      // Two publishes at once for one new region or capability: one wins; the other may simply retry.
      if (isUniqueViolation(error)) throw alreadyExists("a concurrent publish of this capability won; retry", "capability");
      throw error;
    });
  }

  async revokeCapability(em: EntityManager, tenantId: string, regionId: string, name: string, self?: { userId: string }): Promise<void> {
    await em.transactional(async (tem) => {
      const capability = REGION_ID.test(regionId) && CAPABILITY_NAME.test(name)
        ? await tem.findOne(CapabilityEntity, { region: { id: regionId, tenant: tenantId, ...(self ? { user: self.userId } : {}) }, name })
        : null;
      if (!capability) throw notFound("CAPABILITY_NOT_FOUND", "capability not found");
      if (capability.active) {
        capability.active = false;
        await this.#revokeTokensOf(tem, tenantId, { capabilityIds: [capability.id] });
      }
      this.#recordChange(tem, tenantId);
      await tem.flush();
    });
  }

  /**
   * A user was disabled, deleted or lost its password: the keys it published
   * for itself are revoked, as its sessions are (enabling it again does not
   * bring them back; it publishes again), in the caller's transaction.
   */
  async revokeUserKeysInTransaction(em: EntityManager, tenantId: string, userId: string): Promise<void> {
    await this.#revokeCapabilities(em, tenantId, { region: { user: userId } });
  }

  /** A tenant was disabled or is being deleted: its capabilities are revoked for good, as its sessions are. */
  async revokeTenantKeysInTransaction(em: EntityManager, tenantId: string): Promise<void> {
    await this.#revokeCapabilities(em, tenantId, { region: { tenant: tenantId } });
  }

  async #revokeCapabilities(em: EntityManager, tenantId: string, where: { region: Record<string, string> }): Promise<void> {
    const live = await em.find(CapabilityEntity, { ...where, active: true });
    if (live.length === 0) return;
    for (const c of live) c.active = false;
    await this.#revokeTokensOf(em, tenantId, { capabilityIds: live.map((c) => c.id) });
    this.#recordChange(em, tenantId);
    await em.flush();
  }

  async listCapabilities(em: EntityManager, tenantId: string, regionId: string, request: PageRequest): Promise<{ capabilities: Capability[]; nextPageToken: string }> {
    const v = new Violations();
    if (regionId) checkRegionId(regionId, "region_id", v);
    const query = { kind: "capabilities", tenantId, regionId };
    const page = readPage(request, query, v);
    v.throwIfAny();
    const where: Record<string, unknown> = { region: { tenant: tenantId, ...(regionId ? { id: regionId } : {}) } };
    if (page.after) {
      const [region, name] = page.after.split("|") as [string, string];
      where.$or = [{ region: { $gt: region } }, { region, name: { $gt: name } }];
    }
    const rows = await em.find(CapabilityEntity, where, { orderBy: { region: "asc", name: "asc" }, limit: page.limit + 1 });
    const { items, next } = nextPageToken(rows, page, (c) => `${refKey(c.region)}|${c.name}`, query);
    return { capabilities: items, nextPageToken: next };
  }

  // ---- publication --------------------------------------------------------------

  /** The signed document (cached until the registry changes, and at most a minute). */
  async document(em: EntityManager): Promise<BuiltDocument> {
    if (!this.#built || Date.now() - this.#builtAt > 60_000) {
      this.#builtAt = Date.now();
      const building = this.#build(em.fork());
      this.#built = building;
      building.catch(() => {
        if (this.#built === building) this.#built = undefined;
      });
    }
    return this.#built;
  }

  async #build(em: EntityManager): Promise<BuiltDocument> {
    const authority = await this.authority.current(em);
    const now = new Date();
    const regions = await em.find(RegionEntity, {}, { populate: ["tenant", "user"], orderBy: { id: "asc" } });
    const live = new Map(regions.map((r) => [r.id, r.active && !r.tenant.disabled && !(r.user && r.user.disabled)]));
    const capabilities = await em.find(CapabilityEntity, { expiresAt: { $gt: now } }, { orderBy: { region: "asc", name: "asc" } });
    const signer = { kid: authority.kid, privateKey: authority.privateKey };
    const signedRegions = regions.map((r) => ({ id: r.id, jwt: signRecord(REGION_RECORD_TYP, regionRecord({ ...r, active: live.get(r.id)!, tenantName: r.tenant.name, user: !!r.user }, now), signer) }));
    const signedCapabilities = capabilities.map((c) => {
      const regionId = refKey(c.region);
      return {
        regionId,
        name: c.name,
        jwt: signRecord(CAPABILITY_RECORD_TYP, capabilityRecord({ ...c, regionId, active: c.active && (live.get(regionId) ?? false) }, now), signer),
      };
    });
    const document = { regions: signedRegions.map((r) => r.jwt), capabilities: signedCapabilities.map((c) => c.jwt) };
    const body = JSON.stringify(document);
    return {
      document,
      body,
      etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"`,
      regions: signedRegions,
      capabilities: signedCapabilities,
      authorityJwk: authority.publicKey.jwk,
    };
  }

  async exportDnsZone(em: EntityManager, host: string): Promise<{ records: TxtRecord[]; zoneFile: string }> {
    const v = new Violations();
    const normalized = host.toLowerCase().replace(/\.$/, "");
    if (!HOSTNAME.test(normalized) || normalized.includes(":")) v.add("host", "must be a DNS host name such as registry.example.com");
    v.throwIfAny();
    const built = await this.document(em);
    const ttl = this.#settings.publishMaxAgeSeconds;
    const records = dnsRecords(normalized, built, ttl);
    return { records, zoneFile: zoneFile(normalized, records, ttl) };
  }

  /** A new authority key signs from now on (every replica re-signs at its next build). */
  async rotateAuthority(em: EntityManager) {
    const signer = await this.authority.rotate(em);
    recordRevocation(em, { kind: "REGISTRY_CHANGED" });
    await em.flush();
    this.changed();
    return signer;
  }

  // ---- lookups for Tessera's own verification ------------------------------------

  async localCapability(em: EntityManager, where: { id: string } | { regionId: string; name: string }): Promise<LocalCapability | null> {
    const filter = "id" in where ? { id: where.id } : { region: where.regionId, name: where.name };
    const c = await em.fork().findOne(CapabilityEntity, filter, { populate: ["region", "region.tenant", "region.user"] });
    if (!c) return null;
    const region = c.region;
    const read = readPublicKey(c.publicJwk);
    if ("problem" in read) return null;
    return {
      id: c.id,
      regionId: region.id,
      name: c.name,
      tenantId: region.tenant.id,
      tenantName: region.tenant.name,
      active: c.active && region.active && !region.tenant.disabled && !(region.user && region.user.disabled),
      expiresAt: c.expiresAt,
      key: read.key,
      groupId: c.group ? refKey(c.group) : null,
      userId: region.user?.id ?? null,
      username: region.user?.username ?? "",
      createdAt: c.createdAt,
      updatedAt: c.updatedAt,
    };
  }

  /** The grant patterns of the tenant's group of that name (an allow-list entry's mapping), none when there is none. */
  async groupGrantsByName(em: EntityManager, tenantId: string, name: string): Promise<string[]> {
    const group = await em.fork().findOne(GroupEntity, { tenant: tenantId, name });
    return group ? [...group.permissions] : [];
  }

  /** The grant patterns of the capability's group (none when it has none). */
  async capabilityGrants(em: EntityManager, capability: Pick<LocalCapability, "groupId" | "tenantId" | "userId">): Promise<string[]> {
    const { groupId, tenantId, userId } = capability;
    const group = groupId ? await em.fork().findOne(GroupEntity, { id: groupId, tenant: tenantId }) : null;
    if (!group) return [];
    // A user's key carries its group's grants only while the user is in the group.
    if (userId && !(await em.fork().findOne(GroupMemberEntity, { user: userId, group: group.id }))) return [];
    return [...group.permissions];
  }

  #recordChange(em: EntityManager, tenantId: string): void {
    recordRevocation(em, { kind: "REGISTRY_CHANGED", tenantId });
  }

  /** Capabilities of a region (or the given ones) stop verifying: the tokens exchanged for them die at once. */
  async #revokeTokensOf(em: EntityManager, tenantId: string, which: { region: string } | { capabilityIds: string[] }): Promise<void> {
    const ids = "region" in which
      ? (await em.find(CapabilityEntity, { region: which.region }, { fields: ["id"] })).map((c) => c.id)
      : which.capabilityIds;
    for (const id of ids) recordRevocation(em, { kind: "SESSION_REVOKED", tenantId, sessionId: id });
  }
}

