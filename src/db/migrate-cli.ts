// `npm run migrate`: applies the committed migrations to the configured database and exits.
import { loadConfig } from "../config.ts";
import { migrate, openDatabase } from "./orm.ts";

const config = loadConfig();
const orm = await openDatabase(config);
try {
  const applied = await migrate(orm);
  console.log(applied.length ? `applied: ${applied.join(", ")}` : "database is up to date");
} finally {
  await orm.close(true);
}
