// Issue 15: VerifyToken over many distinct tokens (the cache-miss path: every
// request's signature is checked; the 64 sessions' state is cached after its
// first load), against, in the same run:
//   - the echo floor (grpc.health.v1.Health/Check) and VerifyToken of one
//     token (the cached path), both with the same generator (bench/loadgen.ts)
//     and with h2load, which calibrates the generator (h2load cannot vary the
//     request body, so the distinct tokens need the generator);
//   - the peer's introspection of distinct opaque tokens (oidc-provider
//     refuses to introspect its JWTs: "Structured JWT Tokens cannot be
//     introspected"), same generator, and of one token with h2load.
//
// The distinct tokens: minting 40 000 through the API would take minutes
// (a login is an argon2 hash, a refresh a database transaction), so the
// benchmark logs in 64 sessions through the API and then signs copies of
// their access tokens with the server's own current signing key (read from
// the throwaway database and opened with the master key the benchmark gave
// the server, with src/tokens/master-key.ts and src/tokens/jwt.ts): each copy
// is the server's token with a fresh `jti`, indistinguishable from one it
// issued. This needs PostgreSQL (the key is read while the server runs).
import { createPrivateKey, createPublicKey, randomBytes, verify } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { signJwt, type AccessClaims } from "../src/tokens/jwt.ts";
import { open } from "../src/tokens/master-key.ts";
import { grpcCall, grpcFrame, grpcStringField1, runLoad, type LoadResult } from "./loadgen.ts";
import { CC_OPAQUE_BODY, genLine, h2loadLine, introspectBody, PEER_HEADERS, peerVersion, startPeer } from "./peer.ts";
import { throwawayDatabase } from "./pg.ts";
import { cpuSeconds, h2load, requireTool, sampleRss, treeCpuSeconds, type H2loadResult } from "./proc.ts";
import { seedSessions } from "./seed.ts";
import { round, startServer, verdict } from "./server.ts";

const VERIFY = "/tessera.identity.v1.VerifyService/VerifyToken";
const ECHO = "/grpc.health.v1.Health/Check";

type H2 = H2loadResult & { serverCpuSeconds: number };

function h2loadGrpc(port: number, pid: number, path: string, file: string, seconds: number): H2 {
  const before = treeCpuSeconds(pid);
  const r = h2load(["-c", "4", "-m", "16", "-d", file, "-H", "content-type: application/grpc", "-H", "te: trailers", `http://127.0.0.1:${port}${path}`], seconds);
  return { ...r, serverCpuSeconds: treeCpuSeconds(pid) - before };
}

const decode = (segment: string) => JSON.parse(Buffer.from(segment, "base64url").toString("utf8")) as Record<string, unknown>;

export interface VerifyDistinctResult {
  tokens: number;
  /** Bare Ed25519 verifications of these tokens per second, one thread (node:crypto). */
  ed25519PerSecond: number;
  /** Before and after the other runs (h2load, loadgen, …, loadgen, h2load), so that drift hits both alike. */
  echoH2load: H2[];
  echoGen: LoadResult[];
  oneH2load: H2;
  oneGen: LoadResult;
  distinct: LoadResult;
  peakRssMb: number;
  peer: { introspectH2load: H2; introspectGen: LoadResult; minted: LoadResult; distinct: LoadResult };
}

