// Opens the database: embedded PGlite under the data directory by default, or
// a real PostgreSQL when DATABASE_URL is set. Same entities, same migrations.
import { execFile } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { MikroORM } from "@mikro-orm/core";
import { Migrator } from "@mikro-orm/migrations";
import { DeadlineClient } from "./call-deadline.ts";
import { entities } from "./entities.ts";
import { migrationsList } from "./migrations/index.ts";

export type Database = MikroORM;

export const EMBEDDED_SHARED_BUFFERS = "16MB";

export interface DatabaseOptions {
  databaseUrl?: string;
  dataDir: string;
  /** Pool size for PostgreSQL. */
  poolMax?: number;
  /** PostgreSQL's statement_timeout (and idle_in_transaction_session_timeout) for every connection of the pool, ms. */
  statementTimeoutMs?: number;
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
  // Only the driver in use is loaded: each one costs ~20 MB of an idle server's RSS.
  if (options.databaseUrl) {
    const { PostgreSqlDriver } = await import("@mikro-orm/postgresql");
    return MikroORM.init({
      ...commonOptions(),
      driver: PostgreSqlDriver,
      clientUrl: options.databaseUrl,
      pool: { min: 0, max: options.poolMax ?? 10 },
      driverOptions: {
        connectionTimeoutMillis: 5000,
        // An RPC's queries end with its deadline (call-deadline.ts); anything else ends here.
        Client: DeadlineClient,
        statement_timeout: options.statementTimeoutMs ?? 30_000,
        idle_in_transaction_session_timeout: options.statementTimeoutMs ?? 30_000,
        application_name: "tessera",
      },
    });
  }
  const [{ PGlite }, { PgliteDriver }] = await Promise.all([import("@electric-sql/pglite"), import("@mikro-orm/pglite")]);
  const dir = join(options.dataDir, "pg");
  mkdirSync(dir, { recursive: true });
  // The embedded database serves one process: 16 MB of shared buffers (instead
  // of PostgreSQL's 128 MB default) keeps an idle server's RSS down by ~150 MB.
  const startParams = [...PGlite.defaultStartParams, "-c", `shared_buffers=${EMBEDDED_SHARED_BUFFERS}`];
  await initialiseEmbedded(dir, startParams);
  return MikroORM.init({ ...commonOptions(), driver: PgliteDriver, dbName: dir, driverOptions: { startParams } });
}

const INITDB_SCRIPT = `
const [url, dir, params] = process.argv.slice(1);
const pglite = await import(url);
const PGlite = pglite.PGlite ?? pglite.default.PGlite;
const db = await PGlite.create(dir, { startParams: JSON.parse(params) });
await db.close();`;

/**
 * Creates the embedded cluster in a short-lived child process. initdb grows
 * PGlite's WebAssembly memory to ~0.5 GB, and a WebAssembly memory never
 * shrinks: done in the server's own process, a first start would hold that
 * for its whole life (735 MB idle instead of ~200 MB). Costs ~0.3 s, once.
 */
async function initialiseEmbedded(dir: string, startParams: string[]): Promise<void> {
  if (existsSync(join(dir, "PG_VERSION"))) return;
  try {
    await promisify(execFile)(
      process.execPath,
      ["--input-type=module", "-e", INITDB_SCRIPT, pathToFileURL(createRequire(import.meta.url).resolve("@electric-sql/pglite")).href, dir, JSON.stringify(startParams)],
      { timeout: 120_000 },
    );
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim();
    throw new Error(`could not initialise the embedded database in ${dir}${stderr ? `: ${stderr}` : ""}`, { cause: error });
  }
}

/** The advisory lock that lets one replica migrate a PostgreSQL database at a time. */
const MIGRATION_LOCK = 7_358_202_612; // "tessera migrations", any constant all replicas share

/**
 * Applies pending committed migrations; returns their names. On PostgreSQL,
 * replicas starting at once take turns under an advisory lock (held on a
 * connection of its own), so each migration runs once; the later ones find
 * nothing left to do.
 */
export async function migrate(orm: Database): Promise<string[]> {
  const url = orm.config.get("clientUrl");
  if (!url) return (await orm.migrator.up()).map((m) => m.name);
  const { default: pg } = await import("pg");
  const lock = new pg.Client({ connectionString: url, application_name: "tessera migrations", connectionTimeoutMillis: 5000 });
  await lock.connect();
  try {
    await lock.query("select pg_advisory_lock($1)", [MIGRATION_LOCK]);
    return (await orm.migrator.up()).map((m) => m.name);
  } finally {
    // Ending the connection releases the lock too.
    await lock.end().catch(() => undefined);
  }
}
