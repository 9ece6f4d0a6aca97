// Permissions: the global catalogue that microservices register (OpenMatchmaking),
// and per-tenant groups that grant permission patterns to users. No gRPC here.
import { LockMode, type EntityManager } from "@mikro-orm/core";
import { alreadyExists, failedPrecondition, notFound, permissionDenied, Violations } from "../errors.ts";
import { isUniqueViolation } from "../db/errors.ts";
import { refKey } from "../db/refs.ts";
import { nextPageToken, readPage, type PageRequest } from "../shared/pagination.ts";
import { checkMaxLength, checkUuid, UUID, readUpdateMask } from "../shared/validation.ts";
import type { Tenant } from "../tenants/index.ts";
import { UserEntity, type User } from "../users/index.ts";
import { recordRevocation } from "../events/index.ts";
import { IDENTITY_MICROSERVICE } from "./identity-permissions.ts";
import { anyPatternMatches, checkPatternList, isPermissionPattern, patternMatches } from "./match.ts";
import { GroupEntity, GroupMemberEntity, MicroserviceEntity, PermissionEntity, type Group, type Microservice } from "./permission.entity.ts";
import { grantedPatterns } from "./grants.ts";

export const MICROSERVICE_NAME = /^[a-z][a-z0-9.-]*$/;
export const VERSION = /^\d+\.\d+\.\d+$/;
const SEGMENT = /^[a-z][a-z0-9_-]*$/;
const MAX_PERMISSIONS = 1000;

/** The default group every new tenant gets, as OpenMatchmaking's "Game client". */
export const GAME_CLIENT_GROUP = { name: "Game client", autoGrant: ["*.*.retrieve", "*.*.update"] };

export interface PermissionSpec {
  codename: string;
  description: string;
}

export interface Registration {
  name: string;
  version: string;
  permissions: PermissionSpec[];
}

export interface RegistrationResult {
  microservice: Microservice;
  permissions: PermissionSpec[];
  changed: boolean;
  removed: string[];
}

export interface GroupFields {
  name: string;
  description: string;
  permissions: string[];
  isDefault: boolean;
  autoGrantPatterns: string[];
}

export const GROUP_UPDATABLE = ["name", "description", "permissions", "default", "auto_grant_patterns"] as const;

/**
 * Auto-grant attaches newly registered permissions to groups by pattern, but
 * never Tessera's own `identity.*` permissions: otherwise the default
 * "Game client" group's `*.*.update` would let self-registered players update
 * users. Administrators grant `identity.*` explicitly.
 */
export function autoGrantable(codename: string, patterns: readonly string[]): boolean {
  return !codename.startsWith(`${IDENTITY_MICROSERVICE}.`) && anyPatternMatches(patterns, codename);
}

/** Validates a registration exactly the same way for gRPC and AMQP. */
export function validateRegistration(input: Registration): void {
  const v = new Violations();
  if (!MICROSERVICE_NAME.test(input.name) || input.name.length > 100) v.add("name", "must match ^[a-z][a-z0-9.-]*$ (at most 100 characters)");
  if (!VERSION.test(input.version) || input.version.length > 64) v.add("version", "must match ^\\d+\\.\\d+\\.\\d+$");
  if (input.permissions.length > MAX_PERMISSIONS) {
    v.add("permissions", `must have at most ${MAX_PERMISSIONS} entries`);
    v.throwIfAny();
  }
  const seen = new Set<string>();
  input.permissions.forEach((p, i) => {
    if (v.full) return;
    const field = `permissions[${i}].codename`;
    const rest = p.codename.startsWith(`${input.name}.`) ? p.codename.slice(input.name.length + 1).split(".") : undefined;
    if (!rest) v.add(field, `must start with the microservice name "${input.name}."`);
    else if (rest.length !== 2 || !rest.every((s) => SEGMENT.test(s))) v.add(field, `must be "${input.name}.{resource}.{action}" with resource and action matching ^[a-z][a-z0-9_-]*$`);
    else if (seen.has(p.codename)) v.add(field, "is listed twice");
    seen.add(p.codename);
    if (p.description.length > 500) v.add(`permissions[${i}].description`, "must be at most 500 characters");
  });
  v.throwIfAny();
  if (input.name === IDENTITY_MICROSERVICE) throw permissionDenied(`the microservice name "${IDENTITY_MICROSERVICE}" is reserved for Tessera`);
}

