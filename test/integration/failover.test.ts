// Issue 14: the fault scenarios of scripts/fault/failover.ts as tests. Each
// makes PostgreSQL clusters of its own with Debian's tools (pg_createcluster
// as root; never the machine's other clusters), runs real Tessera processes
// on them under mixed load, breaks the database mid-load and checks that
// nothing acknowledged was lost and that the server recovered by itself:
//   - failover: the primary stopped hard, its synchronous standby promoted,
//     the two replicas' proxy re-pointed to it;
//   - restart: PostgreSQL stopped (fast) and started again under one replica;
//   - revoke-cut: the database lost the instant a revocation's COMMIT was
//     answered: the replica that acknowledged it must not accept the session.
// About 25 + 20 + 10 s. Skipped, saying why, without root or postgresql-common.
import { afterAll, describe, expect, it } from "vitest";
import { clusterToolsMissing, dropAllClusters } from "../../scripts/fault/pg-cluster.ts";
import { formatReport, formatRevokeCut, runFailover, runRestart, runRevokeCut, type ScenarioReport } from "../../scripts/fault/scenarios.ts";

// It brings its own clusters: one run is enough, not again under TEST_DATABASE_URL.
// Opt-in (TESSERA_FAULT_TESTS=1, or npm run fault:failover): about a minute of heavy load on two cores,
// as root. One run in four once showed a transient false SESSION_REVOKED under failover; eleven runs
// since passed, and a state read as missing is now trusted for a second only (bench/RESULTS.md).
// CI runs the process-level faults (faults.test.ts) instead.
const missing =
  process.env.TESSERA_FAULT_TESTS !== "1"
    ? "opt-in: TESSERA_FAULT_TESTS=1 (or npm run fault:failover)"
    : process.env.TEST_DATABASE_URL
      ? "ran in the npm test run already (it makes PostgreSQL clusters of its own)"
      : clusterToolsMissing();
if (missing) console.warn(`test/integration/failover.test.ts skipped: ${missing}`);

function expectPassed(report: ScenarioReport): void {
  console.log(formatReport(report));
  expect(report.problems, formatReport(report)).toEqual([]);
  // What the scenario promises, spelled out (problems already covers each of them).
  expect(report.calls.otherFailures).toEqual({});
  expect(report.calls.overDeadline).toBe(0);
  expect(report.outage.failedCalls).toBeGreaterThan(0);
  expect(report.outage.perReplica.every((r) => r.firstOkWriteAfterMs !== undefined)).toBe(true);
  expect(report.database.withoutTokens).toEqual([]);
  expect(report.database.liveTokensNotOne).toEqual([]);
  expect(report.database.acknowledgedMissing).toEqual([]);
}

describe.skipIf(!!missing)(missing ? `PostgreSQL faults (skipped: ${missing})` : "PostgreSQL faults on clusters of their own", () => {
  afterAll(async () => {
    await dropAllClusters();
  });

  it("a synchronous standby promoted mid-load: the replicas switch without a restart and lose nothing acknowledged", { timeout: 120_000 }, async () => {
    const report = await runFailover({ beforeMs: 4_000, afterMs: 4_000 });
    expectPassed(report);
    expect(report.checks.usersChecked).toBeGreaterThan(0);
    expect(report.checks.revokedChecked).toBeGreaterThan(0);
    expect(report.checks.liveChecked).toBeGreaterThan(0);
  });

  it("PostgreSQL stopped and started mid-load: calls fail UNAVAILABLE within their deadline, and the replica recovers", { timeout: 120_000 }, async () => {
    const report = await runRestart({ beforeMs: 4_000, afterMs: 4_000 });
    expectPassed(report);
    expect(report.outage.deadlineExceeded).toBe(0);
  });

  // One run for the two tests below: the precondition (every revocation acknowledged), and the promise.
  // (Its replica polls the revocation log a minute apart: no periodic poll reads the log between the commit and the cut by chance.)
  let revokeCut: ReturnType<typeof runRevokeCut> | undefined;
  const cutReport = () => (revokeCut ??= runRevokeCut({ rounds: 2 }).then((r) => (console.log(formatRevokeCut(r)), r)));

  it("the database lost right after a revocation's commit: RevokeSession still answers OK (the commit happened)", { timeout: 120_000 }, async () => {
    const report = await cutReport();
    expect(report.rounds.map((r) => r.revoke)).toEqual(["OK", "OK"]);
    // The replica hears of it eventually: refused once the database is back.
    expect(report.rounds.every((r) => r.refusedAfterMs !== undefined)).toBe(true);
  });

  // (It used to accept the session from its cache until its next successful read of the log, up to
  // TESSERA_REVOCATION_STALE_LIMIT: the read after the commit failed silently. Now a failed read-back
  // distrusts the cache, and verifications read the database: UNAVAILABLE while it is gone.)
  it("the database lost right after a revocation's commit: the replica that acknowledged it refuses the session at once", { timeout: 120_000 }, async () => {
    const report = await cutReport();
    expect(report.rounds.map((r) => r.verifyRightAfter)).not.toContain("OK (accepted)");
  });
});
