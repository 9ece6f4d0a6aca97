// Throwaway PostgreSQL clusters made with Debian's tools (postgresql-common:
// pg_createcluster, pg_ctlcluster, pg_dropcluster) for the fault scripts.
// Every cluster is named tessera_fo_<role>_<pid>_<random>, listens on
// 127.0.0.1 on a port of its own, trusts local connections, does not start at
// boot, and is dropped (pg_dropcluster --stop) by dropAll(), which the
// scripts call in `finally` and on SIGINT/SIGTERM. Nothing here ever names
// another cluster (the machine's 15/main belongs to other people's tests).
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { promisify } from "node:util";
import pg from "pg";

const run = promisify(execFile);
export const PG_VERSION = process.env.TESSERA_FAULT_PG_VERSION ?? "15";
const NAME = /^tessera_fo_[a-z]+_\d+_[0-9a-f]+$/;
const BIN = `/usr/lib/postgresql/${PG_VERSION}/bin`;

/** Why the fault scripts cannot run here (undefined when they can): they need root and postgresql-common. */
export function clusterToolsMissing(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root (pg_createcluster/pg_ctlcluster make clusters owned by postgres)";
  for (const tool of ["/usr/bin/pg_createcluster", "/usr/bin/pg_ctlcluster", "/usr/bin/pg_dropcluster", `${BIN}/pg_basebackup`]) {
    if (!existsSync(tool)) return `${tool} is missing (Debian's postgresql-${PG_VERSION} and postgresql-common)`;
  }
  return undefined;
}

export async function freePort(): Promise<number> {
  const server = createServer().listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as { port: number }).port;
  await new Promise((r) => server.close(r));
  return port;
}