const MAX_GROUP_PATTERNS = 500;

function checkGroupFields(fields: Partial<GroupFields>, v: Violations): void {
  if (fields.name !== undefined && (fields.name.trim().length === 0 || [...fields.name].length > 100)) v.add("group.name", "must be 1-100 characters");
  if (fields.description !== undefined) checkMaxLength(fields.description, 500, "group.description", v);
  if (fields.permissions !== undefined) checkPatternList(fields.permissions, MAX_GROUP_PATTERNS, "group.permissions", v);
  if (fields.autoGrantPatterns !== undefined) checkPatternList(fields.autoGrantPatterns, MAX_GROUP_PATTERNS, "group.auto_grant_patterns", v);
}

const uniqueSorted = (values: string[]) => [...new Set(values)].sort();

export class PermissionService {
  // ------------------------------------------------------------ catalogue

  /**
   * Registers (or re-registers) a microservice's permission set on behalf of
   * `owner` (see microserviceOwner): the first registrant of a name owns it,
   * and a registration of that name by anyone else is refused, so that one
   * service cannot strip or replace another's permissions.
   */
  async registerMicroservice(em: EntityManager, input: Registration, owner: string): Promise<RegistrationResult> {
    validateRegistration(input);
    return em.transactional(async (tem) => {
      // Serialize registrations of one microservice (several instances starting
      // at once, a new version vs. a redelivered message). A row lock needs a
      // row: a first registration inserts a placeholder (empty version) that the
      // others wait on, and only then is the row locked and read.
      await tem
        .getConnection()
        .execute(
          `insert into microservices (name, version, owner, created_at, updated_at) values (?, '', ?, now(), now()) on conflict (name) do nothing`,
          [input.name, owner],
          "run",
          tem.getTransactionContext(),
        );
      const existing = await tem.findOneOrFail(MicroserviceEntity, { name: input.name }, { lockMode: LockMode.PESSIMISTIC_WRITE });
      if (existing.owner !== null && existing.owner !== owner) {
        throw permissionDenied(`the microservice "${input.name}" was registered by another principal; only it may register new versions`);
      }
      if (existing.owner === null) existing.owner = owner; // registered before owners were recorded
      const current = await tem.find(PermissionEntity, { microservice: input.name }, { orderBy: { codename: "asc" } });
      if (existing.version === input.version) {
        return { microservice: existing, permissions: current.map(toSpec), changed: false, removed: [] };
      }
      const microservice = existing;
      microservice.version = input.version;
      microservice.updatedAt = new Date();
      await tem.flush();

      const wanted = new Map(input.permissions.map((p) => [p.codename, p.description]));
      const removed = current.filter((p) => !wanted.has(p.codename)).map((p) => p.codename);
      const added = [...wanted.keys()].filter((c) => !current.some((p) => p.codename === c));
      if (removed.length) await tem.nativeDelete(PermissionEntity, { codename: { $in: removed } });
      for (const [codename, description] of wanted) {
        await tem.upsert(PermissionEntity, { codename, microservice: input.name, description });
      }
      const changedGroups = await this.#applyCatalogueChange(tem, removed, added);
      if (removed.length || changedGroups) recordRevocation(tem, { kind: "GRANTS_CHANGED" });
      await tem.flush();
      const permissions = [...wanted].map(([codename, description]) => ({ codename, description })).sort((a, b) => a.codename.localeCompare(b.codename));
      return { microservice, permissions, changed: true, removed: removed.sort() };
    });
  }

