// Verification of service assertions (Region System): a JWT a service (or a
// user, with its own key) signs itself, naming in `regionmeta` the registry
// that publishes its key. Checked, in order of cost: shape and size; the
// registry is on the allow-list; times (`exp`, `iat`, a bounded lifetime,
// `regionmeta.expires`) and audience; the capability's records from that
// registry (signed by its pinned authority, active, unexpired); the
// assertion's signature with the capability's key (an unknown key refetches
// once, rate-limited); and last its `jti`, remembered in the database until
// the assertion expires, so a replay is refused on every replica.
import type { EntityManager } from "@mikro-orm/core";
import { entityManagerOf, type EntityManagerSource } from "../db/entity-manager-source.ts";
import { TesseraError, unauthenticated, Violations } from "../errors.ts";
import { UUID } from "../shared/validation.ts";
import { parseJws, signatureValidOffloaded, type ParsedJws, type VerifyKey } from "./jws.ts";
import type { RegistryResolvers } from "./resolvers.ts";
import type { LocalCapability, RegistryService } from "./registry.service.ts";
import { CAPABILITY_NAME, checkCapabilityName, checkRegionId, REGION_ID } from "./registry.service.ts";
import type { TrustedRegistry } from "./trust.ts";

export const MAX_ASSERTION_LENGTH = 8192;
const CLOCK_SKEW_SECONDS = 30;

export interface AssertionSettings {
  /** Longest `exp - iat` accepted: bounds how long a jti is remembered. */
  maxLifetimeSeconds: number;
  /** Names of this server's own registry (TESSERA_REGISTRY_SELF). */
  selfNames: string[];
  trusted: TrustedRegistry[];
}

/** A verified assertion: who signed it and what it may do. */
export interface VerifiedAssertion {
  kind: "user" | "service";
  /** The region id; a user's id for a user's own key. */
  subject: string;
  regionId: string;
  capability: string;
  registry: string;
  tenantId: string;
  tenantName: string;
  username: string;
  /** The grant patterns of the capability's group (none when there is none). */
  granted: string[];
  /** The capability's id in this server's registry: the exchanged tokens' session. Undefined for outside registries. */
  capabilityId?: string;
  expiresAt: Date;
  /** regionmeta.expires, or the capability's expiry if earlier. */
  regionExpiresAt: Date;
  audience: string[];
}

export interface AssertionDeps {
  registry: RegistryService;
  resolvers: RegistryResolvers;
  /** The tenant (id, name, disabled) an outside registry's entry names. */
  tenantByName(em: EntityManager, name: string): Promise<{ id: string; name: string; disabled: boolean } | null>;
  /** Remembers (registry, region, jti) until `expiresAt`; false when it was already there (a replay). */
  remember(parts: readonly string[], expiresAt: Date): Promise<boolean>;
}

const invalid = (message: string) => unauthenticated("TOKEN_INVALID", message);

export class AssertionVerifier {
  readonly #settings: AssertionSettings;
  readonly #deps: AssertionDeps;
  readonly #trusted: Map<string, TrustedRegistry>;
  readonly #self: Set<string>;

  constructor(settings: AssertionSettings, deps: AssertionDeps) {
    this.#settings = settings;
    this.#deps = deps;
    this.#trusted = new Map(settings.trusted.map((t) => [t.name, t]));
    this.#self = new Set(settings.selfNames);
  }

  /** Whether any registry is trusted (the credential is enabled). */
  get enabled(): boolean {
    return this.#trusted.size > 0 || this.#self.size > 0;
  }

