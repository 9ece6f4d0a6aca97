// Generates a migration from the difference between the entities and the
// schema the committed migrations produce (`npm run migration:create`).
// Runs against a throwaway in-memory PGlite so it needs no server.
import { MikroORM } from "@mikro-orm/core";
import { Migrator } from "@mikro-orm/migrations";
import { PgliteDriver } from "@mikro-orm/pglite";
import { entities } from "./entities.ts";
import { migrationsList } from "./migrations/index.ts";

const orm = await MikroORM.init({
  entities,
  extensions: [Migrator],
  driver: PgliteDriver,
  dbName: "memory://",
  migrations: { migrationsList, tableName: "tessera_migrations", snapshot: false, emit: "ts", path: "src/db/migrations" },
  allowGlobalContext: true,
});
try {
  await orm.migrator.up();
  const result = await orm.migrator.create("src/db/migrations", false, migrationsList.length === 0);
  if (!result.fileName) console.log("no schema changes");
  else console.log(`created src/db/migrations/${result.fileName}; add it to src/db/migrations/index.ts`);
} finally {
  await orm.close(true);
}