  /** Drops removed codenames from every group of every tenant and auto-grants added ones. */
  async #applyCatalogueChange(em: EntityManager, removed: string[], added: string[]): Promise<number> {
    if (!removed.length && !added.length) return 0;
    const groups = await em.find(GroupEntity, {});
    let changed = 0;
    for (const group of groups) {
      const kept = group.permissions.filter((p) => !removed.includes(p));
      const granted = added.filter((c) => autoGrantable(c, group.autoGrantPatterns) && !kept.includes(c));
      if (kept.length !== group.permissions.length || granted.length) {
        group.permissions = uniqueSorted([...kept, ...granted]);
        group.updatedAt = new Date();
        changed++;
      }
    }
    return changed;
  }

  async listMicroservices(em: EntityManager, request: PageRequest): Promise<{ items: { microservice: Microservice; permissions: PermissionSpec[] }[]; nextPageToken: string }> {
    const v = new Violations();
    const query = { kind: "microservices" };
    const page = readPage(request, query, v);
    v.throwIfAny();
    const rows = await em.find(MicroserviceEntity, page.after ? { name: { $gt: page.after } } : {}, { orderBy: { name: "asc" }, limit: page.limit + 1 });
    const { items, next } = nextPageToken(rows, page, (m) => m.name, query);
    const permissions = items.length ? await em.find(PermissionEntity, { microservice: { $in: items.map((m) => m.name) } }, { orderBy: { codename: "asc" } }) : [];
    return {
      items: items.map((microservice) => ({
        microservice,
        permissions: permissions.filter((p) => refKey(p.microservice, "name") === microservice.name).map(toSpec),
      })),
      nextPageToken: next,
    };
  }

  async listPermissions(em: EntityManager, request: PageRequest & { filter: string }): Promise<{ permissions: PermissionSpec[]; nextPageToken: string }> {
    const v = new Violations();
    if (request.filter && !isPermissionPattern(request.filter)) v.add("filter", "must be a permission pattern, `*` allowed per segment");
    const query = { kind: "permissions", filter: request.filter };
    const page = readPage(request, query, v, 100);
    v.throwIfAny();
    // Patterns are matched in memory; the catalogue is small (hundreds of codenames).
    const all = await em.find(PermissionEntity, page.after ? { codename: { $gt: page.after } } : {}, { orderBy: { codename: "asc" } });
    const matching = request.filter ? all.filter((p) => patternMatches(request.filter, p.codename)) : all;
    const { items, next } = nextPageToken(matching.slice(0, page.limit + 1), page, (p) => p.codename, query);
    return { permissions: items.map(toSpec), nextPageToken: next };
  }

  // --------------------------------------------------------------- groups

  async findGroup(em: EntityManager, tenantId: string, ref: { id?: string; name?: string }): Promise<Group> {
    if (ref.id !== undefined && !UUID.test(ref.id)) throw notFound("GROUP_NOT_FOUND", "group not found");
    const group = await em.findOne(GroupEntity, ref.id ? { id: ref.id, tenant: tenantId } : { name: ref.name ?? "", tenant: tenantId });
    if (!group) throw notFound("GROUP_NOT_FOUND", "group not found");
    return group;
  }

  async memberCount(em: EntityManager, group: Group): Promise<number> {
    return em.count(GroupMemberEntity, { group: group.id });
  }

  async createGroup(em: EntityManager, tenantId: string, fields: GroupFields): Promise<Group> {
    const v = new Violations();
    checkGroupFields(fields, v);
    v.throwIfAny();
    try {
      return await em.transactional(async (tem) => {
        const group = tem.create(GroupEntity, {
          id: crypto.randomUUID(),
          tenant: tenantId,
          name: fields.name,
          description: fields.description,
          permissions: uniqueSorted(fields.permissions),
          isDefault: fields.isDefault,
          autoGrantPatterns: uniqueSorted(fields.autoGrantPatterns),
          protected: false,
        });
        await tem.flush();
        return group;
      });
    } catch (error) {
      if (isUniqueViolation(error)) throw alreadyExists("a group with this name already exists in the tenant", "group.name");
      throw error;
    }
  }

  async listGroups(em: EntityManager, tenantId: string, request: PageRequest): Promise<{ groups: Group[]; nextPageToken: string }> {
    const v = new Violations();
    const query = { kind: "groups", tenantId };
    const page = readPage(request, query, v);
    v.throwIfAny();
    const where: Record<string, unknown> = { tenant: tenantId };
    if (page.after !== undefined) where.name = { $gt: page.after };
    const rows = await em.find(GroupEntity, where, { orderBy: { name: "asc" }, limit: page.limit + 1 });
    const { items, next } = nextPageToken(rows, page, (g) => g.name, query);
    return { groups: items, nextPageToken: next };
  }

  async updateGroup(em: EntityManager, tenantId: string, id: string, patch: GroupFields, mask: string[]): Promise<Group> {
    const v = new Violations();
    checkUuid(id, "group.id", v);
    const fields = readUpdateMask(mask, GROUP_UPDATABLE, v);
    checkGroupFields(
      {
        name: fields.has("name") ? patch.name : undefined,
        description: fields.has("description") ? patch.description : undefined,
        permissions: fields.has("permissions") ? patch.permissions : undefined,
        autoGrantPatterns: fields.has("auto_grant_patterns") ? patch.autoGrantPatterns : undefined,
      },
      v,
    );
    v.throwIfAny();
    try {
      return await em.transactional(async (tem) => {
        const group = await this.findGroup(tem, tenantId, { id });
        if (group.protected && (fields.has("name") || fields.has("permissions"))) {
          throw failedPrecondition("PROTECTED_RESOURCE", "the system administrators group keeps its name and permissions");
        }
        if (fields.has("name")) group.name = patch.name;
        if (fields.has("description")) group.description = patch.description;
        if (fields.has("permissions")) group.permissions = uniqueSorted(patch.permissions);
        if (fields.has("default")) group.isDefault = patch.isDefault;
        if (fields.has("auto_grant_patterns")) group.autoGrantPatterns = uniqueSorted(patch.autoGrantPatterns);
        group.updatedAt = new Date();
        if (fields.has("permissions")) recordRevocation(tem, { kind: "GRANTS_CHANGED", tenantId });
        await tem.flush();
        return group;
      });
    } catch (error) {
      if (isUniqueViolation(error)) throw alreadyExists("a group with this name already exists in the tenant", "group.name");
      throw error;
    }
  }

  async deleteGroup(em: EntityManager, tenantId: string, id: string): Promise<void> {
    const v = new Violations();
    checkUuid(id, "id", v);
    v.throwIfAny();
    await em.transactional(async (tem) => {
      const group = await this.findGroup(tem, tenantId, { id });
      if (group.protected) throw failedPrecondition("PROTECTED_RESOURCE", "the system administrators group cannot be deleted");
      await tem.nativeDelete(GroupEntity, { id: group.id });
      recordRevocation(tem, { kind: "GRANTS_CHANGED", tenantId });
    });
  }

  async #members(em: EntityManager, tenantId: string, userIds: string[], v: Violations): Promise<User[]> {
    if (userIds.length === 0) v.add("user_ids", "at least one user");
    if (userIds.length > 1000) v.add("user_ids", "must have at most 1000 entries");
    else for (let i = 0; i < userIds.length && !v.full; i++) checkUuid(userIds[i]!, `user_ids[${i}]`, v);
    v.throwIfAny();
    const unique = [...new Set(userIds)];
    const users = await em.find(UserEntity, { id: { $in: unique }, tenant: tenantId });
    if (users.length !== unique.length) throw notFound("USER_NOT_FOUND", "a user is not in this tenant");
    return users;
  }

  async addMembers(em: EntityManager, tenantId: string, groupId: string, userIds: string[]): Promise<void> {
    const v = new Violations();
    checkUuid(groupId, "group_id", v);
    await em.transactional(async (tem) => {
      const users = await this.#members(tem, tenantId, userIds, v);
      const group = await this.findGroup(tem, tenantId, { id: groupId });
      const existing = new Set((await tem.find(GroupMemberEntity, { group: group.id })).map((m) => refKey(m.user)));
      for (const user of users) if (!existing.has(user.id)) tem.create(GroupMemberEntity, { group, user });
      recordRevocation(tem, { kind: "GRANTS_CHANGED", tenantId });
    });
  }

  async removeMembers(em: EntityManager, tenantId: string, groupId: string, userIds: string[]): Promise<void> {
    const v = new Violations();
    checkUuid(groupId, "group_id", v);
    await em.transactional(async (tem) => {
      const users = await this.#members(tem, tenantId, userIds, v);
      const group = await this.findGroup(tem, tenantId, { id: groupId });
      if (group.protected) {
        const remaining = await tem.count(GroupMemberEntity, { group: group.id, user: { $nin: users.map((u) => u.id) } });
        if (remaining === 0) throw failedPrecondition("PROTECTED_RESOURCE", "the system administrators group must keep at least one member");
      }
      await tem.nativeDelete(GroupMemberEntity, { group: group.id, user: { $in: users.map((u) => u.id) } });
      recordRevocation(tem, { kind: "GRANTS_CHANGED", tenantId });
    });
  }

  async groupsOf(em: EntityManager, userId: string): Promise<Group[]> {
    const memberships = await em.find(GroupMemberEntity, { user: userId }, { populate: ["group"], orderBy: { group: { name: "asc" } } });
    return memberships.map((m) => m.group);
  }

  /** Registered codenames the user's grants cover, and the raw grants. */
  async effectivePermissions(em: EntityManager, tenantId: string, userId: string): Promise<{ permissions: string[]; grants: string[] }> {
    if (!UUID.test(userId) || !(await em.findOne(UserEntity, { id: userId, tenant: tenantId }))) throw notFound("USER_NOT_FOUND", "user not found");
    const grants = await grantedPatterns(em, userId);
    const catalogue = await em.find(PermissionEntity, {}, { orderBy: { codename: "asc" } });
    return { permissions: catalogue.filter((p) => anyPatternMatches(grants, p.codename)).map((p) => p.codename), grants };
  }

  // -------------------------------------------------------- tenant/user hooks

  /** Every new tenant gets the "Game client" default group (OpenMatchmaking); tenants may change or delete it. */
  async createDefaultGroups(em: EntityManager, tenant: Tenant): Promise<void> {
    const catalogue = await em.find(PermissionEntity, {}, { orderBy: { codename: "asc" } });
    em.create(GroupEntity, {
      id: crypto.randomUUID(),
      tenant,
      name: GAME_CLIENT_GROUP.name,
      description: "Default group: new users join it; newly registered *.*.retrieve and *.*.update permissions are granted to it",
      permissions: catalogue.filter((p) => autoGrantable(p.codename, GAME_CLIENT_GROUP.autoGrant)).map((p) => p.codename),
      isDefault: true,
      autoGrantPatterns: [...GAME_CLIENT_GROUP.autoGrant],
      protected: false,
    });
  }

  /** New users join their tenant's default groups. */
  async joinDefaultGroups(em: EntityManager, user: User): Promise<void> {
    const tenantId = refKey(user.tenant);
    const defaults = await em.find(GroupEntity, { tenant: tenantId, isDefault: true });
    for (const group of defaults) em.create(GroupMemberEntity, { group, user });
  }

  /** Adds a new user (not yet a member of any of them) to these groups of its tenant; ids of no such group are skipped. */
  async joinGroups(em: EntityManager, user: User, groupIds: readonly string[]): Promise<void> {
    const ids = groupIds.filter((id) => UUID.test(id));
    if (ids.length === 0) return;
    const groups = await em.find(GroupEntity, { tenant: refKey(user.tenant), id: { $in: ids } });
    if (groups.length === 0) return;
    const already = new Set((await em.find(GroupMemberEntity, { user, group: { $in: groups } })).map((m) => refKey(m.group)));
    for (const group of groups) if (!already.has(group.id)) em.create(GroupMemberEntity, { group, user });
  }

  /** The ids among `groupIds` that are not groups of the tenant. */
  async missingGroups(em: EntityManager, tenantId: string, groupIds: readonly string[]): Promise<string[]> {
    const ids = groupIds.filter((id) => UUID.test(id));
    const found = new Set(ids.length ? (await em.find(GroupEntity, { tenant: tenantId, id: { $in: ids } })).map((g) => g.id) : []);
    return groupIds.filter((id) => !found.has(id));
  }
}

function toSpec(p: { codename: string; description: string }): PermissionSpec {
  return { codename: p.codename, description: p.description };
}
