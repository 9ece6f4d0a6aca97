// User management: the domain face of users. No gRPC here.
import type { EntityManager } from "@mikro-orm/core";
import { alreadyExists, failedPrecondition, notFound, permissionDenied, unauthenticated, Violations } from "../errors.ts";
import { isUniqueViolation, violatedUniqueConstraint } from "../db/errors.ts";
import { nextPageToken, readPage, type PageRequest } from "../shared/pagination.ts";
import { checkMaxLength, checkPattern, checkUuid, EMAIL, foldKey, USERNAME, UUID, readUpdateMask } from "../shared/validation.ts";
import { TenantEntity, type Tenant } from "../tenants/index.ts";
import { createHash, randomBytes } from "node:crypto";
import { ExternalIdentityEntity, UserEntity, type User } from "./user.entity.ts";
import type { PasswordHasher, PasswordPolicy } from "./password.ts";
import { RateLimit, throttleKey, type LoginThrottle } from "../throttling/index.ts";

export interface NewUserInput {
  username: string;
  email: string;
  displayName?: string;
  password: string;
}

/** A validated user with its password already hashed, ready to insert. */
export interface PreparedUser {
  id: string;
  username: string;
  usernameKey: string;
  email: string | null;
  emailKey: string | null;
  displayName: string;
  passwordHash: string;
}

export const USER_UPDATABLE = ["username", "email", "display_name", "disabled"] as const;
type UserUpdatableField = (typeof USER_UPDATABLE)[number];

export interface UserPatch {
  username: string;
  email: string;
  displayName: string;
  disabled: boolean;
}

/** Work other domains attach to user lifecycle events, run in the same transaction. */
export interface UserHooks {
  /** A user was created (e.g. join the tenant's default groups). */
  created?(em: EntityManager, user: User): Promise<void>;
  /** A user was disabled or is about to be deleted: its sessions must die now. */
  revoked?(em: EntityManager, user: User, why: "disabled" | "deleted" | "password_changed"): Promise<void>;
}

function checkUserFields(fields: { username?: string; email?: string; displayName?: string }, v: Violations, prefix: string): void {
  if (fields.username !== undefined) {
    checkPattern(fields.username, USERNAME, `${prefix}username`, "must be 1-64 characters of letters, digits and ._- (no @)", v);
  }
  if (fields.email) {
    if (fields.email.length > 254 || !EMAIL.test(fields.email)) v.add(`${prefix}email`, "must be an e-mail address");
  }
  if (fields.displayName !== undefined) checkMaxLength(fields.displayName, 200, `${prefix}display_name`, v);
}

/** What UserService needs to handle passwords and to throttle the calls that hash them. */
export interface UserServiceDeps {
  hasher: PasswordHasher;
  policy: PasswordPolicy;
  /** Counts wrong current passwords of SetPassword against the account, like failed logins. */
  loginThrottle: LoginThrottle;
  /** Self-registrations per caller address and per tenant (absent = unlimited). */
  registrationsPerAddress?: RateLimit;
  registrationsPerTenant?: RateLimit;
}

/** The throttling identity of an account: the same key for logins and password changes. */
export function accountThrottleKey(userId: string): string {
  return throttleKey("user", userId);
}

/** A unique violation of the users table, named by its constraint: which of the fields is taken. */
function duplicateUser(error: unknown): never {
  const constraint = violatedUniqueConstraint(error);
  if (constraint === "users_tenant_id_email_key_unique") throw alreadyExists("a user with this e-mail already exists in the tenant", "user.email");
  if (constraint !== undefined || isUniqueViolation(error)) throw alreadyExists("a user with this username already exists in the tenant", "user.username");
  throw error;
}

/** A user's identity at a remote authentication system, as a verified remote login gives it. */
export interface ExternalIdentityInput {
  /** "minecraft", or an OpenID Connect issuer URL. */
  issuer: string;
  /** The stable id there: a Minecraft UUID, an OpenID Connect `sub`. */
  subject: string;
  /** The current, changeable name there. */
  name: string;
  /** What follows '@' in the username: "minecraft", the issuer's host. */
  usernameSuffix: string;
}

/**
 * The username of a remote user: `<name>@<suffix>`, at most 64 characters.
 * Password users' usernames cannot contain '@', so the two never collide.
 * When another remote user holds the name (a Minecraft name that changed
 * hands, say), a short hash of the identity makes it unique.
 */
