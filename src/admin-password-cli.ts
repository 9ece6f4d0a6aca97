// `npm run reset-admin-password`: sets a new password for the system tenant's
// bootstrap administrator (TESSERA_ADMIN_USERNAME, default "admin") on the
// configured database, enables the account again and ends its sessions
// (verifiers see the revocation). The password comes from
// TESSERA_ADMIN_PASSWORD, or is generated and printed once. On the embedded
// database, stop the server first (PGlite is opened by one process at a time).
import { randomBytes } from "node:crypto";
import { ConfigError, loadConfig } from "./config.ts";
import { migrate, openDatabase } from "./db/orm.ts";
import { recordRevocation } from "./events/revocation-log.ts";
import { foldKey } from "./shared/validation.ts";
import { TenantEntity, SYSTEM_TENANT_NAME } from "./tenants/index.ts";
import { SessionEntity } from "./tokens/index.ts";
import { hashPassword, UserEntity } from "./users/index.ts";

let config;
try {
  config = loadConfig();
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(`tessera: ${error.message}\n`);
    process.exit(2);
  }
  throw error;
}
const password = config.adminPassword ?? randomBytes(18).toString("base64url");
const orm = await openDatabase(config);
try {
  await migrate(orm);
  const em = orm.em.fork();
  const tenant = await em.findOne(TenantEntity, { name: SYSTEM_TENANT_NAME });
  const admin = tenant && (await em.findOne(UserEntity, { tenant, usernameKey: foldKey(config.adminUsername) }));
  if (!tenant || !admin) {
    process.stderr.write(`tessera: no user ${config.adminUsername} in the ${SYSTEM_TENANT_NAME} tenant (start the server once to create it)\n`);
    process.exitCode = 1;
  } else {
    const passwordHash = await hashPassword(password);
    await em.transactional(async (tem) => {
      await tem.nativeUpdate(UserEntity, { id: admin.id }, { passwordHash, disabled: false, updatedAt: new Date() });
      await tem.nativeUpdate(SessionEntity, { user: admin.id, revokedAt: null }, { revokedAt: new Date(), revokeReason: "password_changed" });
      recordRevocation(tem, { kind: "USER_REVOKED", tenantId: tenant.id, userId: admin.id });
      await tem.flush();
    });
    process.stdout.write(
      config.adminPassword
        ? `password of ${SYSTEM_TENANT_NAME}/${config.adminUsername} set from TESSERA_ADMIN_PASSWORD; its sessions are ended\n`
        : `new password of ${SYSTEM_TENANT_NAME}/${config.adminUsername} (shown once): ${password}\nits sessions are ended\n`,
    );
  }
} finally {
  await orm.close(true);
}
