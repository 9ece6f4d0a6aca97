// CI helper: creates a throwaway PostgreSQL database, or drops every database
// whose name starts with a prefix (the run's and those the tests derived from
// it). Uses the project's own `pg` client, so CI needs no psql.
//   node .ci/pg-database.ts create <name>
//   node .ci/pg-database.ts drop-prefix <prefix>
import pg from "pg";

const [action, name] = process.argv.slice(2);
if (!name || !/^[a-z0-9_]+$/.test(name) || !["create", "drop-prefix"].includes(action ?? "")) {
  console.error("usage: pg-database.ts create|drop-prefix <name made of [a-z0-9_]>");
  process.exit(2);
}
const client = new pg.Client({ host: "127.0.0.1", port: 5432, user: "postgres", database: "postgres" });
await client.connect();
try {
  if (action === "create") {
    await client.query(`create database "${name}"`);
  } else {
    const { rows } = await client.query<{ datname: string }>("select datname from pg_database where starts_with(datname, $1)", [name]);
    for (const { datname } of rows) await client.query(`drop database if exists "${datname}" with (force)`);
  }
} finally {
  await client.end();
}