function externalUsername(identity: ExternalIdentityInput, disambiguate?: "identity" | "random"): string {
  const suffix = `@${identity.usernameSuffix}`.slice(0, 40);
  const tagOf = disambiguate === "random" ? randomBytes(4) : createHash("sha256").update(`${identity.issuer}\u0000${identity.subject}`).digest();
  const tag = disambiguate ? `~${tagOf.toString("hex").slice(0, 8)}` : "";
  // '~' and '@' are the username's own separators; a remote name does not bring its own.
  const chars = [...identity.name.replace(/[\s\p{C}~@]/gu, "")].slice(0, 64 - suffix.length - tag.length);
  // The case-folded key has a 64-character column too, and folding can lengthen a name (ß → ss).
  while (chars.length > 0 && foldKey(`${chars.join("")}${tag}${suffix}`).length > 64) chars.pop();
  return `${chars.join("") || "user"}${tag}${suffix}`;
}

export class UserService {
  readonly #hooks: UserHooks[] = [];
  readonly #deps: UserServiceDeps;

  constructor(deps: UserServiceDeps) {
    this.#deps = deps;
  }

  /**
   * Validates a new user into `v`; when valid, hashes its password. Returns
   * undefined when `v` holds violations (no hashing is wasted on bad input).
   */
  async prepareNewUser(input: NewUserInput, v: Violations, fieldNames: { prefix: string; password: string }): Promise<PreparedUser | undefined> {
    checkUserFields(input, v, fieldNames.prefix);
    await this.#deps.policy.check(input.password, fieldNames.password, v, { username: input.username, email: input.email });
    if (!v.empty) return undefined;
    return {
      id: crypto.randomUUID(),
      username: input.username,
      usernameKey: foldKey(input.username),
      email: input.email || null,
      emailKey: input.email ? foldKey(input.email) : null,
      displayName: input.displayName ?? "",
      passwordHash: await this.#deps.hasher.hash(input.password),
    };
  }

  addHooks(hooks: UserHooks): void {
    this.#hooks.push(hooks);
  }