async function sh(command: string, args: string[], timeoutMs = 60_000): Promise<string> {
  try {
    const { stdout, stderr } = await run(command, args, { timeout: timeoutMs, encoding: "utf8" });
    return `${stdout}${stderr}`;
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${command} ${args.join(" ")} failed: ${e.message}\n${e.stdout ?? ""}${e.stderr ?? ""}`.trim());
  }
}

/** Settings that keep a throwaway cluster light on a shared 2-core machine. */
const LIGHT = ["listen_addresses = '127.0.0.1'", "shared_buffers = 16MB", "max_connections = 60", "max_wal_senders = 4", "wal_keep_size = 64MB", "log_min_messages = warning"];

const created = new Set<Cluster>();

export class Cluster {
  readonly name: string;
  readonly port: number;
  readonly role: string;
  readonly dataDir: string;
  readonly confDir: string;

  private constructor(role: string, port: number) {
    this.role = role;
    this.name = `tessera_fo_${role}_${process.pid}_${randomBytes(3).toString("hex")}`;
    if (!NAME.test(this.name)) throw new Error(`bad cluster name ${this.name}`);
    this.port = port;
    this.dataDir = `/var/lib/postgresql/${PG_VERSION}/${this.name}`;
    this.confDir = `/etc/postgresql/${PG_VERSION}/${this.name}`;
  }

  /** pg_createcluster on a free port (trust authentication, no start at boot); not started. */
  static async create(role: string, settings: string[] = []): Promise<Cluster> {
    const cluster = new Cluster(role, await freePort());
    created.add(cluster);
    await sh("pg_createcluster", [PG_VERSION, cluster.name, "-p", String(cluster.port), "--start-conf=manual", "--", "--auth=trust"]);
    cluster.configure([...LIGHT, ...settings]);
    return cluster;
  }

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  urlOf(database: string): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${database}`;
  }

  /** Writes conf.d/tessera-fault.conf (replacing it): Debian's postgresql.conf includes conf.d. */
  configure(lines: string[]): void {
    const dir = `${this.confDir}/conf.d`;
    mkdirSync(dir, { recursive: true });
    writeFileSync(`${dir}/tessera-fault.conf`, `${lines.join("\n")}\n`);
  }

  addSettings(lines: string[]): void {
    appendFileSync(`${this.confDir}/conf.d/tessera-fault.conf`, `${lines.join("\n")}\n`);
  }

  async ctl(action: "start" | "stop" | "restart" | "reload" | "promote", ...options: string[]): Promise<string> {
    // Never through systemd (a root pg_ctlcluster may redirect there): the mode must be the one asked for.
    return sh("pg_ctlcluster", ["--skip-systemctl-redirect", ...options, PG_VERSION, this.name, action]);
  }

  start(): Promise<string> {
    return this.ctl("start");
  }

  /** pg_ctlcluster stop with a shutdown mode: fast (backends terminated, clean) or immediate (a crash). */
  stop(mode: "fast" | "immediate"): Promise<string> {
    return this.ctl("stop", "-m", mode);
  }

  async query<T extends Record<string, unknown> = Record<string, unknown>>(sql: string, params: unknown[] = [], database = "postgres"): Promise<T[]> {
    const client = new pg.Client({ connectionString: this.urlOf(database), connectionTimeoutMillis: 5000 });
    await client.connect();
    try {
      return (await client.query(sql, params)).rows as T[];
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  /** Replaces this (stopped, never started) cluster's data with a base backup of `primary`, as a streaming standby. */
  async becomeStandbyOf(primary: Cluster, applicationName: string): Promise<void> {
    // Emptied, not removed: the directory stays postgres's (its parent is root's).
    for (const entry of readdirSync(this.dataDir)) rmSync(`${this.dataDir}/${entry}`, { recursive: true, force: true });
    await sh("runuser", ["-u", "postgres", "--", `${BIN}/pg_basebackup`, "-D", this.dataDir, "-h", "127.0.0.1", "-p", String(primary.port), "-U", "postgres", "-X", "stream", "-R", "-c", "fast"], 120_000);
    // -R wrote standby.signal and a primary_conninfo; the last setting in the file wins.
    appendFileSync(`${this.dataDir}/postgresql.auto.conf`, `primary_conninfo = 'host=127.0.0.1 port=${primary.port} user=postgres application_name=${applicationName}'\n`);
  }

  /** The last lines of the cluster's log (Debian's /var/log/postgresql/...), for failure reports. */
  logTail(lines = 20): string {
    try {
      return readFileSync(`/var/log/postgresql/postgresql-${PG_VERSION}-${this.name}.log`, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
    } catch {
      return "(no log)";
    }
  }

  async drop(): Promise<void> {
    if (!created.has(this)) return;
    created.delete(this);
    try {
      await sh("pg_dropcluster", ["--stop", PG_VERSION, this.name]);
    } catch {
      // A cluster that would not stop cleanly (or was half made): stop it hard, then drop it.
      await sh("pg_ctlcluster", ["--skip-systemctl-redirect", "-m", "immediate", PG_VERSION, this.name, "stop"]).catch(() => undefined);
      await sh("pg_dropcluster", [PG_VERSION, this.name]);
    }
  }
}

/** Drops every cluster this process created (and only those). */
export async function dropAllClusters(): Promise<string[]> {
  const problems: string[] = [];
  for (const cluster of [...created]) {
    await cluster.drop().catch((error: unknown) => problems.push(`${cluster.name}: ${(error as Error).message}`));
  }
  return problems;
}

const cleanups = new Set<() => void>();

/** Work to do before the clusters are dropped on a signal (e.g. killing the Tessera processes); returns its removal. */
export function onAbort(cleanup: () => void): () => void {
  cleanups.add(cleanup);
  return () => cleanups.delete(cleanup);
}

/** On SIGINT/SIGTERM: runs the onAbort work, drops this process's clusters, exits 130/143. */
export function dropClustersOnSignals(): void {
  for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    process.once(signal, () => {
      process.stderr.write(`\n${signal}: stopping the servers, dropping the fault clusters\n`);
      for (const cleanup of cleanups) {
        try {
          cleanup();
        } catch {
          // best effort
        }
      }
      void dropAllClusters().finally(() => process.exit(code));
    });
  }
}

/** Polls until `check` resolves true (errors count as false), or throws after `timeoutMs`. */
export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 30_000, everyMs = 100): Promise<void> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < until) {
    try {
      if (await check()) return;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
}

/** Clusters left by fault runs whose process is gone (an interrupted run, a killed test worker). */
export async function staleClusters(): Promise<string[]> {
  const out = await sh("pg_lsclusters", ["-h"]).catch(() => "");
  return out
    .split("\n")
    .map((line) => line.trim().split(/\s+/))
    .filter(([version, name]) => version === PG_VERSION && name !== undefined && NAME.test(name))
    .map(([, name]) => name!)
    .filter((name) => {
      const pid = Number(name.split("_")[3]);
      try {
        process.kill(pid, 0);
        return false; // that run is still going
      } catch {
        return true;
      }
    });
}

/** Drops clusters of fault runs whose process is gone (only names this file makes: tessera_fo_<role>_<pid>_<hex>). */
export async function dropStaleClusters(): Promise<string[]> {
  const names = await staleClusters();
  for (const name of names) {
    if (!NAME.test(name)) continue;
    await sh("pg_dropcluster", ["--stop", PG_VERSION, name]).catch(async () => {
      await sh("pg_ctlcluster", ["--skip-systemctl-redirect", "-m", "immediate", PG_VERSION, name, "stop"]).catch(() => undefined);
      await sh("pg_dropcluster", [PG_VERSION, name]);
    });
  }
  return names;
}
