// RegistryService over gRPC: maps proto <-> domain and checks permissions.
import type { ServiceImplementation } from "nice-grpc";
import type { Capability as CapabilityMessage, Region as RegionMessage, RegistryServiceDefinition } from "@tessera/client";
import { invalidInput } from "../errors.ts";
import { refKey } from "../db/refs.ts";
import { authorizeCall, isSelf, requirePrincipal, requireSelfPermission } from "../grpc/authorize.ts";
import type { TesseraContext } from "../grpc/context.ts";
import { UUID } from "../shared/validation.ts";
import { RateLimit } from "../throttling/index.ts";
import { lookupThrough, type AssertionDeps, type AssertionSettings, type LookedUp } from "./assertions.ts";
import type { Capability, Region } from "./registry.entity.ts";
import type { RegistryService } from "./registry.service.ts";
import { registryKind } from "./trust.ts";
import { SYSTEM_TENANT_NAME } from "../tenants/index.ts";

function toRegionMessage(r: Region): RegionMessage {
  return { id: r.id, alias: r.alias, active: r.active, createTime: r.createdAt, updateTime: r.updatedAt, userId: r.user ? refKey(r.user) : "" };
}

function toCapabilityMessage(c: Capability): CapabilityMessage {
  return {
    id: c.id,
    regionId: refKey(c.region),
    capability: c.name,
    publicKeyJwk: JSON.stringify(c.publicJwk),
    keyId: c.kid,
    algorithm: c.algorithm,
    active: c.active,
    expireTime: c.expiresAt,
    createTime: c.createdAt,
    updateTime: c.updatedAt,
  };
}

function lookedUpMessages(l: LookedUp): { region: RegionMessage; capability: CapabilityMessage } {
  return {
    region: { id: l.region.id, alias: l.region.alias, active: l.region.active, createTime: l.region.created, updateTime: l.region.updated, userId: l.region.userId },
    capability: {
      id: l.capability.id,
      regionId: l.capability.regionId,
      capability: l.capability.name,
      publicKeyJwk: JSON.stringify(l.capability.publicJwk),
      keyId: l.capability.kid,
      algorithm: l.capability.alg,
      active: l.capability.active,
      expireTime: l.capability.expiresAt,
      createTime: l.capability.created,
      updateTime: l.capability.updated,
    },
  };
}

/** The tenant the call acts on: the caller's own, or (system tenant) the one named. */
function tenantOf(context: TesseraContext, requested: string): string {
  if (requested && !UUID.test(requested)) throw invalidInput([{ field: "tenant_id", description: "must be a UUID" }]);
  return authorizeCall(context, requested);
}

const regionFields = (r: RegionMessage | undefined) => ({ id: r?.id ?? "", alias: r?.alias ?? "", active: r?.active ?? false });

/**
 * The caller acts on the tenant's registry with the declared permission, or
 * (a user without it, holding identity.self.publish_keys) on its own region.
 */
function publisher(context: TesseraContext, regionId: string, tenantId: string): { tenantId: string; self?: { userId: string } } {
  const principal = requirePrincipal(context);
  // A user's own region (empty, or its own id) is always the self path: nobody else publishes there.
  if (isSelf(principal, { tenantId, userId: "" }) && (!regionId || regionId === principal.subject)) {
    requireSelfPermission(context, context.access.selfPermission);
    return { tenantId: principal.tenantId, self: { userId: principal.subject } };
  }
  return { tenantId: tenantOf(context, tenantId) }; // refuses without the declared permission
}

/**
 * Every registry change rebuilds the signed document and drops registry caches on every replica:
 * writes are rate-limited per tenant, and a user's own key publications per user.
 */
export interface RegistryWriteLimits {
  perTenant?: RateLimit;
  perUser?: RateLimit;
}

