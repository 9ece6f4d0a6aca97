// Issue 5: VerifyToken RPC throughput against a trivial RPC on the same server
// stack (grpc.health.v1.Health/Check passes through the same middleware), both
// driven by h2load at 64 concurrent streams (4 connections × 16 streams), so
// the client's cost does not hide the server's.
import { execFileSync } from "node:child_process";
import { connect } from "node:http2";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createChannel, createClient } from "nice-grpc";
import { IssueServiceDefinition } from "@tessera/client";
import { VerifyTokenRequest } from "@tessera/client";
import { ADMIN_PASSWORD, median, round, startServer } from "./server.ts";

const VERIFY = "/tessera.identity.v1.VerifyService/VerifyToken";
const ECHO = "/grpc.health.v1.Health/Check";

function grpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  Buffer.from(message).copy(frame, 5);
  return frame;
}

/** One real call with a real HTTP/2 client, returning the grpc-status trailer: h2load only sees HTTP 200. */
async function grpcStatus(port: number, path: string, body: Buffer): Promise<string> {
  const session = connect(`http://127.0.0.1:${port}`);
  try {
    return await new Promise<string>((resolve, reject) => {
      const req = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" });
      let status = "";
      req.on("response", (headers) => (status = String(headers["grpc-status"] ?? status)));
      req.on("trailers", (trailers) => (status = String(trailers["grpc-status"] ?? status)));
      req.on("data", () => undefined);
      req.on("end", () => resolve(status));
      req.on("error", reject);
      req.end(body);
    });
  } finally {
    session.close();
  }
}

function h2load(port: number, path: string, bodyFile: string, seconds: number): { rps: number; succeeded: number; failed: number } {
  const out = execFileSync(
    "h2load",
    ["-c", "4", "-m", "16", "-D", String(seconds), "--warm-up-time", "1", "-d", bodyFile, "-H", "content-type: application/grpc", "-H", "te: trailers", `http://127.0.0.1:${port}${path}`],
    { encoding: "utf8" },
  );
  const rps = Number(/finished in [\d.]+s, ([\d.]+) req\/s/.exec(out)?.[1]);
  const counts = /requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed/.exec(out);
  return { rps, succeeded: Number(counts?.[1]), failed: Number(counts?.[2]) };
}

export interface VerifyResult {
  echoRps: number[];
  verifyRps: number[];
  ratio: number;
  failed: number;
}

export async function benchVerify(rounds = 3, seconds = 5): Promise<VerifyResult> {
  try {
    execFileSync("h2load", ["--version"]);
  } catch {
    throw new Error("h2load is missing: apt-get install -y nghttp2-client");
  }
  const dir = mkdtempSync(join(tmpdir(), "tessera-bench-verify-"));
  const server = await startServer(dir);
  try {
    const channel = createChannel(`127.0.0.1:${server.grpcPort}`);
    const { accessToken } = await createClient(IssueServiceDefinition, channel).issueToken({
      credential: { $case: "password", value: { tenant: "system", username: "admin", password: ADMIN_PASSWORD } },
    });
    channel.close();
    const verifyBody = grpcFrame(VerifyTokenRequest.encode({ token: accessToken, audience: "" }).finish());
    const echoBody = grpcFrame(new Uint8Array());
    const verifyFile = join(dir, "verify.bin");
    const echoFile = join(dir, "echo.bin");
    writeFileSync(verifyFile, verifyBody);
    writeFileSync(echoFile, echoBody);
    for (const [path, body] of [[VERIFY, verifyBody], [ECHO, echoBody]] as const) {
      const status = await grpcStatus(server.grpcPort, path, body);
      if (status !== "0") throw new Error(`${path} answered grpc-status ${status}; the benchmark would measure failures`);
    }
    const echoRps: number[] = [];
    const verifyRps: number[] = [];
    let failed = 0;
    for (let i = 0; i < rounds; i++) {
      const echo = h2load(server.grpcPort, ECHO, echoFile, seconds);
      const verify = h2load(server.grpcPort, VERIFY, verifyFile, seconds);
      echoRps.push(echo.rps);
      verifyRps.push(verify.rps);
      failed += echo.failed + verify.failed;
    }
    // After the load, the token must still verify (the server answered, not merely 200).
    if ((await grpcStatus(server.grpcPort, VERIFY, verifyBody)) !== "0") throw new Error("VerifyToken failed after the load");
    return { echoRps, verifyRps, ratio: median(verifyRps) / median(echoRps), failed };
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function reportVerify(r: VerifyResult): string {
  return [
    `echo floor (Health/Check): ${r.echoRps.map((v) => round(v, 0)).join(", ")} req/s, median ${round(median(r.echoRps), 0)}`,
    `VerifyToken:               ${r.verifyRps.map((v) => round(v, 0)).join(", ")} req/s, median ${round(median(r.verifyRps), 0)}`,
    `ratio VerifyToken / echo:  ${round(r.ratio * 100)} %  (target >= 90 %, issue 15: ${r.ratio >= 0.9 ? "met" : "MISSED"}); h2load failures: ${r.failed}`,
  ].join("\n");
}
