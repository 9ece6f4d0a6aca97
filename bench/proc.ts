// Process accounting for the load benchmarks (Linux /proc): CPU seconds of a
// process or of every PostgreSQL process, RSS, and h2load runs that also
// report h2load's own CPU time.
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

const TICKS_PER_SECOND = 100; // getconf CLK_TCK on Linux

/** utime + stime of one process in seconds (0 when it has gone). `children` adds waited-for children (cutime + cstime). */
export function cpuSeconds(pid: number, children = false): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after "(comm) ": field n of proc(5) is rest[n - 3].
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const own = Number(rest[11]) + Number(rest[12]);
    return (children ? own + Number(rest[13]) + Number(rest[14]) : own) / TICKS_PER_SECOND;
  } catch {
    return 0;
  }
}

/**
 * The process and its live descendants, parents first: with TESSERA_WORKERS the
 * server is a primary and its workers, and its CPU and RSS are theirs together.
 */
export function processTree(pid: number): number[] {
  const pids = [pid];
  for (let i = 0; i < pids.length; i++) {
    try {
      for (const task of readdirSync(`/proc/${pids[i]}/task`)) {
        for (const child of readFileSync(`/proc/${pids[i]}/task/${task}/children`, "utf8").trim().split(/\s+/)) if (child) pids.push(Number(child));
      }
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** CPU seconds of a process and its live descendants (processTree). */
export const treeCpuSeconds = (pid: number): number => processTree(pid).reduce((sum, p) => sum + cpuSeconds(p), 0);

/** Every process named `postgres` (the postmaster and its backends): the database's CPU. */
export function postgresPids(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, "utf8").trim() === "postgres") pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/**
 * CPU seconds of a group of processes, by pid. Children that exited and were
 * waited for count in their parent's cutime/cstime (`children`): a backend of
 * PostgreSQL that ends between two snapshots moves from its own entry to the
 * postmaster's, so totals are compared, not pids.
 */
export type CpuSnapshot = Map<number, number>;
export function snapshot(pids: number[], children = false): CpuSnapshot {
  return new Map(pids.map((pid) => [pid, cpuSeconds(pid, children)]));
}
export function cpuBetween(before: CpuSnapshot, after: CpuSnapshot): number {
  let total = 0;
  for (const seconds of after.values()) total += seconds;
  for (const seconds of before.values()) total -= seconds;
  return total;
}
/** The database's CPU: every postgres process, the postmaster with its exited backends. */
export const postgresSnapshot = (): CpuSnapshot => snapshot(postgresPids(), true);

/** Resident memory of a process and its live descendants (processTree; their shared pages count once per process, as `ps` shows them). */
export function rssMb(pid: number | undefined, field: "VmRSS" | "VmHWM" = "VmRSS"): number {
  if (pid === undefined) return 0;
  return processTree(pid).reduce((sum, p) => sum + ownRssMb(p, field), 0);
}

function ownRssMb(pid: number, field: "VmRSS" | "VmHWM"): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}

/** Samples a process's RSS every `everyMs` until stopped; returns the peak and the last sample. */
export function sampleRss(pid: number | undefined, everyMs = 200): { stop(): { peakMb: number; lastMb: number } } {
  let peakMb = rssMb(pid);
  let lastMb = peakMb;
  const timer = setInterval(() => {
    lastMb = rssMb(pid);
    if (lastMb > peakMb) peakMb = lastMb;
  }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      lastMb = rssMb(pid) || lastMb;
      peakMb = Math.max(peakMb, lastMb);
      return { peakMb, lastMb };
    },
  };
}

export function requireTool(command: string, args: string[], hint: string): void {
  try {
    execFileSync(command, args, { stdio: "ignore" });
  } catch {
    throw new Error(`${command} is missing: ${hint}`);
  }
}

export interface H2loadResult {
  rps: number;
  done: number;
  /** 2xx responses (for gRPC, HTTP 200 says nothing of grpc-status: check a call beforehand). */
  ok2xx: number;
  failed: number;
  /** h2load's own CPU seconds over its run (warm-up included). */
  h2loadCpuSeconds: number;
  /** Seconds of the measured window (h2load's -D). */
  seconds: number;
}

/**
 * Runs h2load under a shell that prints its own /proc stat after h2load has
 * exited: cutime + cstime are then h2load's CPU time.
 */
export function h2load(args: string[], seconds: number): H2loadResult {
  const out = execFileSync("/bin/sh", ["-c", 'h2load "$@"; rc=$?; echo "SHELLSTAT $(cat /proc/$$/stat)"; exit $rc', "sh", "-D", String(seconds), "--warm-up-time", "1", ...args], {
    encoding: "utf8",
    maxBuffer: 16 * 1024 * 1024,
  });
  const rps = Number(/finished in [\d.]+s, ([\d.]+) req\/s/.exec(out)?.[1]);
  const counts = /requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed/.exec(out);
  const codes = /status codes: (\d+) 2xx/.exec(out);
  const stat = /SHELLSTAT (.*)/.exec(out)?.[1] ?? "";
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return {
    rps,
    done: Number(counts?.[1]),
    ok2xx: Number(codes?.[1]),
    failed: Number(counts?.[3]),
    h2loadCpuSeconds: (Number(rest[13]) + Number(rest[14])) / TICKS_PER_SECOND,
    seconds,
  };
}