  /**
   * `em` is the call's EntityManager or a function that makes it: with the
   * capability's record cached, checking an assertion reads nothing through
   * it, and the call makes no fork.
   */
  async verify(em: EntityManagerSource, token: string, audience: string): Promise<VerifiedAssertion> {
    if (!this.enabled) {
      throw new TesseraError("INVALID_ARGUMENT", "INVALID_INPUT", "service assertions are not enabled on this server: set TESSERA_REGISTRY_SELF or TESSERA_REGISTRIES", {
        fieldViolations: [{ field: "credential.service_assertion", description: "not enabled on this server: set TESSERA_REGISTRY_SELF or TESSERA_REGISTRIES" }],
      });
    }
    const parsed = parseJws(token, MAX_ASSERTION_LENGTH, "assertion");
    const claims = readClaims(parsed);
    const now = Math.floor(Date.now() / 1000);
    const meta = claims.regionmeta;
    const selfRegistry = this.#self.has(meta.registry);
    const trusted = selfRegistry ? undefined : this.#trusted.get(meta.registry);
    if (!selfRegistry && !trusted) throw unauthenticated("REGISTRY_NOT_ALLOWED", "the assertion's registry is not on this server's allow-list");
    // UUID-shaped ids are users' own regions: from outside they could pass for a user of this server.
    if (trusted && UUID.test(meta.id)) throw unauthenticated("INVALID_CREDENTIALS", "user keys of outside registries are not accepted");
    if (claims.exp <= now) throw unauthenticated("TOKEN_EXPIRED", "assertion has expired");
    if (claims.iat > now + CLOCK_SKEW_SECONDS) throw invalid("assertion is issued in the future");
    if (claims.exp - claims.iat > this.#settings.maxLifetimeSeconds) throw invalid(`assertion lives longer than ${this.#settings.maxLifetimeSeconds} s (exp - iat)`);
    if (meta.expires <= now) throw unauthenticated("TOKEN_EXPIRED", "the assertion's registry entry has expired (regionmeta.expires)");
    if (!claims.aud.includes(audience)) throw invalid("assertion audience is not accepted");

    const verified = selfRegistry
      ? await this.#verifySelf(em, parsed, meta)
      : await this.#verifyTrusted(em, parsed, meta, trusted!);

    // Last, so that only assertions that verified are remembered (nobody can fill the table with junk).
    if (!(await this.#deps.remember([meta.registry, meta.id, meta.capability, claims.jti], new Date(claims.exp * 1000)))) {
      throw unauthenticated("ASSERTION_REPLAYED", "this assertion (jti) was already used");
    }
    return {
      ...verified,
      regionId: meta.id,
      capability: meta.capability,
      registry: meta.registry,
      expiresAt: new Date(Math.min(claims.exp, meta.expires, Math.floor(verified.capabilityExpiresAt.getTime() / 1000)) * 1000),
      regionExpiresAt: new Date(Math.min(meta.expires * 1000, verified.capabilityExpiresAt.getTime())),
      audience: claims.aud,
    };
  }

  async #verifySelf(em: EntityManagerSource, parsed: ParsedJws, meta: RegionMeta) {
    const found = await this.#deps.registry.selfLookup(em, meta.id, meta.capability);
    const capability = await checkCapability(found?.capability ?? null, parsed);
    return {
      kind: capability.userId ? ("user" as const) : ("service" as const),
      subject: capability.userId ?? capability.regionId,
      tenantId: capability.tenantId,
      tenantName: capability.tenantName,
      username: capability.username,
      granted: found!.granted,
      capabilityId: capability.id,
      capabilityExpiresAt: capability.expiresAt,
    };
  }

  async #verifyTrusted(em: EntityManagerSource, parsed: ParsedJws, meta: RegionMeta, registry: TrustedRegistry) {
    let { resolved } = await this.#deps.resolvers.lookup(registry, meta.id, meta.capability);
    let signed = !!resolved && (await keyMatches(parsed, resolved.key));
    // Not there, or another key than the one cached (a rotation): ask the registry again, once per cooldown.
    if (!signed) {
      const again = await this.#deps.resolvers.lookup(registry, meta.id, meta.capability, true);
      if (again.refetched) {
        resolved = again.resolved;
        signed = !!resolved && (await keyMatches(parsed, resolved.key));
      }
    }
    if (!resolved) throw unauthenticated("INVALID_CREDENTIALS", "no such capability in the registry");
    // The signature first: nothing about the records is told to someone who cannot sign for them.
    if (!signed) throw invalid("assertion signature is invalid");
    const now = Math.floor(Date.now() / 1000);
    if (!resolved.region.active) throw unauthenticated("SESSION_REVOKED", "the region is inactive");
    if (!resolved.capability.active) throw unauthenticated("SESSION_REVOKED", "the capability is revoked");
    if (resolved.capability.exp <= now) throw unauthenticated("TOKEN_EXPIRED", "the capability has expired");
    // A user's own key there is that registry's user, not a service of this tenant; and a registry's other tenants are not this one.
    if (resolved.region.user === true) throw unauthenticated("INVALID_CREDENTIALS", "user keys of outside registries are not accepted");
    if (registry.sourceTenant !== undefined && resolved.region.tenant !== registry.sourceTenant) {
      throw unauthenticated("INVALID_CREDENTIALS", "the region belongs to another tenant of that registry");
    }
    const tenant = await this.#deps.tenantByName(entityManagerOf(em), registry.tenant);
    if (!tenant) throw unauthenticated("TENANT_NOT_FOUND", `the tenant ${registry.tenant} of registry ${registry.name} does not exist`);
    if (tenant.disabled) throw unauthenticated("TENANT_DISABLED", "the tenant is disabled");
    return {
      kind: "service" as const,
      subject: meta.id,
      tenantId: tenant.id,
      tenantName: tenant.name,
      username: "",
      granted: registry.capabilities[meta.capability] ? await this.#deps.registry.groupGrantsByName(entityManagerOf(em), tenant.id, registry.capabilities[meta.capability]!) : [],
      capabilityId: undefined,
      capabilityExpiresAt: new Date(resolved.capability.exp * 1000),
    };
  }
}

interface RegionMeta {
  id: string;
  capability: string;
  registry: string;
  expires: number;
}