export async function benchVerifyDistinct(seconds = 6, tokens = 40_000): Promise<VerifyDistinctResult> {
  requireTool("h2load", ["--version"], "apt-get install -y nghttp2-client");
  const db = await throwawayDatabase("verify");
  const dir = mkdtempSync(join(tmpdir(), "tessera-bench-verify-distinct-"));
  const masterKey = randomBytes(32);
  let tessera: Omit<VerifyDistinctResult, "peer">;
  try {
    const server = await startServer(dir, { DATABASE_URL: db.url, TESSERA_MASTER_KEY: masterKey.toString("hex") });
    const pid = server.child.pid!;
    try {
      const seeded = await seedSessions(server.grpcPort, 64);
      const kid = String(decode(seeded.sessions[0]!.accessToken.split(".")[0]!).kid);
      const row = (await db.query("select private_key_encrypted from signing_keys where kid = $1", [kid])).rows[0] as { private_key_encrypted: string } | undefined;
      if (!row) throw new Error(`signing key ${kid} not found in signing_keys`);
      const privateKey = createPrivateKey({ key: open(masterKey, row.private_key_encrypted, `tessera signing key ${kid}`), format: "der", type: "pkcs8" });
      const claims = seeded.sessions.map((s) => decode(s.accessToken.split(".")[1]!) as unknown as AccessClaims);
      const distinctTokens = Array.from({ length: tokens }, (_, i) => signJwt({ ...claims[i % claims.length]!, jti: randomBytes(12).toString("base64url") }, kid, privateKey));
      // What the signature check alone costs: node:crypto on one thread, the server idle.
      const publicKey = createPublicKey(privateKey);
      const sample = distinctTokens.slice(0, 4000);
      const signStarted = performance.now();
      for (const token of sample) {
        const dot = token.lastIndexOf(".");
        if (!verify(null, Buffer.from(token.slice(0, dot)), publicKey, Buffer.from(token.slice(dot + 1), "base64url"))) throw new Error("a re-signed token does not verify");
      }
      const ed25519PerSecond = sample.length / ((performance.now() - signStarted) / 1000);
      // The copies verify (a real client reads grpc-status), and so does the token of the cached path.
      for (const token of [distinctTokens[0]!, distinctTokens[tokens - 1]!]) {
        const r = await grpcCall(server.grpcPort, VERIFY, grpcStringField1(token));
        if (r.status !== "0") throw new Error(`VerifyToken of a re-signed token answered grpc-status ${r.status}: ${r.message}`);
      }
      const one = seeded.sessions[0]!.accessToken;
      const echoFile = join(dir, "echo.bin");
      const oneFile = join(dir, "verify.bin");
      writeFileSync(echoFile, grpcFrame(new Uint8Array()));
      writeFileSync(oneFile, grpcStringField1(one));
      for (const [path, file] of [[ECHO, grpcFrame(new Uint8Array())], [VERIFY, grpcStringField1(one)]] as const) {
        const r = await grpcCall(server.grpcPort, path, file);
        if (r.status !== "0") throw new Error(`${path} answered grpc-status ${r.status}: ${r.message}`);
      }
      const gen = (path: string, mode: "fixed" | "list", payloads: string[], warmupSeconds = 1) =>
        runLoad({ protocol: "grpc", port: server.grpcPort, path, connections: 4, mode, payloads, payloadEncoding: "field1", inFlight: 64, warmupSeconds, seconds, serverPid: pid });
      const echoGenRun = () => runLoad({ protocol: "grpc", port: server.grpcPort, path: ECHO, connections: 4, mode: "fixed", payloads: [""], inFlight: 64, warmupSeconds: 1, seconds, serverPid: pid });
      const echoH2load = [h2loadGrpc(server.grpcPort, pid, ECHO, echoFile, seconds)];
      const echoGen = [await echoGenRun()];
      const oneH2load = h2loadGrpc(server.grpcPort, pid, VERIFY, oneFile, seconds);
      const oneGen = await gen(VERIFY, "fixed", [one]);
      const rss = sampleRss(pid);
      const distinct = await gen(VERIFY, "list", distinctTokens, 2);
      const { peakMb } = rss.stop();
      const after = await grpcCall(server.grpcPort, VERIFY, grpcStringField1(distinctTokens[tokens - 1]!));
      if (after.status !== "0") throw new Error(`VerifyToken failed after the load: ${after.status} ${after.message}`);
      echoGen.push(await echoGenRun());
      echoH2load.push(h2loadGrpc(server.grpcPort, pid, ECHO, echoFile, seconds));
      tessera = { tokens, ed25519PerSecond, echoH2load, echoGen, oneH2load, oneGen, distinct, peakRssMb: peakMb };
    } finally {
      await server.stop();
    }
  } finally {
    await db.drop();
    rmSync(dir, { recursive: true, force: true });
  }

  const peer = await startPeer();
  try {
    const load = (mode: "fixed" | "list", path: string, payloads: string[], collectAccessTokens = false) =>
      runLoad({ protocol: "http1", port: peer.port, path, headers: PEER_HEADERS, mode, payloads, inFlight: 64, warmupSeconds: 1, seconds, serverPid: peer.child.pid, collectAccessTokens });
    // Distinct opaque tokens from the peer's own client_credentials grant (its rate, with this generator, is reported too).
    const minted = await load("fixed", "/token", [CC_OPAQUE_BODY], true);
    const opaque = minted.accessTokens ?? [];
    const check = await peer.post("/token/introspection", introspectBody(opaque[0]!));
    if (check.json.active !== true) throw new Error(`the peer's introspection answered ${JSON.stringify(check.json)}`);
    const file = join(tmpdir(), `tessera-bench-introspect-${process.pid}.txt`);
    writeFileSync(file, introspectBody(opaque[0]!));
    let introspectH2load: H2;
    try {
      const before = cpuSeconds(peer.child.pid!);
      const headers = Object.entries(PEER_HEADERS).flatMap(([k, v]) => ["-H", `${k}: ${v}`]);
      const r = h2load(["--h1", "-c", "64", "-d", file, ...headers, `http://127.0.0.1:${peer.port}/token/introspection`], seconds);
      introspectH2load = { ...r, serverCpuSeconds: cpuSeconds(peer.child.pid!) - before };
    } finally {
      rmSync(file, { force: true });
    }
    const introspectGen = await load("fixed", "/token/introspection", [introspectBody(opaque[0]!)]);
    const distinct = await load("list", "/token/introspection", opaque.slice(1).map(introspectBody));
    return { ...tessera, peer: { introspectH2load, introspectGen, minted, distinct } };
  } finally {
    await peer.stop();
  }
}

