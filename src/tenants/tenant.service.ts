// Tenant management: the domain face of tenants. No gRPC here.
import type { EntityManager } from "@mikro-orm/core";
import { alreadyExists, failedPrecondition, notFound, Violations } from "../errors.ts";
import { isUniqueViolation, violatedUniqueConstraint } from "../db/errors.ts";
import { nextPageToken, readPage, type PageRequest } from "../shared/pagination.ts";
import { checkMaxLength, checkPattern, checkUuid, HOSTNAME, TENANT_NAME, UUID, readUpdateMask } from "../shared/validation.ts";
import { TenantDomainEntity, TenantEntity, type Tenant } from "./tenant.entity.ts";
import type { NewUserInput, PreparedUser, UserService } from "../users/index.ts";
import { ExternalIdentityEntity, UserEntity, type User } from "../users/index.ts";
import { refKey } from "../db/refs.ts";
import { issuerUrlProblem, type OidcIssuerConfig } from "../federation/index.ts";

export const SYSTEM_TENANT_NAME = "system";

export interface TenantFields {
  name: string;
  displayName: string;
  domains: string[];
  disabled: boolean;
  selfRegistrationEnabled: boolean;
  oidcIssuers: OidcIssuerConfig[];
}

export interface TenantRecord extends TenantFields {
  id: string;
  createdAt: Date;
  updatedAt: Date;
}

export const TENANT_UPDATABLE = ["name", "display_name", "domains", "disabled", "self_registration_enabled", "oidc_issuers"] as const;
export type TenantUpdatableField = (typeof TENANT_UPDATABLE)[number];

/** Hooks other domains attach to tenant creation (e.g. default groups), run in the same transaction. */
export type TenantCreatedHook = (em: EntityManager, tenant: Tenant, admin: User | undefined) => Promise<void>;

/** What tenant validation needs from elsewhere. */
export interface TenantServiceOptions {
  /** Lets OpenID Connect issuers on loopback hosts be http:// (TESSERA_OIDC_ALLOW_HTTP_LOOPBACK). */
  oidcAllowHttpLoopback: boolean;
  /** The ids among `groupIds` that are not groups of the tenant (permissions owns groups). */
  missingGroups(em: EntityManager, tenantId: string, groupIds: readonly string[]): Promise<string[]>;
}

const MAX_OIDC_ISSUERS = 10;
const CLAIM_NAME = /^[A-Za-z0-9_.:-]{1,64}$/;
const AUDIENCE = /^[^\s]{1,255}$/;

function checkOidcIssuers(issuers: readonly OidcIssuerConfig[], allowHttpLoopback: boolean, v: Violations, prefix: string): void {
  if (issuers.length > MAX_OIDC_ISSUERS) {
    v.add(`${prefix}oidc_issuers`, `must have at most ${MAX_OIDC_ISSUERS} entries`);
    return;
  }
  const seen = new Set<string>();
  issuers.forEach((issuer, i) => {
    const at = `${prefix}oidc_issuers[${i}]`;
    const problem = issuer.issuer ? issuerUrlProblem(issuer.issuer, allowHttpLoopback) : "is required";
    if (problem) v.add(`${at}.issuer`, problem);
    else if (seen.has(issuer.issuer)) v.add(`${at}.issuer`, "is listed twice");
    seen.add(issuer.issuer);
    if (!AUDIENCE.test(issuer.clientId)) v.add(`${at}.client_id`, "is required: at most 255 characters without spaces");
    if (issuer.allowedAudiences.length > 10) v.add(`${at}.allowed_audiences`, "must have at most 10 entries");
    else issuer.allowedAudiences.forEach((a, j) => AUDIENCE.test(a) || v.add(`${at}.allowed_audiences[${j}]`, "must be 1-255 characters without spaces"));
    if (issuer.usernameClaim && !CLAIM_NAME.test(issuer.usernameClaim)) v.add(`${at}.username_claim`, "must be a claim name (letters, digits and _.:-)");
    if (issuer.defaultGroupIds.length > 20) v.add(`${at}.default_group_ids`, "must have at most 20 entries");
    else issuer.defaultGroupIds.forEach((id, j) => UUID.test(id) || v.add(`${at}.default_group_ids[${j}]`, "must be a group UUID"));
  });
}

/** The stored form of an issuer list: group ids in lower case, nothing but the known fields. */
function normalizeIssuers(issuers: readonly OidcIssuerConfig[]): OidcIssuerConfig[] {
  return issuers.map((i) => ({
    issuer: i.issuer,
    clientId: i.clientId,
    allowedAudiences: [...i.allowedAudiences],
    usernameClaim: i.usernameClaim,
    defaultGroupIds: i.defaultGroupIds.map((id) => id.toLowerCase()),
  }));
}

