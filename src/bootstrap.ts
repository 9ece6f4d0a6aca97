// First start: the `system` tenant, its protected administrators group and the
// bootstrap admin, and Tessera's own permissions in the catalogue. Idempotent,
// and safe when several replicas start at once.
import { randomBytes } from "node:crypto";
import type { EntityManager } from "@mikro-orm/core";
import type { Logger } from "pino";
import { isUniqueViolation } from "./db/errors.ts";
import { createAdminGroup, IDENTITY_MICROSERVICE, IDENTITY_PERMISSIONS, MicroserviceEntity, PermissionEntity } from "./permissions/index.ts";
import { TenantEntity, type Tenant } from "./tenants/index.ts";
import { SYSTEM_TENANT_NAME } from "./tenants/index.ts";
import { UserEntity, type User } from "./users/index.ts";
import { hashPassword } from "./users/index.ts";
import { foldKey } from "./shared/validation.ts";

/** Bumped whenever IDENTITY_PERMISSIONS changes, so that starting replicas re-register them. */
export const IDENTITY_VERSION = "1.1.0";

export interface BootstrapResult {
  /** Set only when this start created the admin. */
  createdAdmin?: { username: string; generatedPassword?: string };
}

async function registerIdentityPermissions(em: EntityManager): Promise<void> {
  const existing = await em.findOne(MicroserviceEntity, { name: IDENTITY_MICROSERVICE });
  if (existing?.version === IDENTITY_VERSION) return;
  await em.transactional(async (tem) => {
    const service = existing ? tem.merge(existing) : tem.create(MicroserviceEntity, { name: IDENTITY_MICROSERVICE, version: IDENTITY_VERSION });
    service.version = IDENTITY_VERSION;
    await tem.flush();
    await tem.nativeDelete(PermissionEntity, { microservice: IDENTITY_MICROSERVICE, codename: { $nin: Object.keys(IDENTITY_PERMISSIONS) } });
    for (const [codename, description] of Object.entries(IDENTITY_PERMISSIONS)) {
      await tem.upsert(PermissionEntity, { codename, microservice: IDENTITY_MICROSERVICE, description });
    }
  });
}

export async function bootstrap(em: EntityManager, admin: { username: string; password?: string }): Promise<BootstrapResult> {
  try {
    await registerIdentityPermissions(em.fork());
  } catch (error) {
    if (!isUniqueViolation(error)) throw error; // another replica did it
  }
  if (await em.fork().findOne(TenantEntity, { name: SYSTEM_TENANT_NAME })) return {};
  const generatedPassword = admin.password ? undefined : randomBytes(18).toString("base64url");
  const passwordHash = await hashPassword(admin.password ?? generatedPassword!);
  try {
    await em.fork().transactional(async (tem) => {
      const tenant = tem.create(TenantEntity, {
        id: crypto.randomUUID(),
        name: SYSTEM_TENANT_NAME,
        displayName: "System",
        disabled: false,
        selfRegistrationEnabled: false,
      });
      const user = tem.create(UserEntity, {
        id: crypto.randomUUID(),
        tenant,
        username: admin.username,
        usernameKey: foldKey(admin.username),
        email: null,
        emailKey: null,
        displayName: "Administrator",
        passwordHash,
        disabled: false,
        protected: true,
      });
      createAdminGroup(tem, tenant, user, true);
    });
  } catch (error) {
    if (isUniqueViolation(error)) return {}; // another replica bootstrapped first
    throw error;
  }
  return { createdAdmin: { username: admin.username, generatedPassword } };
}

/** Tells the operator about a bootstrap administrator this start created; a generated password is shown once, on the terminal only. */
export function announceBootstrap(boot: BootstrapResult, log: Logger): void {
  if (!boot.createdAdmin) return;
  log.info({ tenant: SYSTEM_TENANT_NAME, username: boot.createdAdmin.username }, "bootstrap administrator created");
  if (boot.createdAdmin.generatedPassword) {
    // Structured logs may be shipped elsewhere: the password goes to the terminal, never through pino.
    process.stderr.write(
      `\n  Tessera bootstrap administrator (shown once):\n    tenant:   ${SYSTEM_TENANT_NAME}\n    username: ${boot.createdAdmin.username}\n    password: ${boot.createdAdmin.generatedPassword}\n  Set TESSERA_ADMIN_PASSWORD to choose it instead.\n\n`,
    );
  }
}
