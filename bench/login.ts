// Issue 15: login throughput (IssueToken, password credential) at 16 in
// flight (the issue's figure) over 16 users, against, in the same run:
//   - the floor: bare argon2id verifications with the server's parameters
//     (src/users/password.ts), as many at once as the server runs
//     (TESSERA_PASSWORD_HASH_CONCURRENCY, default the core count), measured
//     in this process before and after the loads;
//   - the peer's client_credentials grant with EdDSA JWTs (h2load --h1, 64
//     connections): what the issue compares logins with, although it hashes
//     no password.
// On PostgreSQL (throwaway database) and on PGlite.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { IssueTokenRequest } from "@tessera/client";
import { hashPassword, verifyPassword } from "../src/users/password.ts";
import { grpcCall, grpcFrame, runLoad, type LoadResult, type LoadSpec } from "./loadgen.ts";
import { CC_JWT_BODY, genLine, h2loadLine, PEER_HEADERS, peerVersion, startPeer } from "./peer.ts";
import { throwawayDatabase } from "./pg.ts";
import { cpuSeconds, h2load, requireTool, type H2loadResult } from "./proc.ts";
import { BENCH_TENANT, seedSessions, userName, userPassword } from "./seed.ts";
import { round, startServer, verdict, type RunningServer } from "./server.ts";

const ISSUE = "/tessera.identity.v1.IssueService/IssueToken";
const USERS = 16;
const LOGINS_IN_FLIGHT = 16;
/** Issue 15: logins at least this share of the bare argon2id floor. */
const LOGIN_TARGET = 0.9;

/** argon2id verifications per second, `concurrency` at a time, for `seconds`. */
async function argon2Rate(concurrency: number, seconds: number): Promise<number> {
  const hash = await hashPassword("bench-floor-long-password");
  let done = 0;
  const until = performance.now() + seconds * 1000;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < until) {
        await verifyPassword(hash, "bench-floor-long-password");
        done++;
      }
    }),
  );
  return done / ((performance.now() - start) / 1000);
}

/** Seeds the benchmark's users on a running server and checks one login: the IssueToken bodies (base64) the load cycles through. */
export async function prepareLogins(port: number): Promise<string[]> {
  await seedSessions(port, 0, USERS);
  const payloads = Array.from({ length: USERS }, (_, i) =>
    Buffer.from(IssueTokenRequest.encode(IssueTokenRequest.fromPartial({ credential: { $case: "password", value: { tenant: BENCH_TENANT, username: userName(i), password: userPassword(i) } } })).finish()).toString("base64"),
  );
  const check = await grpcCall(port, ISSUE, grpcFrame(Buffer.from(payloads[0]!, "base64")));
  if (check.status !== "0") throw new Error(`IssueToken answered grpc-status ${check.status}: ${check.message}`);
  return payloads;
}

/** The login load: 16 in flight (the issue's figure) over the users' bodies on 4 connections, after 2 s of warm-up. */
export function loginLoadSpec(server: RunningServer, payloads: string[], seconds: number, watchPostgres: boolean): LoadSpec {
  return { protocol: "grpc", port: server.grpcPort, path: ISSUE, connections: 4, mode: "cycle", payloads, inFlight: LOGINS_IN_FLIGHT, warmupSeconds: 2, seconds, serverPid: server.child.pid, watchPostgres };
}

