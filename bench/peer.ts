// The peer, side by side with Tessera in the same run: node oidc-provider
// (bench/peer-server.ts) driven by the same cheap load generators as Tessera:
// h2load --h1 with 64 connections where the request is fixed
// (client_credentials with EdDSA JWT and with opaque access tokens,
// introspection of one opaque token), bench/loadgen.ts where it is not (the
// refresh_token grant following each session's rotating chain). The
// generator is calibrated here against h2load on the introspection request.
import { fork, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cpuLine, runLoad, type LoadResult } from "./loadgen.ts";
import { PEER_CLIENT_ID, PEER_CLIENT_SECRET, PEER_SCOPE, RESOURCE_OPAQUE } from "./peer-server.ts";
import { cpuSeconds, h2load, requireTool, rssMb, sampleRss, type H2loadResult } from "./proc.ts";
import { freePort, round } from "./server.ts";

export const PEER_HEADERS = {
  "content-type": "application/x-www-form-urlencoded",
  authorization: `Basic ${Buffer.from(`${encodeURIComponent(PEER_CLIENT_ID)}:${encodeURIComponent(PEER_CLIENT_SECRET)}`).toString("base64")}`,
};
export const CC_JWT_BODY = `grant_type=client_credentials&scope=${encodeURIComponent(PEER_SCOPE)}`;
export const CC_OPAQUE_BODY = `${CC_JWT_BODY}&resource=${encodeURIComponent(RESOURCE_OPAQUE)}`;
export const introspectBody = (token: string) => `token=${encodeURIComponent(token)}`;

export interface RunningPeer {
  child: ChildProcess;
  port: number;
  /** Refresh tokens of `n` fresh grants, minted in the peer with its own models. */
  seed(n: number): Promise<string[]>;
  /** One real request (node fetch), for checks before a load. */
  post(path: string, body: string): Promise<{ status: number; json: Record<string, unknown> }>;
  stop(): Promise<void>;
}

export async function startPeer(): Promise<RunningPeer> {
  const port = await freePort();
  const child = fork(new URL("./peer-server.ts", import.meta.url).pathname, ["--serve", String(port)], {
    execArgv: [],
    env: { PATH: process.env.PATH ?? "", NODE_ENV: "production" },
    // The provider's start-up notices (in-memory adapter, …) are kept, not shown, unless it fails.
    stdio: ["ignore", "ignore", "pipe", "ipc"],
  });
  let stderr = "";
  child.stderr!.on("data", (c: Buffer) => (stderr = (stderr + c.toString()).slice(-8000)));
  const [ready] = (await Promise.race([once(child, "message"), once(child, "exit").then(() => [{ exited: true }])])) as [{ listening?: number }];
  if (!ready.listening) throw new Error(`the peer (oidc-provider) did not start:\n${stderr}`);
  child.on("exit", (code, signal) => {
    if (signal !== "SIGTERM") console.error(`the peer (oidc-provider) exited with ${code ?? signal}:\n${stderr}`);
  });
  return {
    child,
    port,
    async seed(n) {
      child.send({ seed: n });
      const [reply] = (await once(child, "message")) as [{ tokens: string[] }];
      return reply.tokens;
    },
    async post(path, body) {
      const r = await fetch(`http://127.0.0.1:${port}${path}`, { method: "POST", headers: PEER_HEADERS, body });
      return { status: r.status, json: (await r.json()) as Record<string, unknown> };
    },
    async stop() {
      if (child.exitCode !== null) return;
      child.kill("SIGTERM");
      await once(child, "exit");
    },
  };
}

/** h2load --h1 -c 64 of one fixed request at the peer, with the peer's CPU over the run. */
export function h2loadPeer(peer: RunningPeer, path: string, body: string, seconds: number, dir: string): H2loadResult & { serverCpuSeconds: number } {
  const file = join(dir, `body-${Math.random().toString(36).slice(2)}.txt`);
  writeFileSync(file, body);
  const before = cpuSeconds(peer.child.pid!);
  const headers = Object.entries(PEER_HEADERS).flatMap(([k, v]) => ["-H", `${k}: ${v}`]);
  const r = h2load(["--h1", "-c", "64", "-d", file, ...headers, `http://127.0.0.1:${peer.port}${path}`], seconds);
  return { ...r, serverCpuSeconds: cpuSeconds(peer.child.pid!) - before };
}

/** The peer's refresh_token grant at 64 sessions in flight, each following its own rotating chain. */
export async function peerRefresh(peer: RunningPeer, seconds: number, sessions = 64): Promise<LoadResult> {
  const tokens = await peer.seed(sessions);
  const first = await peer.post("/token", `grant_type=refresh_token&refresh_token=${encodeURIComponent(tokens[0]!)}`);
  if (first.status !== 200 || typeof first.json.refresh_token !== "string" || typeof first.json.access_token !== "string" || first.json.id_token) {
    throw new Error(`the peer's refresh_token grant answered ${first.status} ${JSON.stringify(first.json)}`);
  }
  if (String(first.json.access_token).split(".").length !== 3) throw new Error("the peer's refreshed access token is not a JWT");
  tokens[0] = String(first.json.refresh_token);
  const r = await runLoad({ protocol: "http1", port: peer.port, path: "/token", headers: PEER_HEADERS, mode: "chain", tokens, inFlight: sessions, warmupSeconds: 2, seconds, serverPid: peer.child.pid });
  // Rotation must really be on: the first token of the chain is spent now.
  const reused = await peer.post("/token", `grant_type=refresh_token&refresh_token=${encodeURIComponent(String(first.json.refresh_token))}`);
  if (reused.status === 200) throw new Error("the peer accepted a rotated refresh token twice: rotation is off");
  return r;
}

