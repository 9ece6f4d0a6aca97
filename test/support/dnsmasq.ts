// A real DNS server (dnsmasq, /usr/sbin/dnsmasq) serving fixed TXT records
// on 127.0.0.1, over UDP and TCP on one free port, for tests of lookups that
// go through a resolver (node:dns Resolver with setServers). It answers only
// from its own records: no upstream servers, no /etc/hosts, and NXDOMAIN for
// every other name. Tests without dnsmasq skip: describe.skipIf(!dnsmasqPath()).
import { spawn } from "node:child_process";
import { createSocket } from "node:dgram";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { Resolver } from "node:dns/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findExecutable, freePort } from "./nginx.ts";

/** One TXT resource record: `values` are its character-strings (at most 255 bytes each). */
export interface TxtRecord {
  name: string;
  values: string[];
}

export interface TestDnsmasq {
  /** The UDP and TCP port on 127.0.0.1. */
  port: number;
  /** "127.0.0.1:<port>", for Resolver.setServers. */
  server: string;
  /** dnsmasq's log (every query and its answer). */
  log(): string;
  /** SIGTERM, SIGKILL after 5 s, then removes the temporary directory. */
  stop(): Promise<void>;
}

/** The dnsmasq binary (PATH, then /usr/sbin), or undefined when the machine has none. */
export function dnsmasqPath(): string | undefined {
  return findExecutable("dnsmasq");
}

// dnsmasq reads configuration lines into a 1025-byte buffer (a longer line
// fails with 'missing "'), so records whose line would be longer go on the
// command line, where nothing is unquoted: a comma separates strings there,
// quotes and backslashes are literal.
const MAX_CONF_LINE = 1000;

function txtRecordOption(record: TxtRecord): { conf?: string; arg?: string } {
  if (!/^[A-Za-z0-9._-]+$/.test(record.name)) throw new Error(`not a DNS name for dnsmasq: ${JSON.stringify(record.name)}`);
  for (const value of record.values) {
    if (Buffer.byteLength(value) > 255) throw new Error(`a TXT character-string is at most 255 bytes, ${record.name} has one of ${Buffer.byteLength(value)}`);
    if (/[\r\n]/.test(value)) throw new Error(`TXT values for dnsmasq cannot hold line breaks (${record.name})`);
  }
  const quoted = record.values.map((v) => `"${v.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`);
  const conf = `txt-record=${[record.name, ...quoted].join(",")}`;
  if (conf.length <= MAX_CONF_LINE) return { conf };
  if (record.values.some((v) => v.includes(","))) throw new Error(`a TXT record of over ${MAX_CONF_LINE} bytes cannot hold commas with dnsmasq (${record.name})`);
  return { arg: `--txt-record=${[record.name, ...record.values].join(",")}` };
}

/** A port free for both UDP and TCP on 127.0.0.1 a moment ago. */
async function freeUdpTcpPort(): Promise<number> {
  for (;;) {
    const port = await freePort();
    const udp = createSocket("udp4");
    try {
      udp.bind(port, "127.0.0.1");
      await once(udp, "listening");
      return port;
    } catch {
      // taken for UDP: another one
    } finally {
      try {
        udp.close();
      } catch {
        // never bound
      }
    }
  }
}

const read = (file: string) => {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
};

/**
 * Starts dnsmasq answering `records` (several records of one name are that
 * name's RRset), on `options.port` or a free port. Resolves once it answers a
 * TXT query for the first record's name.
 */
export async function startDnsmasq(records: TxtRecord[], options: { port?: number } = {}): Promise<TestDnsmasq> {
  const binary = dnsmasqPath();
  if (!binary) throw new Error("dnsmasq is not installed (apt-get install dnsmasq-base); guard the test with describe.skipIf(!dnsmasqPath())");
  const options_ = records.map(txtRecordOption);
  // Another process can take the free port before dnsmasq binds it: a few attempts, each with a new port.
  for (let attempt = 1; ; attempt++) {
    const dir = mkdtempSync(join(tmpdir(), "tessera-dnsmasq-"));
    try {
      return await launch(binary, dir, options.port ?? (await freeUdpTcpPort()), records[0]?.name, options_);
    } catch (error) {
      rmSync(dir, { recursive: true, force: true });
      if (attempt >= 3 || options.port || !String(error).includes("Address already in use")) throw error;
    }
  }
}

async function launch(binary: string, dir: string, port: number, probe: string | undefined, records: { conf?: string; arg?: string }[]): Promise<TestDnsmasq> {
  const conf = join(dir, "dnsmasq.conf");
  const logFile = join(dir, "dnsmasq.log");
  writeFileSync(conf, records.flatMap((r) => (r.conf ? [r.conf] : [])).join("\n") + "\n");
  const args = [
    "--keep-in-foreground",
    `--conf-file=${conf}`, // only this file: not /etc/dnsmasq.conf
    "--no-resolv", // no upstream servers from /etc/resolv.conf …
    "--no-poll",
    "--no-hosts", // … no answers from /etc/hosts
    "--local=/#/", // every name is local: NXDOMAIN for names without records, not REFUSED
    "--bind-interfaces",
    "--listen-address=127.0.0.1",
    `--port=${port}`,
    "--pid-file=", // none (the default, /var/run/dnsmasq.pid, is a system daemon's)
    "--user=root", // stays as the user running the tests: no switch to the dnsmasq user
    "--log-queries",
    `--log-facility=${logFile}`,
    ...records.flatMap((r) => (r.arg ? [r.arg] : [])),
  ];
  const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  let spawnError: Error | undefined;
  child.on("error", (error) => (spawnError = error));
  const exited = new Promise((resolve) => child.once("exit", resolve));
  // A test worker that dies without stop() takes its dnsmasq with it.
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);
  const fail = (why: string) => {
    process.off("exit", killOnExit);
    child.kill("SIGKILL");
    return new Error(`dnsmasq ${why}:\n${output}${read(logFile)}`);
  };

  const resolver = new Resolver({ timeout: 250, tries: 1 });
  resolver.setServers([`127.0.0.1:${port}`]);
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (spawnError) throw fail(`did not start (${spawnError.message})`);
    if (child.exitCode !== null || child.signalCode !== null) throw fail(`exited (${child.exitCode ?? child.signalCode})`);
    try {
      await resolver.resolveTxt(probe ?? "dnsmasq-probe.invalid");
      break;
    } catch (error) {
      // Without records, NXDOMAIN is the answer that shows it is up.
      if (!probe && (error as { code?: string }).code === "ENOTFOUND") break;
    }
    if (Date.now() > deadline) throw fail(`did not answer TXT ${probe ?? "queries"} on 127.0.0.1:${port} in 10 s`);
    await new Promise((r) => setTimeout(r, 50));
  }

  return {
    port,
    server: `127.0.0.1:${port}`,
    log: () => read(logFile),
    async stop() {
      process.off("exit", killOnExit);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
