// Starts a real Tessera on port 0 with a real database and gives tests
// generated nice-grpc clients over a real channel. With TEST_DATABASE_URL set
// (postgres://host/<run database>), each server gets its own fresh PostgreSQL
// database named after it, dropped on close (or, with `replicaOf`, shares another
// server's: a second replica); otherwise a copy of the migrated PGlite template.
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createChannel, type Channel } from "nice-grpc";
import { pino, type Logger } from "pino";
import { inject } from "vitest";
import pg from "pg";
import { loadConfig, type Config } from "../../src/config.ts";
import { startTessera, type Tessera } from "../../src/app.ts";
import { createTesseraClient, type TesseraClient } from "@tessera/client";
import type { IssueTokenResponse } from "@tessera/client";

export const ADMIN_PASSWORD = "correct horse battery staple";

export interface TestServer {
  tessera: Tessera;
  config: Config;
  channel: Channel;
  address: string;
  /** Typed clients without credentials. */
  clients: ReturnType<typeof makeClients>;
  /** Typed clients sending `authorization: Bearer <token>`. */
  as(token: string): ReturnType<typeof makeClients>;
  /** Typed clients on a channel of their own to `address` (e.g. through a TcpProxy), closed with the server. */
  clientsAt(address: string, token?: string): ReturnType<typeof makeClients>;
  /** Logs in and returns an access token (and the full response). */
  login(tenant: string, username: string, password: string, requested?: string[]): Promise<IssueTokenResponse>;
  adminToken: string;
  close(): Promise<void>;
}

/**
 * The SDK's typed clients on `channel`, sending `token` when given: tests call Tessera as its users do,
 * but without the SDK's retries and default deadline, so that each call is exactly one call to the server.
 */
function makeClients(channel: Channel, token?: string): TesseraClient {
  return createTesseraClient({ address: "", channel, token, retry: false, defaultDeadlineMs: 0 });
}

/** A new database named after the run's database (so CI can sweep leftovers by prefix). */
export async function freshPostgresDatabase(baseUrl: string): Promise<{ url: string; drop(): Promise<void> }> {
  const runDb = new URL(baseUrl).pathname.slice(1) || "tessera_test";
  const name = `${runDb}_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  const admin = new pg.Client({ connectionString: baseUrl });
  await admin.connect();
  await admin.query(`create database "${name}"`);
  await admin.end();
  const url = new URL(baseUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: baseUrl });
      await c.connect();
      await c.query(`drop database if exists "${name}" with (force)`);
      await c.end();
    },
  };
}

export interface TestServerOptions {
  /** Rewrites the PostgreSQL URL the server uses (e.g. to route it through a proxy). */
  databaseUrl?: (url: string) => string;
  /** The server's logger (default: silent), e.g. createLogger with a capturing destination. */
  logger?: Logger;
  /**
   * Start a second replica of this server: the same PostgreSQL database and
   * master key instead of a fresh database (so it needs TEST_DATABASE_URL; on
   * PGlite every server has a database of its own). The database stays the
   * first server's, dropped when that one closes: close the replica first.
   */
  replicaOf?: TestServer;
}

export async function startTestServer(env: Record<string, string> = {}, options: TestServerOptions = {}): Promise<TestServer> {
  const dataDir = mkdtempSync(join(tmpdir(), "tessera-test-"));
  let dropDatabase: (() => Promise<void>) | undefined;
  const baseEnv: Record<string, string> = {
    TESSERA_GRPC_ADDR: "127.0.0.1:0",
    TESSERA_HTTP_ADDR: "127.0.0.1:0",
    TESSERA_DATA_DIR: dataDir,
    TESSERA_ADMIN_PASSWORD: ADMIN_PASSWORD,
    TESSERA_LOG_LEVEL: "silent",
    TESSERA_SHUTDOWN_GRACE: "2s",
  };
  if (options.replicaOf) {
    const { databaseUrl, masterKey } = options.replicaOf.config;
    if (!databaseUrl || !masterKey) throw new Error("replicaOf needs a server on PostgreSQL (TEST_DATABASE_URL): on PGlite each test server has a database of its own");
    baseEnv.DATABASE_URL = options.databaseUrl ? options.databaseUrl(databaseUrl) : databaseUrl;
    baseEnv.TESSERA_MASTER_KEY = masterKey.toString("hex");
  } else if (process.env.TEST_DATABASE_URL) {
    const db = await freshPostgresDatabase(process.env.TEST_DATABASE_URL);
    dropDatabase = db.drop;
    baseEnv.DATABASE_URL = options.databaseUrl ? options.databaseUrl(db.url) : db.url;
    baseEnv.TESSERA_MASTER_KEY = "11".repeat(32);
  } else {
    cpSync(inject("pgliteTemplate"), join(dataDir, "pg"), { recursive: true });
  }
  const config = loadConfig({ ...baseEnv, ...env });
  const logger = options.logger ?? pino({ level: "silent" });
  const tessera = await startTessera(config, logger).catch(async (error: unknown) => {
    await dropDatabase?.();
    rmSync(dataDir, { recursive: true, force: true });
    throw error;
  });
  const address = `127.0.0.1:${tessera.grpcPort}`;
  const channel = createChannel(address);
  const clients = makeClients(channel);
  const login: TestServer["login"] = async (tenant, username, password, requested = []) => {
    const res = await clients.issue.issueToken({ credential: { $case: "password", value: { tenant, username, password } }, requestedPermissions: requested });
    return res;
  };
  const { accessToken: adminToken } = await login("system", "admin", ADMIN_PASSWORD);
  const extraChannels: Channel[] = [];
  return {
    tessera,
    config,
    channel,
    address,
    clients,
    as: (token) => makeClients(channel, token),
    clientsAt(target, token) {
      const extra = createChannel(target);
      extraChannels.push(extra);
      return makeClients(extra, token);
    },
    login,
    adminToken,
    async close() {
      channel.close();
      for (const extra of extraChannels) extra.close();
      await tessera.close();
      await dropDatabase?.();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
