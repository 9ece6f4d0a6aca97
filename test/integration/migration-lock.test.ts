// Replicas starting at once on a fresh PostgreSQL database: every migration runs once (an advisory
// lock takes them in turns), and every replica ends with the same, complete schema.
import { afterAll, describe, expect, it } from "vitest";
import pg from "pg";
import { migrate, openDatabase, type Database } from "../../src/db/orm.ts";
import { migrationsList } from "../../src/db/migrations/index.ts";

const baseUrl = process.env.TEST_DATABASE_URL;

describe.skipIf(!baseUrl)("migrations started by several replicas at once (PostgreSQL)", () => {
  // The describe body runs to collect tests even when skipped: no URL parsing without a database.
  const name = baseUrl ? `${new URL(baseUrl).pathname.slice(1)}_migrate_${process.pid}` : "";
  const url = new URL(baseUrl ?? "postgres://unused/unused");
  url.pathname = `/${name}`;
  const admin = () => new pg.Client({ connectionString: baseUrl });
  const orms: Database[] = [];

  afterAll(async () => {
    for (const orm of orms) await orm.close(true).catch(() => undefined);
    orms.length = 0;
    const c = admin();
    await c.connect();
    await c.query(`drop database if exists "${name}" with (force)`);
    await c.end();
  });

  it("runs each migration once, whichever replica gets there first", async () => {
    const c = admin();
    await c.connect();
    await c.query(`create database "${name}"`);
    await c.end();
    for (let i = 0; i < 3; i++) orms.push(await openDatabase({ databaseUrl: url.toString(), dataDir: "" }));
    const applied = await Promise.all(orms.map((orm) => migrate(orm)));
    // Between them, every migration once; nobody failed on a table another had just created.
    expect(applied.flat().sort()).toEqual(migrationsList.map((m) => m.name).sort());
    const check = new pg.Client({ connectionString: url.toString() });
    await check.connect();
    const rows = await check.query("select name, count(*)::int as n from tessera_migrations group by name");
    await check.end();
    expect(rows.rows.every((r: { n: number }) => r.n === 1)).toBe(true);
    expect(rows.rowCount).toBe(migrationsList.length);
  }, 120_000);
});
