// Where a password login's CPU goes, per thread of the server: the login load
// of bench/login.ts (16 in flight over 16 users, 2 s warm-up + S seconds, on
// PostgreSQL, or on PGlite with ON=pglite), with each server thread's CPU time
// and run-queue wait (/proc/<pid>/task/<tid>/stat and schedstat) over the load.
//   node --conditions=tessera-source bench/login-threads.ts
//   HC=3 (TESSERA_PASSWORD_HASH_CONCURRENCY), S=10, IN_FLIGHT=1 (the cost without contention), EXTRA='{"TESSERA_…":"…"}' (more server environment)
// Not part of `npm run bench`: a diagnostic, with no target (bench/RESULTS.md, session 26).
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cpuLine, runLoad } from "./loadgen.ts";
import { loginLoadSpec, prepareLogins } from "./login.ts";
import { throwawayDatabase } from "./pg.ts";
import { startServer } from "./server.ts";

/** CPU seconds (utime + stime, at Linux's 100 ticks/s) and run-queue wait of each thread of `pid`. */
function threads(pid: number) {
  const m = new Map<string, { cpu: number; wait: number; comm: string }>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const cpu = (Number(f[11]) + Number(f[12])) / 100;
      const ss = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ");
      m.set(tid, { cpu, wait: Number(ss[1]) / 1e9, comm });
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return m;
}
const pg = process.env.ON !== "pglite";
const db = pg ? await throwawayDatabase("lt") : undefined;
const dir = mkdtempSync(join(tmpdir(), "lt-"));
const server = await startServer(dir, {
  ...(db ? { DATABASE_URL: db.url, TESSERA_MASTER_KEY: randomBytes(32).toString("hex") } : { DATABASE_URL: "" }),
  ...(process.env.HC ? { TESSERA_PASSWORD_HASH_CONCURRENCY: process.env.HC } : {}),
  ...(JSON.parse(process.env.EXTRA ?? "{}") as Record<string, string>),
});
try {
  const payloads = await prepareLogins(server.grpcPort);
  const before = threads(server.child.pid!);
  const spec = loginLoadSpec(server, payloads, Number(process.env.S ?? 10), pg);
  const r = await runLoad({ ...spec, inFlight: Number(process.env.IN_FLIGHT ?? spec.inFlight) });
  const after = threads(server.child.pid!);
  console.log(`${Math.round(r.rps)} logins/s, ${r.failures} failed; ${cpuLine(r)}`);
  for (const [tid, a] of after) {
    const b = before.get(tid) ?? { cpu: 0, wait: 0 };
    const cpu = a.cpu - b.cpu, wait = a.wait - b.wait;
    if (cpu > 0.05 || wait > 0.05) console.log(`${tid} ${a.comm.padEnd(16)} cpu ${cpu.toFixed(2)} s  runqueue-wait ${wait.toFixed(2)} s`);
  }
} finally {
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
  await db?.drop();
}
