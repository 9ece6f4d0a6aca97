// Opens the database: embedded PGlite under the data directory by default, or
// a real PostgreSQL when DATABASE_URL is set. Same entities, same migrations.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { MikroORM } from "@mikro-orm/core";
import { Migrator } from "@mikro-orm/migrations";
import { PGlite } from "@electric-sql/pglite";
import { PgliteDriver } from "@mikro-orm/pglite";
import { PostgreSqlDriver } from "@mikro-orm/postgresql";
import { entities } from "./entities.ts";
import { migrationsList } from "./migrations/index.ts";

export type Database = MikroORM;

export const EMBEDDED_SHARED_BUFFERS = "16MB";

export interface DatabaseOptions {
  databaseUrl?: string;
  dataDir: string;
  /** Pool size for PostgreSQL. */
  poolMax?: number;
}

function commonOptions() {
  return {
    entities,
    extensions: [Migrator],
    migrations: {
      migrationsList,
      tableName: "tessera_migrations",
      transactional: true,
      allOrNothing: true,
      snapshot: false,
      silent: true,
      emit: "ts" as const,
      path: "src/db/migrations",
    },
    // Each request must work in its own em.fork(); a global identity map would leak between calls.
    allowGlobalContext: false,
    forceUtcTimezone: true,
    debug: false,
  };
}

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  if (options.databaseUrl) {
    return MikroORM.init({
      ...commonOptions(),
      driver: PostgreSqlDriver,
      clientUrl: options.databaseUrl,
      pool: { min: 0, max: options.poolMax ?? 10 },
      driverOptions: { connectionTimeoutMillis: 5000 },
    });
  }
  const dir = join(options.dataDir, "pg");
  mkdirSync(dir, { recursive: true });
  return MikroORM.init({
    ...commonOptions(),
    driver: PgliteDriver,
    dbName: dir,
    // The embedded database serves one process: 16 MB of shared buffers (instead
    // of PostgreSQL's 128 MB default) keeps an idle server's RSS down by ~150 MB.
    driverOptions: { startParams: [...PGlite.defaultStartParams, "-c", `shared_buffers=${EMBEDDED_SHARED_BUFFERS}`] },
  });
}

/** Applies pending committed migrations; returns their names. */
export async function migrate(orm: Database): Promise<string[]> {
  const applied = await orm.migrator.up();
  return applied.map((m) => m.name);
}
