// The minecraft credential (Argus's Mojang path) over the public gRPC API,
// against a real HTTP server on loopback that implements the session
// server's hasJoined: valid, not joined, slow past the timeout, malformed,
// mismatched, failing, and gone.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { gzipSync } from "node:zlib";
import { Status } from "nice-grpc";
import { RetryInfo } from "nice-grpc-error-details";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectFailure } from "../support/errors.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { decodePart } from "../support/tokens.ts";
import { minecraftDigest } from "../../src/federation/index.ts";

type Answer = (res: ServerResponse) => void;

/** hasJoined answers by username, like the real session server after a `join`. */
const players = new Map<string, Answer>();
const calls: { username: string; serverId: string }[] = [];
let sessionServer: Server;
let server: TestServer;
let admin: TestServer["clients"];
let tenantId: string;
let defaultGroupPermission: string;

const profile = (id: string, name: string): Answer => (res) => {
  res.writeHead(200, { "content-type": "application/json" });
  res.end(JSON.stringify({ id: id.replaceAll("-", ""), name, properties: [{ name: "textures", value: "e30=" }] }));
};
const notJoined: Answer = (res) => {
  res.writeHead(204);
  res.end();
};

const STEVE = "069a79f4-44e9-4726-a5be-fca90e38aaf5";
const ALEX = "61699b2e-d327-4a01-9f1e-0ea8c3f06bc6";
const SERVER_HASH = "-4ed1f46bbe04bc756bcb17c0c7ce3e4632f06a48";

function handle(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? "/", "http://x");
  if (url.pathname !== "/session/minecraft/hasJoined") {
    res.writeHead(404);
    res.end();
    return;
  }
  const username = url.searchParams.get("username") ?? "";
  calls.push({ username, serverId: url.searchParams.get("serverId") ?? "" });
  // Profile names are case-insensitive at the session server.
  const answer = [...players].find(([name]) => name.toLowerCase() === username.toLowerCase())?.[1];
  (answer ?? notJoined)(res);
}

let lastChallenge: { serverId: string; serverHash: string } | undefined;

/**
 * A login as a Tessera-aware launcher does it: a challenge for the server address, `join` with its
 * digest (the test's session server lets players in by name), IssueToken with the server id. With
 * `serverHash`, Argus's flow instead (a hash the client chose; this server allows it).
 */
async function minecraft(username: string, serverAddress = "mc.craft.test", requestedPermissions: string[] = [], serverHash?: string) {
  if (serverHash !== undefined) {
    return server.clients.issue.issueToken({ credential: { $case: "minecraft", value: { username, serverHash, serverAddress, serverId: "" } }, requestedPermissions });
  }
  lastChallenge = await server.clients.issue.createMinecraftChallenge({ serverAddress });
  return server.clients.issue.issueToken({ credential: { $case: "minecraft", value: { username, serverHash: "", serverAddress, serverId: lastChallenge.serverId } }, requestedPermissions });
}

beforeAll(async () => {
  sessionServer = createServer(handle);
  sessionServer.listen(0, "127.0.0.1");
  await new Promise((resolve) => sessionServer.once("listening", resolve));
  const port = (sessionServer.address() as AddressInfo).port;
  server = await startTestServer({
    TESSERA_MINECRAFT_CLIENT_HASH: "true",
    TESSERA_MINECRAFT_SESSION_URL: `http://127.0.0.1:${port}/session/minecraft`,
    TESSERA_REMOTE_CONNECT_TIMEOUT: "500ms",
    TESSERA_REMOTE_TIMEOUT: "1s",
    TESSERA_REMOTE_MAX_IN_FLIGHT: "4",
    TESSERA_LOGIN_FAILURES_PER_ACCOUNT_AND_ADDRESS: "3",
  });
  admin = server.as(server.adminToken);
  tenantId = (await admin.tenants.createTenant({ tenant: { name: "craft", domains: ["mc.craft.test", "play.craft.test:25565"] } })).tenant!.id;
  await admin.tenants.createTenant({ tenant: { name: "other", domains: ["mc.other.test"] } });
  // A default group of the tenant: players join it at their first login.
  defaultGroupPermission = "lobby.games.join";
  await admin.permissions.registerMicroservice({ name: "lobby", version: "1.0.0", permissions: [{ codename: defaultGroupPermission, description: "join a game" }] });
  await admin.permissions.createGroup({ tenantId, group: { name: "players", permissions: [defaultGroupPermission], default: true } });
  players.set("Steve", profile(STEVE, "Steve"));
});
afterAll(async () => {
  await server?.close();
  sessionServer?.closeAllConnections();
  sessionServer?.close();
});