function checkTenantFields(fields: Partial<TenantFields>, v: Violations, prefix = "tenant."): void {
  if (fields.name !== undefined) {
    checkPattern(fields.name, TENANT_NAME, `${prefix}name`, "must be 2-63 characters of a-z, 0-9 and '-', starting with a letter", v);
  }
  if (fields.displayName !== undefined) checkMaxLength(fields.displayName, 200, `${prefix}display_name`, v);
  if (fields.domains !== undefined) {
    if (fields.domains.length > 100) v.add(`${prefix}domains`, "must have at most 100 entries");
    const seen = new Set<string>();
    if (fields.domains.length <= 100) fields.domains.forEach((domain, i) => {
      if (v.full) return;
      if (!HOSTNAME.test(domain)) v.add(`${prefix}domains[${i}]`, "must be a lower-case hostname, optionally with :port");
      else if (seen.has(domain)) v.add(`${prefix}domains[${i}]`, "is listed twice");
      seen.add(domain);
    });
  }
}

export async function toTenantRecord(em: EntityManager, tenant: Tenant): Promise<TenantRecord> {
  const domains = await em.find(TenantDomainEntity, { tenant }, { orderBy: { domain: "asc" } });
  return {
    id: tenant.id,
    name: tenant.name,
    displayName: tenant.displayName,
    domains: domains.map((d) => d.domain),
    disabled: tenant.disabled,
    selfRegistrationEnabled: tenant.selfRegistrationEnabled,
    oidcIssuers: tenant.oidcIssuers,
    createdAt: tenant.createdAt,
    updatedAt: tenant.updatedAt,
  };
}

function duplicateTenant(error: unknown): never {
  if (isUniqueViolation(error)) {
    throw alreadyExists("a tenant with this name, or one of these domains, already exists", "tenant.name");
  }
  throw error;
}

/**
 * Hooks run in the transaction that disables or deletes a tenant: its sessions
 * must be revoked (so that none rotates again after a re-enable) and stop
 * verifying at once.
 */
export type TenantRevokedHook = (em: EntityManager, tenantId: string) => Promise<void> | void;

export class TenantService {
  readonly #onCreated: TenantCreatedHook[] = [];
  readonly #onRevoked: TenantRevokedHook[] = [];
  readonly #users: UserService;
  readonly #options: TenantServiceOptions;

  constructor(users: UserService, options: TenantServiceOptions) {
    this.#users = users;
    this.#options = options;
  }

