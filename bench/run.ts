// `npm run bench [startup|verify|issue|refresh|verify-distinct|login|peer|exchange|assertion-verify|client-verifier|revocation-propagation|replica-fanout|soak ...]`:
// every figure is measured against a floor or the peer in the same run; see
// bench/RESULTS.md for recorded results. BENCH_SECONDS sets the measured
// window of the load benchmarks (refresh, verify-distinct, login, peer,
// exchange, assertion-verify) and of each figure of each round of
// client-verifier; revocation-propagation and replica-fanout count
// revocations instead (BENCH_REVOCATIONS, default 200). soak runs for
// BENCH_SOAK_SECONDS (default 600) instead, on BENCH_SOAK_DB (postgres, pglite
// or both).
import { execFileSync } from "node:child_process";
import { cpus, loadavg } from "node:os";
import { benchAssertionVerify, reportAssertionVerify } from "./assertion-verify.ts";
import { benchClientVerifier, reportClientVerifier } from "./client-verifier.ts";
import { benchExchange, reportExchange } from "./exchange.ts";
import { benchIssue, reportIssue } from "./issue.ts";
import { benchLogin, reportLogin } from "./login.ts";
import { benchPeer, reportPeer } from "./peer.ts";
import { benchRefresh, reportRefresh } from "./refresh.ts";
import { benchReplicaFanout, reportReplicaFanout } from "./replica-fanout.ts";
import { benchRevocationPropagation, reportRevocationPropagation } from "./revocation-propagation.ts";
import { benchSoak, reportSoak } from "./soak.ts";
import { benchStartup, reportStartup } from "./startup.ts";
import { benchVerifyDistinct, reportVerifyDistinct } from "./verify-distinct.ts";
import { benchVerify, reportVerify } from "./verify.ts";
import { serverWorkers } from "./server.ts";

const benches: Record<string, (seconds?: number) => Promise<string>> = {
  startup: async () => reportStartup(await benchStartup()),
  verify: async () => reportVerify(await benchVerify()),
  issue: async () => reportIssue(await benchIssue()),
  refresh: async (s) => reportRefresh(await benchRefresh(s)),
  "verify-distinct": async (s) => reportVerifyDistinct(await benchVerifyDistinct(s)),
  login: async (s) => reportLogin(await benchLogin(s)),
  peer: async (s) => reportPeer(await benchPeer(s)),
  exchange: async (s) => reportExchange(await benchExchange(s)),
  "assertion-verify": async (s) => reportAssertionVerify(await benchAssertionVerify(s)),
  "client-verifier": async (s) => reportClientVerifier(await benchClientVerifier(s)),
  "revocation-propagation": async () => reportRevocationPropagation(await benchRevocationPropagation()),
  "replica-fanout": async () => reportReplicaFanout(await benchReplicaFanout()),
  soak: async () => reportSoak(await benchSoak()),
};

// npm start runs the build (dist/) that `npm run build` makes: make it from the sources as they are now.
execFileSync("npm", ["run", "--silent", "build"], { stdio: "inherit" });

const chosen = process.argv.slice(2);
for (const name of chosen) if (!benches[name]) throw new Error(`unknown benchmark ${name}; choose from ${Object.keys(benches).join(", ")}`);
const seconds = process.env.BENCH_SECONDS ? Number(process.env.BENCH_SECONDS) : undefined;
console.log(`Tessera benchmarks — ${new Date().toISOString()} — node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model ?? "?"})\n`);
if (process.env.BENCH_WORKERS) {
  console.log(`servers on PostgreSQL with TESSERA_WORKERS=${serverWorkers({ DATABASE_URL: "set" }).TESSERA_WORKERS} (BENCH_WORKERS): the server's CPU and RSS are its primary's and workers' together; PGlite runs stay one process\n`);
}
for (const [name, run] of Object.entries(benches)) {
  if (chosen.length && !chosen.includes(name)) continue;
  const started = performance.now();
  const load = loadavg()[0]!.toFixed(2); // other work on the machine shows here
  const report = await run(seconds);
  console.log(`## ${name} (${Math.round((performance.now() - started) / 1000)} s; 1-min load average ${load} before, ${loadavg()[0]!.toFixed(2)} after)\n${report}\n`);
}
