// Issue 5: password IssueToken latency against a bare argon2id verification
// with the same parameters, measured in the same run.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createChannel, createClient } from "nice-grpc";
import { IssueServiceDefinition } from "@tessera/client";
import { VerifyServiceDefinition } from "@tessera/client";
import { hashPassword, verifyPassword } from "../src/users/password.ts";
import { ADMIN_PASSWORD, median, round, startServer } from "./server.ts";

export interface IssueResult {
  argon2Ms: number;
  issueMs: number;
  overheadMs: number;
  /** A database-free RPC (GetJwks) on the same channel: the transport's share of the overhead. */
  rpcFloorMs: number;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

export async function benchIssue(iterations = 100, warmup = 50): Promise<IssueResult> {
  const dir = mkdtempSync(join(tmpdir(), "tessera-bench-issue-"));
  const server = await startServer(dir);
  const channel = createChannel(`127.0.0.1:${server.grpcPort}`);
  try {
    const issue = createClient(IssueServiceDefinition, channel);
    const verify = createClient(VerifyServiceDefinition, channel);
    const request = { credential: { $case: "password" as const, value: { tenant: "system", username: "admin", password: ADMIN_PASSWORD } } };
    const hash = await hashPassword(ADMIN_PASSWORD);
    for (let i = 0; i < warmup; i++) {
      await issue.issueToken(request);
      await verifyPassword(hash, ADMIN_PASSWORD);
    }
    // Interleave so that drifting machine load hits both series alike.
    const argon2: number[] = [];
    const issued: number[] = [];
    const rpc: number[] = [];
    for (let i = 0; i < iterations; i++) {
      argon2.push(await timed(() => verifyPassword(hash, ADMIN_PASSWORD)));
      issued.push(await timed(() => issue.issueToken(request)));
      rpc.push(await timed(() => verify.getJwks({})));
    }
    const argon2Ms = median(argon2);
    const issueMs = median(issued);
    return { argon2Ms, issueMs, overheadMs: issueMs - argon2Ms, rpcFloorMs: median(rpc) };
  } finally {
    channel.close();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function reportIssue(r: IssueResult): string {
  return [
    `bare argon2id verify (m=19 MiB, t=2, p=1): ${round(r.argon2Ms, 2)} ms median`,
    `IssueToken (password) over gRPC:           ${round(r.issueMs, 2)} ms median`,
    `added by IssueToken:                       ${round(r.overheadMs, 2)} ms  (target <= 5 ms: ${r.overheadMs <= 5 ? "met" : "MISSED"})`,
    `  of which a database-free RPC round trip: ${round(r.rpcFloorMs, 2)} ms (GetJwks on the same channel)`,
    `  added beyond that round trip:           ${round(r.overheadMs - r.rpcFloorMs, 2)} ms  (target <= 3 ms, issue 15: ${r.overheadMs <= r.rpcFloorMs + 3 ? "met" : "MISSED"})`,
  ].join("\n");
}