function readClaims(parsed: ParsedJws): { regionmeta: RegionMeta; iat: number; exp: number; jti: string; aud: string[] } {
  const c = parsed.payload;
  const meta = c.regionmeta as Record<string, unknown> | null | undefined;
  if (!meta || typeof meta !== "object" || Array.isArray(meta)) throw invalid("assertion has no regionmeta");
  if (typeof meta.id !== "string" || !REGION_ID.test(meta.id)) throw invalid("assertion's regionmeta.id is not a region id");
  if (typeof meta.capability !== "string" || !CAPABILITY_NAME.test(meta.capability)) throw invalid("assertion's regionmeta.capability is not a capability name");
  if (typeof meta.registry !== "string" || meta.registry.length === 0 || meta.registry.length > 2048) throw invalid("assertion's regionmeta.registry is missing");
  if (typeof meta.expires !== "number" || !Number.isFinite(meta.expires)) throw invalid("assertion's regionmeta.expires is not a NumericDate");
  for (const name of ["exp", "iat"] as const) {
    if (typeof c[name] !== "number" || !Number.isFinite(c[name])) throw invalid(`assertion has no valid ${name}`);
  }
  if (typeof c.jti !== "string" || c.jti.length < 8 || c.jti.length > 128) throw invalid("assertion needs a jti of 8-128 characters");
  const aud = typeof c.aud === "string" ? [c.aud] : Array.isArray(c.aud) && c.aud.every((a) => typeof a === "string") ? (c.aud as string[]) : undefined;
  if (!aud || aud.length === 0 || aud.length > 10) throw invalid("assertion has no valid aud");
  if (typeof parsed.header.alg !== "string") throw invalid("assertion has no alg");
  return { regionmeta: meta as unknown as RegionMeta, iat: c.iat as number, exp: c.exp as number, jti: c.jti, aud };
}

// Signatures are checked on libuv's thread pool: the event loop serves other calls meanwhile.
async function keyMatches(parsed: ParsedJws, key: VerifyKey): Promise<boolean> {
  const kid = parsed.header.kid;
  if (kid !== undefined && kid !== key.kid) return false;
  return signatureValidOffloaded(parsed, key);
}

async function checkCapability(found: LocalCapability | null, parsed: ParsedJws): Promise<LocalCapability> {
  if (!found) throw unauthenticated("INVALID_CREDENTIALS", "no such capability in this registry");
  // The signature first: nothing about the capability is told to someone who cannot sign for it.
  if (!(await signatureValidOffloaded(parsed, found.key))) throw invalid("assertion signature is invalid");
  if (!found.active) throw unauthenticated("SESSION_REVOKED", "the capability is revoked or its region inactive");
  if (found.expiresAt.getTime() <= Date.now()) throw unauthenticated("TOKEN_EXPIRED", "the capability has expired");
  return found;
}

/** What LookupCapability answers: the records as the registry publishes them. */
export interface LookedUp {
  region: { id: string; alias: string; active: boolean; created: Date; updated: Date; userId: string };
  capability: { id: string; regionId: string; name: string; publicJwk: Record<string, string>; kid: string; alg: string; active: boolean; expiresAt: Date; created: Date; updated: Date };
}

/** Resolves (region, capability) through a trusted registry of any kind, records verified. */
export async function lookupThrough(
  deps: Pick<AssertionDeps, "registry" | "resolvers">,
  settings: Pick<AssertionSettings, "selfNames" | "trusted">,
  em: EntityManager,
  name: string,
  regionId: string,
  capability: string,
  onlyTenant?: string,
): Promise<LookedUp> {
  const v = new Violations();
  checkRegionId(regionId, "region_id", v);
  checkCapabilityName(capability, "capability", v);
  v.throwIfAny();
  const notFoundHere = () => new TesseraError("NOT_FOUND", "CAPABILITY_NOT_FOUND", `capability ${capability} of region ${regionId} is not in registry ${name}`);
  if (settings.selfNames.includes(name)) {
    const c = await deps.registry.localCapability(em, { regionId, name: capability });
    if (!c || (onlyTenant !== undefined && c.tenantId !== onlyTenant)) throw notFoundHere();
    const region = await deps.registry.regionRow(em, regionId);
    return {
      region: { id: regionId, alias: region?.alias ?? "", active: c.active, created: region?.createdAt ?? new Date(0), updated: region?.updatedAt ?? new Date(0), userId: c.userId ?? "" },
      capability: { id: c.id, regionId, name: c.name, publicJwk: c.key.jwk, kid: c.key.kid, alg: c.key.alg, active: c.active, expiresAt: c.expiresAt, created: c.createdAt, updated: c.updatedAt },
    };
  }
  const trusted = settings.trusted.find((t) => t.name === name);
  if (!trusted) throw unauthenticated("REGISTRY_NOT_ALLOWED", `registry ${JSON.stringify(name.slice(0, 200))} is not on this server's allow-list`);
  const { resolved } = await deps.resolvers.lookup(trusted, regionId, capability);
  if (!resolved) throw notFoundHere();
  const r = resolved.region;
  const k = resolved.capability;
  const at = (s: number) => new Date(s * 1000);
  return {
    region: { id: r.id, alias: typeof r.alias === "string" ? r.alias : "", active: r.active, created: at(r.created), updated: at(r.updated), userId: "" },
    capability: { id: "", regionId, name: capability, publicJwk: resolved.key.jwk, kid: resolved.key.kid, alg: resolved.key.alg, active: k.active, expiresAt: at(k.exp), created: at(k.created), updated: at(k.updated) },
  };
}