  async #checkIssuerGroups(em: EntityManager, tenantId: string, issuers: readonly OidcIssuerConfig[], prefix: string): Promise<void> {
    for (const [i, issuer] of issuers.entries()) {
      const missing = await this.#options.missingGroups(em, tenantId, issuer.defaultGroupIds);
      if (missing.length) throw notFound("GROUP_NOT_FOUND", `${prefix}oidc_issuers[${i}].default_group_ids: no group ${missing[0]} in this tenant`);
    }
  }

  /** Registers work that must happen in the same transaction as every tenant creation. */
  onTenantCreated(hook: TenantCreatedHook): void {
    this.#onCreated.push(hook);
  }

  /**
   * A host belongs to one tenant, whatever the ports: otherwise a tenant listing `mc.b.com:25565`
   * would take the logins of the tenant that lists `mc.b.com` (the port form wins the lookup).
   */
  async #checkDomainHosts(em: EntityManager, tenantId: string, domains: readonly string[]): Promise<void> {
    for (const [i, domain] of domains.entries()) {
      const host = domain.replace(/:\d+$/, "");
      const taken = await em.findOne(TenantDomainEntity, {
        tenant: { $ne: tenantId },
        $or: [{ domain: host }, { domain: { $like: `${host.replace(/[\\%_]/g, "\\$&")}:%` } }],
      });
      if (taken) throw alreadyExists(`the host of ${domain} belongs to another tenant`, `tenant.domains[${i}]`);
    }
  }

  onTenantRevoked(hook: TenantRevokedHook): void {
    this.#onRevoked.push(hook);
  }

  /**
   * Registers work for the users whose OpenID Connect issuer the tenant stopped trusting (removed,
   * or its client id changed), in the same transaction: their sessions came from that trust.
   */
  onIssuerUsersRevoked(hook: (em: EntityManager, tenantId: string, userIds: string[]) => Promise<void>): void {
    this.#onIssuerUsersRevoked.push(hook);
  }

  readonly #onIssuerUsersRevoked: ((em: EntityManager, tenantId: string, userIds: string[]) => Promise<void>)[] = [];

  async createTenant(
    em: EntityManager,
    fields: TenantFields,
    admin?: NewUserInput,
  ): Promise<{ tenant: TenantRecord; admin?: User }> {
    const v = new Violations();
    checkTenantFields(fields, v);
    checkOidcIssuers(fields.oidcIssuers, this.#options.oidcAllowHttpLoopback, v, "tenant.");
    // Hash the admin password (argon2, ~30 ms) before opening the transaction.
    const preparedAdmin: PreparedUser | undefined = admin ? await this.#users.prepareNewUser(admin, v, { prefix: "admin.", password: "admin.password" }) : undefined;
    v.throwIfAny();
    try {
      return await em.transactional(async (tem) => {
        const tenant = tem.create(TenantEntity, {
          id: crypto.randomUUID(),
          name: fields.name,
          displayName: fields.displayName,
          disabled: fields.disabled,
          selfRegistrationEnabled: fields.selfRegistrationEnabled,
          oidcIssuers: normalizeIssuers(fields.oidcIssuers),
        });
        await this.#checkIssuerGroups(tem, tenant.id, fields.oidcIssuers, "tenant.");
        await this.#checkDomainHosts(tem, tenant.id, fields.domains);
        for (const domain of fields.domains) tem.create(TenantDomainEntity, { domain, tenant });
        const adminUser = preparedAdmin ? tem.create(UserEntity, { ...preparedAdmin, tenant }) : undefined;
        await tem.flush();
        for (const hook of this.#onCreated) await hook(tem, tenant, adminUser);
        if (adminUser) await this.#users.userCreatedInTransaction(tem, adminUser);
        await tem.flush();
        return { tenant: await toTenantRecord(tem, tenant), admin: adminUser };
      });
    } catch (error) {
      if (preparedAdmin && violatedUniqueConstraint(error)?.startsWith("users_")) {
        throw alreadyExists("the admin username or e-mail is taken", "admin.username");
      }
      duplicateTenant(error);
    }
  }

  /** Finds a tenant by UUID or by name; throws TENANT_NOT_FOUND. */
  async findTenant(em: EntityManager, ref: { id?: string; name?: string }): Promise<Tenant> {
    const where = ref.id ? { id: ref.id } : { name: ref.name ?? "" };
    if (ref.id && !UUID.test(ref.id)) throw notFound("TENANT_NOT_FOUND", "tenant not found");
    const tenant = await em.findOne(TenantEntity, where);
    if (!tenant) throw notFound("TENANT_NOT_FOUND", "tenant not found");
    return tenant;
  }

  /**
   * The tenant whose domains hold the host of a Minecraft server address
   * (Argus namespaces): case-insensitive, the port ignored (a domain listed
   * with the very port asked wins over one with another port), a trailing dot
   * and anything after a NUL (Forge's handshake markers) dropped. Null when
   * no tenant has it.
   */
  async findTenantByServerAddress(em: EntityManager, address: string): Promise<Tenant | null> {
    const cleaned = address.split("\u0000")[0]!.trim().toLowerCase();
    const match = /^([a-z0-9.-]{1,253}?)\.?(?::(\d{1,5}))?$/.exec(cleaned);
    if (!match) return null;
    const [, host, port] = match;
    const rows = await em.find(
      TenantDomainEntity,
      { $or: [{ domain: host! }, { domain: { $like: `${host!.replace(/[\\%_]/g, "\\$&")}:%` } }] },
      { populate: ["tenant"], orderBy: { domain: "asc" }, limit: 20 },
    );
    // Never a domain listed with another port: one tenant must not capture another's logins by listing its host with a port.
    const best = rows.find((r) => port && r.domain === `${host}:${port}`) ?? rows.find((r) => r.domain === host);
    return best ? (best.tenant as Tenant) : null;
  }

  /** Resolves "name or UUID" as users type it. */
  async findTenantByNameOrId(em: EntityManager, nameOrId: string): Promise<Tenant> {
    return this.findTenant(em, UUID.test(nameOrId) ? { id: nameOrId.toLowerCase() } : { name: nameOrId });
  }

  async getTenant(em: EntityManager, ref: { id: string; name: string }): Promise<TenantRecord> {
    const v = new Violations();
    if (!ref.id === !ref.name) v.add("id", "set exactly one of id and name");
    if (ref.id) checkUuid(ref.id, "id", v);
    v.throwIfAny();
    return toTenantRecord(em, await this.findTenant(em, ref));
  }

  async listTenants(em: EntityManager, request: PageRequest & { namePrefix: string }): Promise<{ tenants: TenantRecord[]; nextPageToken: string }> {
    const v = new Violations();
    const query = { kind: "tenants", namePrefix: request.namePrefix };
    const page = readPage(request, query, v);
    v.throwIfAny();
    const name: Record<string, string> = {};
    if (request.namePrefix) name.$like = `${request.namePrefix.replace(/[\\%_]/g, "\\$&")}%`;
    if (page.after !== undefined) name.$gt = page.after;
    const rows = await em.find(TenantEntity, Object.keys(name).length ? { name } : {}, {
      orderBy: { name: "asc" },
      limit: page.limit + 1,
    });
    const { items, next } = nextPageToken(rows, page, (t) => t.name, query);
    return { tenants: await Promise.all(items.map((t) => toTenantRecord(em, t))), nextPageToken: next };
  }

  async updateTenant(em: EntityManager, id: string, patch: TenantFields, mask: string[]): Promise<TenantRecord> {
    const v = new Violations();
    checkUuid(id, "tenant.id", v);
    const fields = readUpdateMask(mask, TENANT_UPDATABLE, v);
    checkTenantFields(
      {
        name: fields.has("name") ? patch.name : undefined,
        displayName: fields.has("display_name") ? patch.displayName : undefined,
        domains: fields.has("domains") ? patch.domains : undefined,
      },
      v,
    );
    if (fields.has("oidc_issuers")) checkOidcIssuers(patch.oidcIssuers, this.#options.oidcAllowHttpLoopback, v, "tenant.");
    v.throwIfAny();
    try {
      return await em.transactional(async (tem) => {
        const tenant = await this.findTenant(tem, { id });
        if (tenant.name === SYSTEM_TENANT_NAME && ((fields.has("name") && patch.name !== tenant.name) || (fields.has("disabled") && patch.disabled))) {
          throw failedPrecondition("PROTECTED_RESOURCE", "the system tenant cannot be renamed or disabled");
        }
        if (fields.has("name")) tenant.name = patch.name;
        if (fields.has("display_name")) tenant.displayName = patch.displayName;
        const disabling = fields.has("disabled") && patch.disabled && !tenant.disabled;
        if (fields.has("disabled")) tenant.disabled = patch.disabled;
        if (fields.has("self_registration_enabled")) tenant.selfRegistrationEnabled = patch.selfRegistrationEnabled;
        let untrusted: string[] = [];
        if (fields.has("oidc_issuers")) {
          await this.#checkIssuerGroups(tem, tenant.id, patch.oidcIssuers, "tenant.");
          const next = normalizeIssuers(patch.oidcIssuers);
          // An issuer no longer trusted with the same client: the logins it vouched for end.
          untrusted = tenant.oidcIssuers.filter((old) => !next.some((n) => n.issuer === old.issuer && n.clientId === old.clientId)).map((old) => old.issuer);
          tenant.oidcIssuers = next;
        }
        if (fields.has("domains")) {
          await this.#checkDomainHosts(tem, tenant.id, patch.domains);
          await tem.nativeDelete(TenantDomainEntity, { tenant });
          for (const domain of patch.domains) tem.create(TenantDomainEntity, { domain, tenant });
        }
        tenant.updatedAt = new Date();
        await tem.flush();
        // After the tenant row is written (and locked): a login racing the disable either started its
        // session before (revoked here) or waits for this commit and starts none (SessionStore.start).
        if (disabling) for (const hook of this.#onRevoked) await hook(tem, tenant.id);
        if (untrusted.length) {
          const identities = await tem.find(ExternalIdentityEntity, { tenant: tenant.id, issuer: { $in: untrusted } }, { fields: ["user"] });
          const userIds = identities.map((i) => refKey(i.user));
          if (userIds.length) for (const hook of this.#onIssuerUsersRevoked) await hook(tem, tenant.id, userIds);
        }
        await tem.flush();
        return toTenantRecord(tem, tenant);
      });
    } catch (error) {
      duplicateTenant(error);
    }
  }

  async deleteTenant(em: EntityManager, id: string): Promise<void> {
    const v = new Violations();
    checkUuid(id, "id", v);
    v.throwIfAny();
    await em.transactional(async (tem) => {
      const tenant = await this.findTenant(tem, { id });
      if (tenant.name === SYSTEM_TENANT_NAME) {
        throw failedPrecondition("PROTECTED_RESOURCE", "the system tenant cannot be deleted");
      }
      // Rows of the tenant's users, domains and (later) sessions go with it by ON DELETE CASCADE.
      for (const hook of this.#onRevoked) await hook(tem, tenant.id);
      await tem.nativeDelete(TenantEntity, { id: tenant.id });
    });
  }
}
