// A real nginx (Debian's /usr/sbin/nginx) for tests that put Tessera or a
// test upstream behind a reverse proxy. Each instance runs in the foreground
// as a single process (no master, so a SIGKILL leaves no orphaned workers)
// with everything it writes (pid, logs, temp files) in its own temporary
// prefix, on a free loopback port. Tests without nginx on the machine skip:
// describe.skipIf(!nginxPath()).
import { spawn } from "node:child_process";
import { once } from "node:events";
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TestNginx {
  /** The loopback port the caller's `listen` directive got. */
  port: number;
  /** http://127.0.0.1:<port> */
  url: string;
  /** The temporary directory holding nginx.conf, the logs and the temp paths. */
  prefix: string;
  errorLog(): string;
  accessLog(): string;
  /** SIGQUIT (graceful), SIGKILL after 5 s, then removes the prefix. */
  stop(): Promise<void>;
}

/** The nginx binary (PATH, then /usr/sbin), or undefined when the machine has none. */
export function nginxPath(): string | undefined {
  return findExecutable("nginx");
}

export function findExecutable(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(":").filter(Boolean), "/usr/local/sbin", "/usr/sbin", "/sbin"];
  for (const dir of dirs) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** A port that was free on 127.0.0.1 a moment ago (bind to 0, read it, close). */
export async function freePort(): Promise<number> {
  const server = createServer().listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const read = (file: string) => {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
};

/**
 * Starts nginx with `config(ports)` as the body of its http {} block (server,
 * upstream, map … directives); the caller's server listens on
 * `127.0.0.1:${ports.listen}`. Resolves once that port accepts connections.
 */
export async function startNginx(options: { config: (ports: { listen: number }) => string }): Promise<TestNginx> {
  const binary = nginxPath();
  if (!binary) throw new Error("nginx is not installed (apt-get install nginx); guard the test with describe.skipIf(!nginxPath())");
  // Another process can take the free port before nginx binds it: a few attempts, each with a new port.
  for (let attempt = 1; ; attempt++) {
    const prefix = mkdtempSync(join(tmpdir(), "tessera-nginx-"));
    try {
      return await launch(binary, prefix, await freePort(), options.config);
    } catch (error) {
      rmSync(prefix, { recursive: true, force: true });
      if (attempt >= 3 || !String(error).includes("Address already in use")) throw error;
    }
  }
}

async function launch(binary: string, prefix: string, port: number, config: (ports: { listen: number }) => string): Promise<TestNginx> {
  const path = (name: string) => join(prefix, name);
  writeFileSync(
    path("nginx.conf"),
    [
      "daemon off;",
      "master_process off;",
      "worker_processes 1;",
      // As root nginx would otherwise create its temp directories for (and run as) nobody.
      ...(process.getuid?.() === 0 ? ["user root;"] : []),
      `pid ${path("nginx.pid")};`,
      `error_log ${path("error.log")} info;`,
      "events {}",
      "http {",
      `  access_log ${path("access.log")};`,
      ...["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map((t) => `  ${t}_temp_path ${path(`${t}_temp`)};`),
      config({ listen: port }),
      "}",
      "",
    ].join("\n"),
  );
  // -e: the log for what nginx reports before it has read error_log from the configuration.
  const child = spawn(binary, ["-p", prefix, "-c", path("nginx.conf"), "-e", path("error.log")], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  let spawnError: Error | undefined;
  child.on("error", (error) => (spawnError = error));
  const exited = new Promise((resolve) => child.once("exit", resolve));
  // A test worker that dies without stop() takes its nginx with it.
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);
  const errorLog = () => read(path("error.log"));
  const fail = (why: string) => {
    process.off("exit", killOnExit);
    child.kill("SIGKILL");
    return new Error(`nginx ${why}:\n${output}${errorLog()}\nnginx.conf:\n${read(path("nginx.conf"))}`);
  };

  // nginx writes its pid file after binding its listeners: a port that accepts before then is someone else's.
  const deadline = Date.now() + 10_000;
  while (!(read(path("nginx.pid")) && (await accepts(port)))) {
    if (spawnError) throw fail(`did not start (${spawnError.message})`);
    if (child.exitCode !== null || child.signalCode !== null) throw fail(`exited (${child.exitCode ?? child.signalCode})`);
    if (Date.now() > deadline) throw fail(`did not accept connections on 127.0.0.1:${port} in 10 s`);
    await new Promise((r) => setTimeout(r, 50));
  }

  return {
    port,
    url: `http://127.0.0.1:${port}`,
    prefix,
    errorLog,
    accessLog: () => read(path("access.log")),
    async stop() {
      process.off("exit", killOnExit);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGQUIT");
        const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(prefix, { recursive: true, force: true });
    },
  };
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}