export function reportVerifyDistinct(r: VerifyDistinctResult): string {
  const pct = (a: number, b: number) => `${round((a / b) * 100)} %`;
  const d = r.distinct.rps;
  const mean = (xs: { rps: number }[]) => xs.reduce((a, x) => a + x.rps, 0) / xs.length;
  const echoGen = mean(r.echoGen);
  const echoH2load = mean(r.echoH2load);
  return [
    `Tessera on PostgreSQL (throwaway database); 64 in flight (4 connections × 16 streams); ${r.tokens} distinct tokens of 64 sessions`,
    ...r.echoH2load.map((e, i) => `echo floor (Health/Check), h2load ${i ? "after " : "before"}: ${h2loadLine(e)}`),
    ...r.echoGen.map((e, i) => `echo floor (Health/Check), loadgen ${i ? "after " : "before"}: ${genLine(e)}`),
    `VerifyToken, one token (cached), h2load:  ${h2loadLine(r.oneH2load)}`,
    `VerifyToken, one token (cached), loadgen: ${genLine(r.oneGen)}`,
    `  generator calibration (loadgen / h2load): echo ${pct(echoGen, echoH2load)} (means of the runs before and after), VerifyToken ${pct(r.oneGen.rps, r.oneH2load.rps)}`,
    `VerifyToken, distinct tokens, loadgen:    ${genLine(r.distinct)}${r.distinct.exhausted ? " (list exhausted)" : ""}; server RSS peak ${round(r.peakRssMb)} MB`,
    `  bare Ed25519 verification of these tokens (node:crypto, one thread, server idle): ${round(r.ed25519PerSecond, 0)} /s`,
    `ratio distinct / echo (loadgen, mean of before and after): ${pct(d, echoGen)}; distinct / one token (loadgen): ${pct(d, r.oneGen.rps)}; one token / echo (h2load, as bench verify): ${pct(r.oneH2load.rps, echoH2load)}`,
    `peer (oidc-provider ${peerVersion()}), HTTP/1.1, 64 connections:`,
    `  client_credentials, opaque (loadgen, minting the tokens): ${genLine(r.peer.minted)}`,
    `  introspection, one token, h2load --h1:  ${h2loadLine(r.peer.introspectH2load)}`,
    `  introspection, one token, loadgen:      ${genLine(r.peer.introspectGen)}  (calibration ${pct(r.peer.introspectGen.rps, r.peer.introspectH2load.rps)})`,
    `  introspection, ${r.peer.minted.accessTokens?.length ?? 0} distinct tokens, loadgen: ${genLine(r.peer.distinct)}${r.peer.distinct.exhausted ? " (list exhausted)" : ""}`,
    "targets (issue 15; a load with failed calls fails its target):",
    `  VerifyToken distinct / bare Ed25519 of the same tokens: ${pct(d, r.ed25519PerSecond)}  (target >= 80 %: ${verdict(r.distinct.failures, d >= 0.8 * r.ed25519PerSecond)})`,
    `  VerifyToken distinct / peer introspection distinct (same generator): ${pct(d, r.peer.distinct.rps)}  (target >= 100 %: ${verdict(r.distinct.failures + r.peer.distinct.failures, d >= r.peer.distinct.rps)})`,
    `  VerifyToken one token / echo (h2load): ${pct(r.oneH2load.rps, echoH2load)}  (target >= 90 %: ${verdict(r.oneH2load.failed, r.oneH2load.rps >= 0.9 * echoH2load)})`,
    `  VerifyToken one token / peer introspection of one token (h2load): ${round(r.oneH2load.rps / r.peer.introspectH2load.rps, 2)}×  (target >= 1.5×: ${verdict(r.oneH2load.failed + r.peer.introspectH2load.failed, r.oneH2load.rps >= 1.5 * r.peer.introspectH2load.rps)})`,
  ].join("\n");
}
