// A real database for unit tests of the token flows: MikroORM on PGlite in
// this process, opened from a copy of the migrated template that
// test/support/global-setup.ts builds once per run (about 0.6 s instead of
// about 6 s for initdb and the migrations). Without the template (a config
// without that global setup) it initialises and migrates a fresh cluster.
// Plus the rows a token test needs: a tenant, a user, its groups.
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { EntityManager } from "@mikro-orm/core";
import { inject } from "vitest";
import { migrate, openDatabase, type Database } from "../../src/db/orm.ts";
import { GroupEntity, GroupMemberEntity } from "../../src/permissions/index.ts";
import { TenantEntity } from "../../src/tenants/index.ts";
import { UserEntity } from "../../src/users/index.ts";

export interface UnitDatabase {
  orm: Database;
  /** A fresh EntityManager, as every RPC gets its own. */
  em(): EntityManager;
  close(): Promise<void>;
}

export async function openUnitDatabase(): Promise<UnitDatabase> {
  const dataDir = mkdtempSync(join(tmpdir(), "tessera-unit-"));
  const template = inject("pgliteTemplate");
  if (template) cpSync(template, join(dataDir, "pg"), { recursive: true });
  const orm = await openDatabase({ dataDir });
  if (!template) await migrate(orm);
  return {
    orm,
    em: () => orm.em.fork(),
    async close() {
      await orm.close(true);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

let counter = 0;
/** Unique per call within a test file (tenant names are unique in the database). */
export const unique = (prefix: string) => `${prefix}${process.pid.toString(36)}x${(++counter).toString(36)}`;

export interface Account {
  tenantId: string;
  tenantName: string;
  userId: string;
  username: string;
  /** The stored password hash (SessionStore.start checks it; no argon2 here). */
  passwordHash: string;
  /** The group whose permissions are the user's grants. */
  groupId: string;
}

/** A new tenant with one user in one group granting `grants` (plus identity.self.*, which every user holds). */
export async function createAccount(db: UnitDatabase, grants: string[] = []): Promise<Account> {
  const em = db.em();
  const tenant = em.create(TenantEntity, { id: crypto.randomUUID(), name: unique("t") });
  const username = unique("u");
  const passwordHash = `hash-${username}`;
  const user = em.create(UserEntity, { id: crypto.randomUUID(), tenant, username, usernameKey: username, passwordHash });
  const group = em.create(GroupEntity, { id: crypto.randomUUID(), tenant, name: "members", permissions: grants, autoGrantPatterns: [] });
  em.create(GroupMemberEntity, { group, user });
  await em.flush();
  return { tenantId: tenant.id, tenantName: tenant.name, userId: user.id, username, passwordHash, groupId: group.id };
}

/** Another user in the account's tenant (same grants). */
export async function addUser(db: UnitDatabase, account: Account): Promise<Account> {
  const em = db.em();
  const username = unique("u");
  const passwordHash = `hash-${username}`;
  const user = em.create(UserEntity, { id: crypto.randomUUID(), tenant: account.tenantId, username, usernameKey: username, passwordHash });
  em.create(GroupMemberEntity, { group: account.groupId, user });
  await em.flush();
  return { ...account, userId: user.id, username, passwordHash };
}

export async function setGrants(db: UnitDatabase, account: Account, grants: string[]): Promise<void> {
  await db.em().nativeUpdate(GroupEntity, { id: account.groupId }, { permissions: grants });
}

export async function disableTenant(db: UnitDatabase, account: Account): Promise<void> {
  await db.em().nativeUpdate(TenantEntity, { id: account.tenantId }, { disabled: true });
}

export async function disableUser(db: UnitDatabase, account: Account): Promise<void> {
  await db.em().nativeUpdate(UserEntity, { id: account.userId }, { disabled: true });
}