export function registryServiceImpl(
  registry: RegistryService,
  lookup: { deps: Pick<AssertionDeps, "registry" | "resolvers">; settings: Pick<AssertionSettings, "selfNames" | "trusted"> },
  limits: RegistryWriteLimits = {},
): ServiceImplementation<typeof RegistryServiceDefinition, TesseraContext> {
  const write = (tenantId: string, self?: { userId: string }) =>
    RateLimit.takeAll([[limits.perTenant, tenantId], [self ? limits.perUser : undefined, self?.userId ?? ""]], "registry changes");
  return {
    async createRegion(request, context) {
      const tenantId = tenantOf(context, request.tenantId);
      if (!request.region) throw invalidInput([{ field: "region", description: "is required" }]);
      await write(tenantId);
      return { region: toRegionMessage(await registry.createRegion(context.em, tenantId, regionFields(request.region))) };
    },

    async getRegion(request, context) {
      return { region: toRegionMessage(await registry.getRegion(context.em, tenantOf(context, request.tenantId), request.id)) };
    },

    async listRegions(request, context) {
      const page = await registry.listRegions(context.em, tenantOf(context, request.tenantId), request);
      return { regions: page.regions.map(toRegionMessage), nextPageToken: page.nextPageToken };
    },

    async updateRegion(request, context) {
      const tenantId = tenantOf(context, request.tenantId);
      await write(tenantId);
      return { region: toRegionMessage(await registry.updateRegion(context.em, tenantId, regionFields(request.region), request.updateMask ?? [])) };
    },

    async deleteRegion(request, context) {
      await registry.deleteRegion(context.em, tenantOf(context, request.tenantId), request.id);
      return {};
    },

    async publishCapability(request, context) {
      const who = publisher(context, request.regionId, request.tenantId);
      await write(who.tenantId, who.self);
      const { capability } = await registry.publishCapability(
        context.em,
        who.tenantId,
        { regionId: request.regionId, capability: request.capability, publicKey: request.publicKey, expireTime: request.expireTime },
        who.self ? { self: who.self } : { grants: requirePrincipal(context).permissions },
      );
      return { capability: toCapabilityMessage(capability) };
    },

    async revokeCapability(request, context) {
      const who = publisher(context, request.regionId, request.tenantId);
      await registry.revokeCapability(context.em, who.tenantId, request.regionId || who.self?.userId || "", request.capability, who.self);
      return {};
    },

    async listCapabilities(request, context) {
      const page = await registry.listCapabilities(context.em, tenantOf(context, request.tenantId), request.regionId, request);
      return { capabilities: page.capabilities.map(toCapabilityMessage), nextPageToken: page.nextPageToken };
    },

    async getRegistryDocument(_request, context) {
      const built = await registry.document(context.em);
      return { regions: built.document.regions, capabilities: built.document.capabilities, authorityPublicKeyJwk: JSON.stringify(built.authorityJwk) };
    },

    async exportDnsZone(request, context) {
      authorizeCall(context);
      const zone = await registry.exportDnsZone(context.em, request.host);
      return { records: zone.records, zoneFile: zone.zoneFile };
    },

    async lookupCapability(request, context) {
      authorizeCall(context);
      const ref = request.registry?.kind;
      if (!ref || !ref.value) throw invalidInput([{ field: "registry", description: "set one of https_url, dns_host, local_store" }]);
      const name = ref.$case === "localStore" ? `local:${ref.value}` : ref.value;
      const expected = { httpsUrl: "https", dnsHost: "dns", localStore: "local" }[ref.$case];
      if (registryKind(name) !== expected) {
        const field = { httpsUrl: "https_url", dnsHost: "dns_host", localStore: "local_store" }[ref.$case];
        throw invalidInput([{ field: `registry.${field}`, description: `is not ${{ https: "an https:// URL", dns: "a lowercase DNS host", local: "a local store name" }[expected]}` }]);
      }
      const principal = requirePrincipal(context);
      // This server's own registry answers about the caller's tenant only (the system tenant sees all).
      const onlyTenant = principal.tenantName === SYSTEM_TENANT_NAME ? undefined : principal.tenantId;
      const found = await lookupThrough(lookup.deps, lookup.settings, context.em, name, request.regionId, request.capability, onlyTenant);
      return lookedUpMessages(found);
    },

    async rotateAuthorityKey(_request, context) {
      authorizeCall(context);
      const signer = await registry.rotateAuthority(context.em);
      return { authorityPublicKeyJwk: JSON.stringify(signer.publicKey.jwk) };
    },
  };
}
