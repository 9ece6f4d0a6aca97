// Throwaway PostgreSQL databases for the benchmarks, on the server of
// BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres, a role
// that may create databases). Each is dropped when the benchmark ends.
import { randomBytes } from "node:crypto";
import pg from "pg";

export const PG_ADMIN_URL = process.env.BENCH_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

export interface ThrowawayDatabase {
  name: string;
  url: string;
  /** libpq command-line arguments (-h -p -U dbname) for psql and pgbench, and their environment. */
  cliArgs: string[];
  cliEnv: Record<string, string>;
  query(sql: string, params?: unknown[]): Promise<pg.QueryResult>;
  drop(): Promise<void>;
}

export async function throwawayDatabase(purpose: string): Promise<ThrowawayDatabase> {
  const name = `tessera_bench_${purpose}_${process.pid}_${randomBytes(3).toString("hex")}`;
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`create database "${name}"`);
  } finally {
    await admin.end();
  }
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${name}`;
  let client: pg.Client | undefined;
  return {
    name,
    url: url.toString(),
    cliArgs: ["-h", url.hostname, "-p", url.port || "5432", "-U", decodeURIComponent(url.username || "postgres"), name],
    cliEnv: url.password ? { PGPASSWORD: decodeURIComponent(url.password) } : {},
    async query(sql, params) {
      if (!client) {
        client = new pg.Client({ connectionString: url.toString() });
        await client.connect();
      }
      return client.query(sql, params);
    },
    async drop() {
      await client?.end();
      client = undefined;
      const c = new pg.Client({ connectionString: PG_ADMIN_URL });
      await c.connect();
      try {
        await c.query(`drop database if exists "${name}" with (force)`);
      } finally {
        await c.end();
      }
    },
  };
}

export async function serverVersion(): Promise<string> {
  const c = new pg.Client({ connectionString: PG_ADMIN_URL });
  await c.connect();
  try {
    return String((await c.query("show server_version")).rows[0].server_version);
  } finally {
    await c.end();
  }
}