describe("IssueToken (minecraft)", () => {
  it("logs a player in to the tenant of the server address, keyed by its UUID, with upn <uuid>@<tenant>", async () => {
    calls.length = 0;
    const res = await minecraft("Steve", "MC.Craft.Test:25565");
    // The session server was asked about the join with the challenge's digest, which Tessera computed itself.
    expect(calls).toEqual([{ username: "Steve", serverId: minecraftDigest(lastChallenge!.serverId) }]);
    expect(lastChallenge!.serverHash).toBe(minecraftDigest(lastChallenge!.serverId));
    const claims = decodePart(res.accessToken, 1);
    expect(claims).toMatchObject({ tid: tenantId, upn: `${STEVE}@craft`, preferred_username: "Steve@minecraft" });
    expect(res.grantedPermissions).toContain(defaultGroupPermission);
    expect(res.refreshToken).toMatch(/^tsr_/);
    const { principal } = await server.clients.verify.verifyToken({ token: res.accessToken });
    expect(principal).toMatchObject({ upn: `${STEVE}@craft`, username: "Steve@minecraft", tenantName: "craft" });
    const me = await server.as(res.accessToken).users.getMe({});
    expect(me.user).toMatchObject({ username: "Steve@minecraft" });
    expect(me.groups.map((g) => g.name).sort()).toEqual(["Game client", "players"]);

    // The same player again (another address of the tenant): the same user.
    const again = await minecraft("steve", "play.craft.test:25565");
    expect(decodePart(again.accessToken, 1).sub).toBe(claims.sub);
    // A trailing dot and Forge's NUL-separated handshake markers are not part of the address.
    const forge = await minecraft("Steve", "mc.craft.test.\u0000FML2\u0000");
    expect(decodePart(forge.accessToken, 1).sub).toBe(claims.sub);
  });

  it("is a different user in another tenant, and never collides with a password user's name", async () => {
    const craft = decodePart((await minecraft("Steve")).accessToken, 1);
    const other = decodePart((await minecraft("Steve", "mc.other.test")).accessToken, 1);
    expect(other.sub).not.toBe(craft.sub);
    expect(other.upn).toBe(`${STEVE}@other`);
    // A password user may be called "Steve"; the player is "Steve@minecraft", which no password user can be.
    await admin.users.createUser({ tenantId, user: { username: "Steve" }, password: "a long enough password" });
    await expectFailure(admin.users.createUser({ tenantId, user: { username: "Steve@minecraft" }, password: "a long enough password" }), {
      code: Status.INVALID_ARGUMENT,
      reason: "INVALID_INPUT",
      fields: ["user.username"],
    });
    expect(decodePart((await minecraft("Steve")).accessToken, 1).sub).toBe(craft.sub);
    expect(decodePart((await server.login("craft", "Steve", "a long enough password")).accessToken, 1).sub).not.toBe(craft.sub);
  });

  it("follows a name change by the UUID, and a name that changed hands does not take over the old holder", async () => {
    players.set("Alex", profile(ALEX, "Alex"));
    const first = decodePart((await minecraft("Alex")).accessToken, 1);
    // Alex renames to Alexa; the player who takes the name "Alex" is someone else.
    players.delete("Alex");
    players.set("Alexa", profile(ALEX, "Alexa"));
    const NEW_ALEX = "0f2b8d2e-1c55-4f7e-9a77-3c2b1f0e9d11";
    players.set("Alex", profile(NEW_ALEX, "Alex"));
    const newcomer = decodePart((await minecraft("Alex")).accessToken, 1);
    expect(newcomer.sub).not.toBe(first.sub);
    // The old holder has not logged in since, so the name is still taken: the newcomer's is disambiguated.
    expect(newcomer.preferred_username).toMatch(/^Alex~[0-9a-f]{8}@minecraft$/);
    const renamed = decodePart((await minecraft("Alexa")).accessToken, 1);
    expect(renamed).toMatchObject({ sub: first.sub, preferred_username: "Alexa@minecraft", upn: `${ALEX}@craft` });
  });

  it("creates one user when a player's first logins race", async () => {
    const RACER = "5c8f1e3a-9b2d-4c6e-8f0a-1b2c3d4e5f60";
    players.set("Racer", profile(RACER, "Racer"));
    const results = await Promise.all(Array.from({ length: 4 }, () => minecraft("Racer")));
    expect(new Set(results.map((r) => decodePart(r.accessToken, 1).sub)).size).toBe(1);
  });

  it("binds a challenge to its tenant and uses it up; Argus's client-chosen hash logs in once", async () => {
    const forCraft = await server.clients.issue.createMinecraftChallenge({ serverAddress: "mc.craft.test" });
    const withChallenge = (serverId: string, serverAddress: string) =>
      server.clients.issue.issueToken({ credential: { $case: "minecraft", value: { username: "Steve", serverHash: "", serverAddress, serverId } } });
    // A server operator who got a challenge for its own tenant cannot spend it on another tenant's address.
    await expectFailure(withChallenge(forCraft.serverId, "mc.other.test"), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
    await withChallenge(forCraft.serverId, "mc.craft.test");
    const replay = await expectFailure(withChallenge(forCraft.serverId, "mc.craft.test"), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
    expect(replay.details).toContain("already used");
    // An edited challenge (its expiry pushed out) is not one this server issued.
    const [prefix, nonce, , mac] = forCraft.serverId.split(".");
    await expectFailure(withChallenge(`${prefix}.${nonce}.zzzzzz.${mac}`, "mc.craft.test"), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
    // The client-chosen hash (allowed on this server): once.
    const hash = "-1f0e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d";
    await minecraft("Steve", "mc.craft.test", [], hash);
    await expectFailure(minecraft("Steve", "mc.craft.test", [], hash), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
  });

  it("refuses a server address no tenant has, without asking the session server", async () => {
    calls.length = 0;
    await expectFailure(minecraft("Steve", "mc.nowhere.test"), { code: Status.NOT_FOUND, reason: "TENANT_NOT_FOUND" });
    // The port is ignored, but the host must match exactly (no suffix matching).
    await expectFailure(minecraft("Steve", "evil-mc.craft.test"), { code: Status.NOT_FOUND, reason: "TENANT_NOT_FOUND" });
    await expectFailure(minecraft("Steve", "mc.craft.test.evil"), { code: Status.NOT_FOUND, reason: "TENANT_NOT_FOUND" });
    // A domain listed with a port matches that port only: "play.craft.test:25565" does not take other ports.
    await expectFailure(minecraft("Steve", "play.craft.test:25566"), { code: Status.NOT_FOUND, reason: "TENANT_NOT_FOUND" });
    expect(calls).toEqual([]);
  });

  it("refuses bad input with field violations before any remote call", async () => {
    calls.length = 0;
    await expectFailure(minecraft("not a name!", "mc.craft.test", [], "zz"), {
      code: Status.INVALID_ARGUMENT,
      reason: "INVALID_INPUT",
      fields: ["minecraft.username", "minecraft.server_hash"],
    });
    await expectFailure(minecraft("Steve", " ", [], SERVER_HASH), { code: Status.INVALID_ARGUMENT, reason: "INVALID_INPUT", fields: ["minecraft.server_address"] });
    await expectFailure(minecraft("Steve", " "), { code: Status.INVALID_ARGUMENT, reason: "INVALID_INPUT", fields: ["server_address"] });
    await expectFailure(server.clients.issue.issueToken({ credential: { $case: "minecraft", value: { username: "Steve", serverHash: "", serverAddress: "mc.craft.test", serverId: "tmc1.forged" } } }), {
      code: Status.INVALID_ARGUMENT,
      reason: "INVALID_INPUT",
      fields: ["minecraft.server_id"],
    });
    expect(calls).toEqual([]);
  });

  it("gives INVALID_CREDENTIALS for a player who has not joined, a malformed answer, or an answer about someone else", async () => {
    await expectFailure(minecraft("Nobody"), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
    players.set("Garbled", (res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end('{"id": "069a79f4');
    });
    await expectFailure(minecraft("Garbled"), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
    players.set("NoId", (res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ name: "NoId" }));
    });
    await expectFailure(minecraft("NoId"), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
    players.set("Imposter", profile(STEVE, "Steve"));
    await expectFailure(minecraft("Imposter"), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
  });

  it("throttles failed logins per account and address like password logins", async () => {
    for (let i = 0; i < 3; i++) await expectFailure(minecraft("Guessed"), { code: Status.UNAUTHENTICATED, reason: "INVALID_CREDENTIALS" });
    calls.length = 0;
    const blocked = await expectFailure(minecraft("Guessed"), { code: Status.RESOURCE_EXHAUSTED, reason: "TOO_MANY_ATTEMPTS" });
    expect(blocked.extra.some((d) => d.$type === RetryInfo.$type)).toBe(true);
    // A blocked caller costs no remote call; other players are not affected.
    expect(calls).toEqual([]);
    await minecraft("Steve");
  });

  it("answers UNAVAILABLE with RetryInfo, never a hang, when the session server is slow, failing or overloaded", async () => {
    players.set("Slow", (res) => {
      setTimeout(() => profile(STEVE, "Slow")(res), 5000).unref();
    });
    const slow = await expectFailure(server.clients.issue.issueToken(
      { credential: { $case: "minecraft", value: { username: "Slow", serverHash: SERVER_HASH, serverAddress: "mc.craft.test", serverId: "" } } },
      { signal: AbortSignal.timeout(4000) },
    ), { code: Status.UNAVAILABLE, reason: "UPSTREAM_UNAVAILABLE" });
    expect(slow.extra.some((d) => d.$type === RetryInfo.$type)).toBe(true);

    players.set("Failing", (res) => {
      res.writeHead(503);
      res.end("down for maintenance");
    });
    await expectFailure(minecraft("Failing"), { code: Status.UNAVAILABLE, reason: "UPSTREAM_UNAVAILABLE" });
    // A compressed answer (a decompression bomb fits in a few hundred bytes) is not read.
    players.set("Bomb", (res) => {
      res.writeHead(200, { "content-type": "application/json", "content-encoding": "gzip" });
      res.end(gzipSync(Buffer.alloc(4 * 1024 * 1024, " ")));
    });
    await expectFailure(minecraft("Bomb"), { code: Status.UNAVAILABLE, reason: "UPSTREAM_UNAVAILABLE" });
    players.set("Reset", (res) => res.socket?.destroy());
    await expectFailure(minecraft("Reset"), { code: Status.UNAVAILABLE, reason: "UPSTREAM_UNAVAILABLE" });
    // Unavailability is not a failed login: it never blocks the player.
    for (let i = 0; i < 4; i++) await expectFailure(minecraft("Failing"), { code: Status.UNAVAILABLE, reason: "UPSTREAM_UNAVAILABLE" });

    // At most TESSERA_REMOTE_MAX_IN_FLIGHT (4) calls at once; the others are refused at once.
    for (let i = 0; i < 6; i++) players.set(`Slow${i}`, players.get("Slow")!);
    const many = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => minecraft(`Slow${i}`)));
    const reasons = await Promise.all(many.map((m) => expectFailure(m.status === "rejected" ? Promise.reject(m.reason) : Promise.resolve(), { code: Status.UNAVAILABLE, reason: "UPSTREAM_UNAVAILABLE" })));
    expect(reasons.filter((r) => r.details.includes("too many calls in flight")).length).toBeGreaterThanOrEqual(2);
  });

  it("elects permissions like a password login and refuses a disabled player or tenant", async () => {
    const elected = await minecraft("Steve", "mc.craft.test", [defaultGroupPermission]);
    expect(elected.grantedPermissions).toEqual([defaultGroupPermission]);
    await expectFailure(minecraft("Steve", "mc.craft.test", ["identity.users.list"]), { code: Status.PERMISSION_DENIED, reason: "PERMISSION_NOT_GRANTED" });

    const DISABLED = "7e57d00d-0000-4000-8000-00000000beef";
    players.set("Banned", profile(DISABLED, "Banned"));
    const banned = decodePart((await minecraft("Banned")).accessToken, 1);
    await admin.users.updateUser({ tenantId, user: { id: banned.sub as string, disabled: true }, updateMask: ["disabled"] });
    await expectFailure(minecraft("Banned"), { code: Status.UNAUTHENTICATED, reason: "USER_DISABLED" });

    const otherId = (await admin.tenants.getTenant({ name: "other" })).tenant!.id;
    await admin.tenants.updateTenant({ tenant: { id: otherId, disabled: true }, updateMask: ["disabled"] });
    await expectFailure(minecraft("Steve", "mc.other.test"), { code: Status.UNAUTHENTICATED, reason: "TENANT_DISABLED" });
  });

  it("refreshes without the session server: it is never called for a refresh", async () => {
    const login = await minecraft("Steve");
    sessionServer.closeAllConnections();
    await new Promise((resolve) => sessionServer.close(resolve));
    calls.length = 0;
    const refreshed = await server.clients.refresh.refresh({ refreshToken: login.refreshToken });
    const claims = decodePart(refreshed.accessToken, 1);
    // The refreshed token keeps the player's UPN and name.
    expect(claims).toMatchObject({ upn: `${STEVE}@craft`, preferred_username: "Steve@minecraft", scope: login.grantedPermissions.join(" ") });
    await server.clients.refresh.refresh({ refreshToken: refreshed.refreshToken });
    expect(calls).toEqual([]);
    // A new login now cannot reach the session server: UNAVAILABLE, not a hang.
    await expectFailure(minecraft("Steve"), { code: Status.UNAVAILABLE, reason: "UPSTREAM_UNAVAILABLE" });
  });
});

describe("the README walkthrough", () => {
  it("maps a server address to a tenant, logs a player in through the dev session server, and refreshes", { timeout: 120_000 }, async () => {
    const { spawn, execFile } = await import("node:child_process");
    const { readFileSync } = await import("node:fs");
    const { promisify } = await import("node:util");
    const portServer = createServer();
    portServer.listen(0, "127.0.0.1");
    await new Promise((resolve) => portServer.once("listening", resolve));
    const port = (portServer.address() as AddressInfo).port;
    await new Promise((resolve) => portServer.close(resolve));
    const standIn = spawn(process.execPath, ["scripts/dev-session-server.ts"], { env: { ...process.env, TESSERA_DEV_SESSION_ADDR: `127.0.0.1:${port}` }, stdio: ["ignore", "pipe", "inherit"] });
    await new Promise((resolve) => standIn.stdout.once("data", resolve));
    const walkthrough = await startTestServer({ TESSERA_MINECRAFT_SESSION_URL: `http://127.0.0.1:${port}/session/minecraft` });
    try {
      const section = readFileSync("README.md", "utf8").split(/^## Logging in with an external system$/m)[1]!.split(/^## /m)[0]!;
      const block = [...section.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1]!).find((b) => b.includes("dev:session-server"))!;
      // The test starts the two servers itself; the rest runs as printed, against the test server.
      const script = block
        .split("\n")
        .filter((line) => !line.includes("npm run dev:session-server") && !line.includes("npm start"))
        .join("\n")
        .replaceAll("http://127.0.0.1:50051", `http://${walkthrough.address}`);
      const { stdout } = await promisify(execFile)("/bin/sh", ["-c", `set -e\n${script}`], { env: { ...process.env, TOKEN: walkthrough.adminToken } });
      const documents = stdout.trim().split(/\n(?=\{)/).map((doc) => JSON.parse(doc) as Record<string, unknown>);
      expect(documents[0]).toMatchObject({ tenant: { name: "survival", domains: ["mc.example.com"] } });
      // By default a client-chosen server hash is refused, naming what to send instead.
      await expectFailure(
        walkthrough.clients.issue.issueToken({ credential: { $case: "minecraft", value: { username: "Steve", serverHash: SERVER_HASH, serverAddress: "mc.example.com", serverId: "" } } }),
        { code: Status.INVALID_ARGUMENT, reason: "INVALID_INPUT", fields: ["minecraft.server_id"] },
      );
      const refreshed = documents.at(-1) as { accessToken: string };
      expect(decodePart(refreshed.accessToken, 1)).toMatchObject({ preferred_username: "Steve@minecraft", upn: expect.stringMatching(/@survival$/) });
    } finally {
      await walkthrough.close();
      standIn.kill();
    }
  });
});
