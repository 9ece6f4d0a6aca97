// Tessera as a separate process (node src/main.ts: the sources that npm start builds and runs), for
// tests that need a second replica or the server's own memory figures.
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";

export interface ServerProcess {
  child: ChildProcess;
  /** host:port of the gRPC listener. */
  grpcAddress: string;
  httpPort: number;
  /** Everything the process wrote so far (stdout and stderr). */
  output(): string;
  /** Resident set size in bytes, from /proc. */
  rss(): number;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
}

export function spawnServer(env: Record<string, string>): { child: ChildProcess; output(): string } {
  const child = spawn(process.execPath, ["--conditions=tessera-source", "src/main.ts"], {
    env: { PATH: process.env.PATH ?? "", TESSERA_LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (d) => (output += d));
  child.stderr!.on("data", (d) => (output += d));
  return { child, output: () => output };
}

/** Starts a server process on port 0 and waits for its "tessera listening" line. */
export async function startServerProcess(env: Record<string, string>): Promise<ServerProcess> {
  const { child, output } = spawnServer({ TESSERA_GRPC_ADDR: "127.0.0.1:0", TESSERA_HTTP_ADDR: "127.0.0.1:0", ...env });
  let grpcAddress = "";
  let http = "";
  for (let i = 0; i < 600 && !grpcAddress; i++) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}:\n${output()}`);
    const line = /\{[^\n]*"tessera listening"[^\n]*\}/.exec(output())?.[0];
    if (line) ({ grpc: grpcAddress, http } = JSON.parse(line) as { grpc: string; http: string });
    else await new Promise((r) => setTimeout(r, 50));
  }
  if (!grpcAddress) {
    child.kill("SIGKILL");
    throw new Error(`server did not start in 30 s:\n${output()}`);
  }
  return {
    child,
    grpcAddress,
    httpPort: Number(http.split(":").pop()),
    output,
    rss: () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"))?.[1] ?? 0) * 1024,
    async stop() {
      if (child.exitCode !== null) return child.exitCode;
      child.kill("SIGTERM");
      const [code] = (await once(child, "exit")) as [number | null];
      return code;
    },
  };
}