  async #requireTenant(em: EntityManager, tenantId: string): Promise<Tenant> {
    const tenant = UUID.test(tenantId) ? await em.findOne(TenantEntity, { id: tenantId }) : null;
    if (!tenant) throw notFound("TENANT_NOT_FOUND", "tenant not found");
    return tenant;
  }

  async #insert(em: EntityManager, tenant: Tenant, prepared: PreparedUser): Promise<User> {
    try {
      return await em.transactional(async (tem) => {
        const user = tem.create(UserEntity, { ...prepared, tenant });
        await tem.flush();
        for (const hooks of this.#hooks) await hooks.created?.(tem, user);
        await tem.flush();
        return user;
      });
    } catch (error) {
      duplicateUser(error);
    }
  }

  async createUser(em: EntityManager, tenantId: string, input: NewUserInput): Promise<User> {
    const v = new Violations();
    const prepared = await this.prepareNewUser(input, v, { prefix: "user.", password: "password" });
    v.throwIfAny();
    return this.#insert(em, await this.#requireTenant(em, tenantId), prepared!);
  }

  /**
   * The user of a verified remote login, found by (tenant, issuer, subject),
   * never by name. Created at the first login (with the creation hooks: the
   * tenant's default groups; `onCreated` adds more in the same transaction);
   * renamed when the remote name changed. Two first logins at once create one
   * user: the loser of the insert race finds the winner's.
   */
  async provisionExternal(
    em: EntityManager,
    tenant: Tenant,
    identity: ExternalIdentityInput,
    onCreated?: (em: EntityManager, user: User) => Promise<void>,
  ): Promise<User> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await em.transactional(async (tem) => {
          const key = { tenant: tenant.id, issuer: identity.issuer, subject: identity.subject };
          const name = identity.name.slice(0, 255);
          const known = await tem.findOne(ExternalIdentityEntity, key, { populate: ["user"] });
          const now = new Date();
          if (known) {
            const user = known.user as User;
            known.lastLoginAt = now;
            if (known.name !== name) {
              known.name = name;
              user.username = await this.#freeExternalUsername(tem, tenant.id, identity, user.id);
              user.usernameKey = foldKey(user.username);
              user.updatedAt = now;
            }
            await tem.flush();
            return user;
          }
          const username = await this.#freeExternalUsername(tem, tenant.id, identity);
          const user = tem.create(UserEntity, {
            id: crypto.randomUUID(),
            tenant,
            username,
            usernameKey: foldKey(username),
            email: null,
            emailKey: null,
            displayName: identity.name.slice(0, 200),
            passwordHash: null,
          });
          tem.create(ExternalIdentityEntity, { ...key, tenant, user, name });
          await tem.flush();
          await this.userCreatedInTransaction(tem, user);
          await onCreated?.(tem, user);
          await tem.flush();
          return user;
        });
      } catch (error) {
        if (attempt === 0 && isUniqueViolation(error)) continue;
        throw error;
      }
    }
  }

  async #freeExternalUsername(em: EntityManager, tenantId: string, identity: ExternalIdentityInput, ownId?: string): Promise<string> {
    // The plain name, else with a tag of the identity, else (the tagged name squatted too) with a random one.
    for (const tag of [undefined, "identity", "random"] as const) {
      const wanted = externalUsername(identity, tag);
      const holder = await em.findOne(UserEntity, { tenant: tenantId, usernameKey: foldKey(wanted) }, { fields: ["id"] });
      if (!holder || holder.id === ownId) return wanted;
    }
    return externalUsername(identity, "random");
  }

  /** Runs the tenant-creation path's hooks for a user created inside that transaction. */
  async userCreatedInTransaction(em: EntityManager, user: User): Promise<void> {
    for (const hooks of this.#hooks) await hooks.created?.(em, user);
  }

  async findUser(em: EntityManager, tenantId: string, ref: { id?: string; username?: string }): Promise<User> {
    if (ref.id !== undefined && !UUID.test(ref.id)) throw notFound("USER_NOT_FOUND", "user not found");
    const where = ref.id ? { id: ref.id, tenant: tenantId } : { usernameKey: foldKey(ref.username ?? ""), tenant: tenantId };
    const user = await em.findOne(UserEntity, where);
    if (!user) throw notFound("USER_NOT_FOUND", "user not found");
    return user;
  }

  async getUser(em: EntityManager, tenantId: string, ref: { id: string; username: string }): Promise<User> {
    const v = new Violations();
    if (!ref.id === !ref.username) v.add("id", "set exactly one of id and username");
    if (ref.id) checkUuid(ref.id, "id", v);
    v.throwIfAny();
    await this.#requireTenant(em, tenantId);
    return this.findUser(em, tenantId, ref.id ? { id: ref.id } : { username: ref.username });
  }

  async listUsers(
    em: EntityManager,
    tenantId: string,
    request: PageRequest & { usernamePrefix: string; emailPrefix: string },
  ): Promise<{ users: User[]; nextPageToken: string }> {
    const v = new Violations();
    const query = { kind: "users", tenantId, u: request.usernamePrefix, e: request.emailPrefix };
    const page = readPage(request, query, v);
    if (request.usernamePrefix.length > 64) v.add("username_prefix", "must be at most 64 characters");
    if (request.emailPrefix.length > 254) v.add("email_prefix", "must be at most 254 characters");
    v.throwIfAny();
    await this.#requireTenant(em, tenantId);
    const like = (prefix: string) => `${foldKey(prefix).replace(/[\\%_]/g, "\\$&")}%`;
    const usernameKey: Record<string, string> = {};
    if (request.usernamePrefix) usernameKey.$like = like(request.usernamePrefix);
    if (page.after !== undefined) usernameKey.$gt = page.after;
    const where: Record<string, unknown> = { tenant: tenantId };
    if (Object.keys(usernameKey).length) where.usernameKey = usernameKey;
    if (request.emailPrefix) where.emailKey = { $like: like(request.emailPrefix) };
    const rows = await em.find(UserEntity, where, { orderBy: { usernameKey: "asc" }, limit: page.limit + 1 });
    const { items, next } = nextPageToken(rows, page, (u) => u.usernameKey, query);
    return { users: items, nextPageToken: next };
  }

  async updateUser(em: EntityManager, tenantId: string, id: string, patch: UserPatch, mask: string[]): Promise<User> {
    const v = new Violations();
    checkUuid(id, "user.id", v);
    const fields = readUpdateMask(mask, USER_UPDATABLE, v);
    checkUserFields(
      {
        username: fields.has("username") ? patch.username : undefined,
        email: fields.has("email") ? patch.email : undefined,
        displayName: fields.has("display_name") ? patch.displayName : undefined,
      },
      v,
      "user.",
    );
    v.throwIfAny();
    try {
      return await em.transactional(async (tem) => {
        const user = await this.findUser(tem, tenantId, { id });
        if (fields.has("disabled") && patch.disabled && user.protected) {
          throw failedPrecondition("PROTECTED_RESOURCE", "the bootstrap administrator cannot be disabled");
        }
        const disabling = fields.has("disabled") && patch.disabled && !user.disabled;
        if (fields.has("username")) {
          user.username = patch.username;
          user.usernameKey = foldKey(patch.username);
        }
        if (fields.has("email")) {
          user.email = patch.email || null;
          user.emailKey = patch.email ? foldKey(patch.email) : null;
        }
        if (fields.has("display_name")) user.displayName = patch.displayName;
        if (fields.has("disabled")) user.disabled = patch.disabled;
        user.updatedAt = new Date();
        await tem.flush();
        if (disabling) for (const hooks of this.#hooks) await hooks.revoked?.(tem, user, "disabled");
        await tem.flush();
        return user;
      });
    } catch (error) {
      duplicateUser(error);
    }
  }

  async deleteUser(em: EntityManager, tenantId: string, id: string): Promise<void> {
    const v = new Violations();
    checkUuid(id, "id", v);
    v.throwIfAny();
    await em.transactional(async (tem) => {
      const user = await this.findUser(tem, tenantId, { id });
      if (user.protected) throw failedPrecondition("PROTECTED_RESOURCE", "the bootstrap administrator cannot be deleted");
      for (const hooks of this.#hooks) await hooks.revoked?.(tem, user, "deleted");
      await tem.nativeDelete(UserEntity, { id: user.id });
    });
  }

  /**
   * Sets a password. With `asAdmin` no current password is needed; otherwise
   * `currentPassword` must verify (a user changing its own password), and a
   * wrong one counts against the account like a failed login from `address`.
   */
  async setPassword(
    em: EntityManager,
    tenantId: string,
    id: string,
    passwords: { newPassword: string; currentPassword: string },
    options: { asAdmin: boolean; address: string },
  ): Promise<void> {
    const v = new Violations();
    checkUuid(id, "id", v);
    if (!options.asAdmin && !passwords.currentPassword) v.add("current_password", "is required to change your own password");
    v.throwIfAny();
    const user = await this.findUser(em, tenantId, { id });
    await this.#deps.policy.check(passwords.newPassword, "new_password", v, { username: user.username, email: user.email ?? undefined });
    v.throwIfAny();
    if (!options.asAdmin) {
      const { passwordHash } = await em.findOneOrFail(UserEntity, { id: user.id }, { fields: ["passwordHash"] });
      const ok = await this.#deps.loginThrottle.attempt(accountThrottleKey(user.id), options.address, () =>
        passwordHash ? this.#deps.hasher.verify(passwordHash, passwords.currentPassword) : this.#deps.hasher.verifyNobody(passwords.currentPassword),
      );
      if (!ok) throw unauthenticated("INVALID_CREDENTIALS", "the current password is wrong");
    }
    const passwordHash = await this.#deps.hasher.hash(passwords.newPassword);
    // A new password ends every session: whoever held the old one (or a stolen
    // refresh token) must not keep refreshing. The caller logs in again.
    await em.transactional(async (tem) => {
      await tem.nativeUpdate(UserEntity, { id: user.id }, { passwordHash, updatedAt: new Date() });
      for (const hooks of this.#hooks) await hooks.revoked?.(tem, user, "password_changed");
      await tem.flush();
    });
  }

  /**
   * Self-signup into a tenant that allows it; the user joins the default
   * groups. Throttled per caller address and per tenant before any hashing.
   */
  async registerUser(
    em: EntityManager,
    tenant: Tenant,
    input: NewUserInput & { passwordConfirmation: string },
    address: string,
  ): Promise<User> {
    if (!tenant.selfRegistrationEnabled || tenant.disabled) {
      throw permissionDenied("this tenant does not allow self-registration", "SELF_REGISTRATION_DISABLED");
    }
    const v = new Violations();
    if (input.password !== input.passwordConfirmation) {
      v.add("password_confirmation", "must equal password", "PASSWORD_MISMATCH");
    }
    checkUserFields(input, v, "");
    v.throwIfAny();
    await RateLimit.takeAll(
      [
        [this.#deps.registrationsPerAddress, throttleKey("address", address)],
        [this.#deps.registrationsPerTenant, throttleKey("tenant", tenant.id)],
      ],
      "self-registrations",
    );
    const prepared = await this.prepareNewUser(input, v, { prefix: "", password: "password" });
    v.throwIfAny();
    return this.#insert(em, tenant, prepared!);
  }
}