export interface PeerResult {
  ccJwt: H2loadResult & { serverCpuSeconds: number };
  ccOpaque: H2loadResult & { serverCpuSeconds: number };
  /** Introspection of one token by h2load and by bench/loadgen.ts, in the order h2load, loadgen, loadgen, h2load: the generator's calibration. */
  introspect: (H2loadResult & { serverCpuSeconds: number })[];
  introspectGen: LoadResult[];
  refresh: LoadResult;
  idleRssMb: number;
  peakRssMb: number;
  lastRssMb: number;
}

export async function benchPeer(seconds = 8): Promise<PeerResult> {
  requireTool("h2load", ["--version"], "apt-get install -y nghttp2-client");
  const dir = mkdtempSync(join(tmpdir(), "tessera-bench-peer-"));
  const peer = await startPeer();
  try {
    for (const body of [CC_JWT_BODY, CC_OPAQUE_BODY]) {
      const r = await peer.post("/token", body);
      if (r.status !== 200 || typeof r.json.access_token !== "string") throw new Error(`the peer's client_credentials grant answered ${r.status} ${JSON.stringify(r.json)}`);
      const isJwt = String(r.json.access_token).split(".").length === 3;
      if (isJwt !== (body === CC_JWT_BODY)) throw new Error(`the peer's client_credentials token has the wrong format: ${r.json.access_token}`);
      if (isJwt && JSON.parse(Buffer.from(String(r.json.access_token).split(".")[0]!, "base64url").toString()).alg !== "EdDSA") throw new Error("the peer's JWT is not EdDSA-signed");
    }
    await new Promise((r) => setTimeout(r, 1000));
    const idleRssMb = rssMb(peer.child.pid);
    const rss = sampleRss(peer.child.pid);
    const ccJwt = h2loadPeer(peer, "/token", CC_JWT_BODY, seconds, dir);
    const ccOpaque = h2loadPeer(peer, "/token", CC_OPAQUE_BODY, seconds, dir);
    const token = String((await peer.post("/token", CC_OPAQUE_BODY)).json.access_token);
    const check = await peer.post("/token/introspection", introspectBody(token));
    if (check.json.active !== true) throw new Error(`the peer's introspection answered ${JSON.stringify(check.json)}`);
    const introspectH2load = () => h2loadPeer(peer, "/token/introspection", introspectBody(token), seconds, dir);
    const introspectLoadgen = () =>
      runLoad({ protocol: "http1", port: peer.port, path: "/token/introspection", headers: PEER_HEADERS, mode: "fixed", payloads: [introspectBody(token)], inFlight: 64, warmupSeconds: 1, seconds, serverPid: peer.child.pid });
    const introspect = [introspectH2load()];
    const introspectGen = [await introspectLoadgen(), await introspectLoadgen()];
    introspect.push(introspectH2load());
    const refresh = await peerRefresh(peer, seconds);
    const { peakMb, lastMb } = rss.stop();
    return { ccJwt, ccOpaque, introspect, introspectGen, refresh, idleRssMb, peakRssMb: peakMb, lastRssMb: lastMb };
  } finally {
    await peer.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function h2loadLine(r: H2loadResult & { serverCpuSeconds: number }): string {
  const window = r.seconds + 1; // h2load's CPU includes its 1 s warm-up
  return `${round(r.rps, 0)} req/s (${r.ok2xx} 2xx, ${r.failed} failed; CPU (cores busy): h2load ${(r.h2loadCpuSeconds / window).toFixed(2)}, server ${(r.serverCpuSeconds / window).toFixed(2)})`;
}

export function genLine(r: LoadResult): string {
  return `${round(r.rps, 0)} req/s (${r.requests} in ${round(r.seconds, 1)} s, ${r.failures} failed${r.errors.length ? `: ${r.errors[0]}` : ""}; ${cpuLine(r)})`;
}

const mean = (xs: { rps: number }[]) => xs.reduce((a, x) => a + x.rps, 0) / xs.length;

export function reportPeer(r: PeerResult): string {
  const lost = r.refresh.finalTokens?.filter((t) => t === null).length ?? 0;
  return [
    `oidc-provider ${peerVersion()} (production, in-memory adapter, EdDSA JWT access tokens, rotation on), one process`,
    `client_credentials, EdDSA JWT (h2load --h1 -c 64): ${h2loadLine(r.ccJwt)}`,
    `client_credentials, opaque     (h2load --h1 -c 64): ${h2loadLine(r.ccOpaque)}`,
    ...r.introspect.map((x, i) => `introspection, one opaque token, h2load --h1 -c 64, ${i ? "after " : "before"}: ${h2loadLine(x)}`),
    ...r.introspectGen.map((x) => `introspection, same request, bench/loadgen.ts, 64 conns: ${genLine(x)}`),
    `  generator calibration: loadgen / h2load = ${round((mean(r.introspectGen) / mean(r.introspect)) * 100)} % (means)`,
    `refresh_token grant, 64 rotating chains (loadgen): ${genLine(r.refresh)}; sessions lost: ${lost}`,
    `RSS: idle ${round(r.idleRssMb)} MB, peak under load ${round(r.peakRssMb)} MB, after ${round(r.lastRssMb)} MB`,
  ].join("\n");
}

export function peerVersion(): string {
  return (JSON.parse(readFileSync(new URL("../node_modules/oidc-provider/package.json", import.meta.url), "utf8")) as { version: string }).version;
}
