// Issue 4: time from process start to health SERVING, on a fresh and on an
// existing PGlite data directory, and RSS when idle. Floor: a bare `node -e ""`.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { median, round, startServer } from "./server.ts";

export interface StartupResult {
  nodeFloorMs: number;
  freshMs: number;
  existingMs: number;
  existingRuns: number[];
  idleRssMb: number;
  /** Idle RSS of the server that initialised the directory (initdb runs in a child process). */
  freshIdleRssMb: number;
  exitCode: number | null;
}

async function idleRssMb(pid: number | undefined): Promise<number> {
  await new Promise((r) => setTimeout(r, 3000));
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
}

function bareNodeMs(): number {
  const start = performance.now();
  spawnSync(process.execPath, ["-e", ""]);
  return performance.now() - start;
}

export async function benchStartup(runs = 5): Promise<StartupResult> {
  const dir = mkdtempSync(join(tmpdir(), "tessera-bench-startup-"));
  try {
    const nodeFloorMs = median(Array.from({ length: runs }, bareNodeMs));
    const fresh = await startServer(dir);
    const freshIdleRssMb = await idleRssMb(fresh.child.pid);
    await fresh.stop();
    const existingRuns: number[] = [];
    let idleRss = 0;
    let exitCode: number | null = 0;
    for (let i = 0; i < runs; i++) {
      const server = await startServer(dir);
      existingRuns.push(server.readyMs);
      if (i === runs - 1) idleRss = await idleRssMb(server.child.pid);
      exitCode = await server.stop();
    }
    return { nodeFloorMs, freshMs: fresh.readyMs, existingMs: median(existingRuns), existingRuns: existingRuns.map((v) => round(v)), idleRssMb: idleRss, freshIdleRssMb, exitCode };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function reportStartup(r: StartupResult): string {
  return [
    `node -e "" floor:            ${round(r.nodeFloorMs)} ms`,
    `fresh data dir → SERVING:    ${round(r.freshMs)} ms (initdb + migrations + bootstrap)`,
    `existing data dir → SERVING: ${round(r.existingMs)} ms median of [${r.existingRuns.join(", ")}] = ${round(r.existingMs / r.nodeFloorMs)}× the node floor  (target < 1500 ms: ${r.existingMs < 1500 ? "met" : "MISSED"})`,
    `idle RSS:                    ${round(r.idleRssMb)} MB  (target < 150 MB: ${r.idleRssMb < 150 ? "met" : "MISSED"})`,
    `idle RSS after a first start: ${round(r.freshIdleRssMb)} MB`,
    `SIGTERM exit code:           ${r.exitCode}`,
  ].join("\n");
}
