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
  exitCode: number | null;
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
    await fresh.stop();
    const existingRuns: number[] = [];
    let idleRssMb = 0;
    let exitCode: number | null = 0;
    for (let i = 0; i < runs; i++) {
      const server = await startServer(dir);
      existingRuns.push(server.readyMs);
      if (i === runs - 1) {
        await new Promise((r) => setTimeout(r, 3000));
        const status = readFileSync(`/proc/${server.child.pid}/status`, "utf8");
        idleRssMb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
      }
      exitCode = await server.stop();
    }
    return { nodeFloorMs, freshMs: fresh.readyMs, existingMs: median(existingRuns), existingRuns: existingRuns.map((v) => round(v)), idleRssMb, exitCode };
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
    `SIGTERM exit code:           ${r.exitCode}`,
  ].join("\n");
}