async function loginLoad(env: Record<string, string>, seconds: number): Promise<LoadResult> {
  const dir = mkdtempSync(join(tmpdir(), "tessera-bench-login-"));
  try {
    const server = await startServer(dir, env);
    try {
      const payloads = await prepareLogins(server.grpcPort);
      return await runLoad(loginLoadSpec(server, payloads, seconds, !!env.DATABASE_URL));
    } finally {
      await server.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface LoginResult {
  concurrency: number;
  /** argon2id verifications per second before the PostgreSQL load, between the loads, after the PGlite load. */
  argon2: number[];
  postgres: LoginResultDb;
  pglite: LoginResultDb;
  peerCcJwt: H2loadResult & { serverCpuSeconds: number };
}
type LoginResultDb = LoadResult;

export async function benchLogin(seconds = 10): Promise<LoginResult> {
  requireTool("h2load", ["--version"], "apt-get install -y nghttp2-client");
  const concurrency = Number(process.env.TESSERA_PASSWORD_HASH_CONCURRENCY) || availableParallelism();
  // The floor is measured before, between and after the two loads; each load is compared with the
  // floors on either side of it (a busy machine drifts).
  const floorSeconds = Math.min(seconds, 6);
  const argon2: number[] = [await argon2Rate(concurrency, floorSeconds)];
  const db = await throwawayDatabase("login");
  let postgres: LoadResult;
  try {
    postgres = await loginLoad({ DATABASE_URL: db.url, TESSERA_MASTER_KEY: randomBytes(32).toString("hex") }, seconds);
  } finally {
    await db.drop();
  }
  argon2.push(await argon2Rate(concurrency, floorSeconds));
  const pglite = await loginLoad({ DATABASE_URL: "" }, seconds);
  argon2.push(await argon2Rate(concurrency, floorSeconds));

  const peer = await startPeer();
  let peerCcJwt: LoginResult["peerCcJwt"];
  const file = join(tmpdir(), `tessera-bench-cc-${process.pid}.txt`);
  try {
    writeFileSync(file, CC_JWT_BODY);
    const check = await peer.post("/token", CC_JWT_BODY);
    if (check.status !== 200) throw new Error(`the peer's client_credentials grant answered ${check.status}`);
    const before = cpuSeconds(peer.child.pid!);
    const headers = Object.entries(PEER_HEADERS).flatMap(([k, v]) => ["-H", `${k}: ${v}`]);
    const r = h2load(["--h1", "-c", "64", "-d", file, ...headers, `http://127.0.0.1:${peer.port}/token`], seconds);
    peerCcJwt = { ...r, serverCpuSeconds: cpuSeconds(peer.child.pid!) - before };
  } finally {
    rmSync(file, { force: true });
    await peer.stop();
  }
  return { concurrency, argon2, postgres, pglite, peerCcJwt };
}

export function reportLogin(r: LoginResult): string {
  const [a0, a1, a2] = r.argon2 as [number, number, number];
  const floorPg = (a0 + a1) / 2;
  const floorLite = (a1 + a2) / 2;
  const pct = (a: number, b: number) => `${round((a / b) * 100)} %`;
  const target = (load: LoadResult, floor: number) => verdict(load.failures, load.rps >= LOGIN_TARGET * floor);
  return [
    `argon2id floor (m=19 MiB, t=2, p=1, ${r.concurrency} at a time, in the bench process): ${round(a0)} /s before, ${round(a1)} /s between, ${round(a2)} /s after the loads`,
    `IssueToken (password), ${LOGINS_IN_FLIGHT} in flight over ${USERS} users, PostgreSQL: ${genLine(r.postgres)}`,
    `IssueToken (password), ${LOGINS_IN_FLIGHT} in flight over ${USERS} users, PGlite:     ${genLine(r.pglite)}`,
    `peer (oidc-provider ${peerVersion()}) client_credentials, EdDSA JWT (h2load --h1 -c 64): ${h2loadLine(r.peerCcJwt)}`,
    `ratio login / argon2id floor (the floors either side): PostgreSQL ${pct(r.postgres.rps, floorPg)} (of ${round(floorPg)} /s; target >= ${LOGIN_TARGET * 100} %: ${target(r.postgres, floorPg)}), PGlite ${pct(r.pglite.rps, floorLite)} (of ${round(floorLite)} /s; ${target(r.pglite, floorLite)})`,
    `ratio login / peer client_credentials: PostgreSQL ${pct(r.postgres.rps, r.peerCcJwt.rps)}, PGlite ${pct(r.pglite.rps, r.peerCcJwt.rps)}`,
  ].join("\n");
}
