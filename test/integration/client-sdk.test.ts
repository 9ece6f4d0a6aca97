// The client SDK (@tessera/client) against a real server over real channels:
// sessions that rotate their tokens (one Refresh for any number of waiting
// calls), retries of read-only calls only, default deadlines, typed errors,
// the server middleware and HTTP authorize() on local verification, service
// identity verified without Tessera, and the `tessera` command.
// Revocations followed by local verifiers are in client-revocations.test.ts.
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { once } from "node:events";
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createChannel, createClient, createServer, Metadata, type Client, type ClientMiddleware, type Server, type ServerMiddleware } from "nice-grpc";
import { HealthDefinition, HealthServiceImpl, HealthState } from "nice-grpc-server-health";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AssertionError,
  AssertionVerifier,
  authorize,
  ClientError,
  createTesseraClient,
  errorReason,
  generateServiceKey,
  isRetriedMethod,
  PrincipalKind,
  proveMyself,
  RegistryResolver,
  Status,
  tesseraAuthMiddleware,
  TesseraClientError,
  TesseraSession,
  TokenVerifier,
  type AuthMiddlewareOptions,
  type IssueTokenRequest,
  type ServiceKey,
  type SessionTokens,
  type TesseraAuthContext,
  type TesseraClient,
  type TesseraClientOptions,
} from "@tessera/client";
import { main as cli } from "../../clients/typescript/src/cli.ts";
import { ADMIN_PASSWORD, startTestServer, type TestServer } from "../support/server.ts";
import { TcpProxy } from "../support/tcp-proxy.ts";

/** This server's own registry name (assertions Tessera's VerifyToken and token exchange accept). */
const SELF = "https://id.tessera.test/registry.json";
const ADMIN = { $case: "password" as const, value: { tenant: "system", username: "admin", password: ADMIN_PASSWORD } };
const inAnHour = () => new Date(Date.now() + 3600_000);

let server: TestServer;
/** SDK clients (default retries and deadline) without credentials. */
let tessera: TesseraClient;
/** The support clients as the system admin (no retries, no deadline). */
let admin: TestServer["clients"];
const cleanups: (() => unknown)[] = [];

beforeAll(async () => {
  server = await startTestServer({ TESSERA_REGISTRY_SELF: SELF, TESSERA_LOGIN_FAILURES_PER_ACCOUNT_AND_ADDRESS: "3" });
  tessera = createTesseraClient(server.address);
  admin = server.as(server.adminToken);
});
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  tessera?.close();
  await server?.close();
});

/** The error `promise` rejects with (fails the test if it resolves). */
async function failure(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => expect.fail("the call should have failed"),
    (error: unknown) => error,
  );
}

/** The TesseraClientError `promise` rejects with. */
async function clientFailure(promise: Promise<unknown>): Promise<TesseraClientError> {
  const error = await failure(promise);
  expect(error).toBeInstanceOf(TesseraClientError);
  return error as TesseraClientError;
}

/** The first defined value of `probe`, polled every 50 ms for up to `timeoutMs`. */
async function eventually<T>(probe: () => Promise<T | undefined>, timeoutMs = 5_000): Promise<T | undefined> {
  for (const deadline = Date.now() + timeoutMs; ; await sleep(50)) {
    const value = await probe();
    if (value !== undefined || Date.now() > deadline) return value;
  }
}

/** Client middleware counting the calls to each method (by the last part of its path), outside retries, and when they started. */
function callCounter() {
  const calls = new Map<string, number[]>();
  const middleware: ClientMiddleware = async function* count(call, options) {
    const method = call.method.path.slice(call.method.path.lastIndexOf("/") + 1);
    calls.set(method, [...(calls.get(method) ?? []), Date.now()]);
    return yield* call.next(call.request, options);
  };
  return { middleware, count: (method: string) => calls.get(method)?.length ?? 0, times: (method: string) => calls.get(method) ?? [] };
}

describe("TesseraSession", () => {
  let short: TestServer;
  let idle: TesseraSession;
  /** Closed before the server, which would otherwise wait out its shutdown grace for their connections. */
  const clients: TesseraClient[] = [];
  beforeAll(async () => {
    // Access tokens live 5 s (4-5 s: iat has whole seconds), so that a test can wait for one to run out; not shorter,
    // or the 100 calls (about a second on a busy machine) could outlive the rotated token too and rotate again.
    short = await startTestServer({ TESSERA_ACCESS_TOKEN_TTL: "5s" });
    // Left idle from here: its access token has expired by the time its test runs (after the ones that wait for expiry).
    idle = await TesseraSession.start(createTesseraClient({ address: "", channel: short.channel }), { credential: ADMIN });
  });
  afterAll(async () => {
    for (const client of clients) client.close();
    await short?.close();
  });

  function countedClient(options: TesseraClientOptions = {}) {
    const counter = callCounter();
    const client = createTesseraClient(short.address, { ...options, middleware: [counter.middleware] });
    clients.push(client);
    return { client, refreshes: () => counter.count("Refresh"), refreshedAt: () => counter.times("Refresh"), logins: () => counter.count("IssueToken") };
  }

  /** Sleeps until `tokens`' access token has `fraction` of its lifetime left: inside the session's refresh margin (a quarter of it), not yet expired. */
  async function untilNearExpiry(tokens: SessionTokens, since: number, fraction = 0.1): Promise<void> {
    const lifetime = tokens.expiresAt.getTime() - since;
    await sleep(Math.max(0, tokens.expiresAt.getTime() - lifetime * fraction - Date.now()));
  }

  it("a test with 100 concurrent calls across an expiry shows one Refresh, and hands the rotated refresh token to onTokens", async () => {
    const { client, refreshes, refreshedAt, logins } = countedClient();
    const seen: SessionTokens[] = [];
    const started = Date.now();
    const session = await TesseraSession.start(client, { credential: ADMIN }, { onTokens: (tokens) => seen.push(tokens) });
    const first = session.tokens;
    expect(logins()).toBe(1);
    expect(seen).toEqual([first]);
    // Far from expiry: the token in hand, no Refresh.
    await session.client.users.getMe({});
    expect(refreshes()).toBe(0);

    await untilNearExpiry(first, started);
    const firedAt = Date.now();
    const results = await Promise.allSettled(Array.from({ length: 100 }, () => session.client.users.getMe({})));
    expect(results.filter((r) => r.status === "rejected").map((r) => String((r as PromiseRejectedResult).reason))).toEqual([]);
    expect(results.every((r) => r.status === "fulfilled" && r.value.user?.username === "admin")).toBe(true);
    expect(refreshes(), "one Refresh shared by every waiting call").toBe(1);
    // Rotated ahead of expiry, not after the server refused the old token as expired (which the session would also
    // survive, by one shared Refresh): checked when the calls started well before the expiry (not on a stalled machine).
    if (first.expiresAt.getTime() - firedAt > 100) expect(refreshedAt()[0]).toBeLessThan(first.expiresAt.getTime());
    expect(session.refreshes).toBe(1);
    expect(logins()).toBe(1);

    // onTokens got the rotation: a new refresh token of the same session.
    expect(seen).toHaveLength(2);
    const rotated = seen[1]!;
    expect(rotated).toBe(session.tokens);
    expect(rotated.refreshToken).toBeTruthy();
    expect(rotated.refreshToken).not.toBe(first.refreshToken);
    expect(rotated.accessToken).not.toBe(first.accessToken);
    expect(rotated.sessionId).toBe(first.sessionId);
    expect(rotated.expiresAt.getTime()).toBeGreaterThan(first.expiresAt.getTime());

    // A session started from the kept refresh token is the same session, and works.
    const other = countedClient();
    const resumed = await TesseraSession.start(other.client, { refreshToken: rotated.refreshToken });
    expect(resumed.sessionId).toBe(first.sessionId);
    expect((await resumed.client.users.getMe({})).user?.username).toBe("admin");
    expect(other.refreshes()).toBe(1);
    expect(other.logins()).toBe(0);
    await expect(TesseraSession.start(other.client, { refreshToken: "" })).rejects.toThrow(TypeError);
  });

  it("a session revoked at the server fails its calls, and after one refused Refresh never calls Refresh again", async () => {
    const { client, refreshes } = countedClient();
    const started = Date.now();
    const session = await TesseraSession.start(client, { credential: ADMIN });
    await session.client.users.getMe({});
    // The admin, from another login, revokes that session.
    const revoker = await TesseraSession.start(createTesseraClient({ address: "", channel: short.channel }), { credential: ADMIN });
    expect(revoker.sessionId).not.toBe(session.sessionId);
    await revoker.client.issue.revokeSession({ sessionId: session.sessionId });

    // The access token is still fresh: the server refuses it.
    const refused = await clientFailure(session.client.users.getMe({}));
    expect(refused.code).toBe(Status.UNAUTHENTICATED);
    expect(refused.reason).toBe("SESSION_REVOKED");
    expect(refreshes()).toBe(0);

    // Near expiry the session tries to rotate once; the refusal ends it.
    await untilNearExpiry(session.tokens, started);
    const ended = await clientFailure(session.client.users.getMe({}));
    expect(["SESSION_REVOKED", "REFRESH_TOKEN_INVALID"]).toContain(ended.reason);
    expect(refreshes()).toBe(1);
    for (let i = 0; i < 3; i++) {
      const again = await clientFailure(session.client.users.getMe({}));
      expect(again.reason).toBe(ended.reason);
    }
    await expect(session.refresh()).rejects.toBe(ended);
    await expect(session.accessToken()).rejects.toBe(ended);
    expect(refreshes(), "an ended session does not try again").toBe(1);
    expect(session.refreshes).toBe(0);
  });

  it("logout() revokes the session at the server", async () => {
    const { client, refreshes } = countedClient();
    const session = await TesseraSession.start(client, { credential: ADMIN });
    const token = session.tokens.accessToken;
    await short.clients.verify.verifyToken({ token });
    await session.logout();
    const refused = await clientFailure(short.clients.verify.verifyToken({ token }));
    expect(refused.reason).toBe("SESSION_REVOKED");
    const refresh = await clientFailure(short.clients.refresh.refresh({ refreshToken: session.tokens.refreshToken, requestedPermissions: [] }));
    expect(["SESSION_REVOKED", "REFRESH_TOKEN_INVALID"]).toContain(refresh.reason);
    // Its own calls fail without reaching the server, and it does not rotate.
    await expect(session.client.users.getMe({})).rejects.toThrow(/logged out/);
    await session.logout();
    expect(refreshes()).toBe(0);
  });

  // An idle session's access token expires long before its refresh token: logout() must rotate first, or RevokeSession
  // is refused TOKEN_EXPIRED and the session lives on at the server.
  it("logout() of a session whose access token has expired still revokes it at the server", async () => {
    await sleep(Math.max(0, idle.tokens.expiresAt.getTime() + 100 - Date.now()));
    const { refreshToken } = idle.tokens;
    await idle.logout();
    const refused = await clientFailure(short.clients.refresh.refresh({ refreshToken, requestedPermissions: [] }));
    expect(["SESSION_REVOKED", "REFRESH_TOKEN_INVALID"]).toContain(refused.reason);
  });

  // A logout that failed on the way (UNAVAILABLE) must not count as done: the second attempt reaches the server.
  it("logout() tried again after a failed attempt revokes the session at the server", async () => {
    const [host, port] = short.address.split(":");
    const proxy = await new TcpProxy({ host: host!, port: Number(port) }).start();
    const client = createTesseraClient(proxy.address);
    clients.push(client);
    const session = await TesseraSession.start(client, { credential: ADMIN });
    const { refreshToken } = session.tokens;
    await proxy.cut();
    const failed = await clientFailure(session.logout());
    expect(failed.code).toBe(Status.UNAVAILABLE);
    await proxy.start();
    cleanups.push(() => proxy.cut());
    await session.logout();
    const refused = await clientFailure(short.clients.refresh.refresh({ refreshToken, requestedPermissions: [] }));
    expect(["SESSION_REVOKED", "REFRESH_TOKEN_INVALID"]).toContain(refused.reason);
  });
});

describe("retries and deadlines", () => {
  const [host, port] = [() => server.address.split(":")[0]!, () => Number(server.address.split(":")[1])];

  it("retries only read-only methods", () => {
    expect(isRetriedMethod("GetUser")).toBe(true);
    expect(isRetriedMethod("ListUsers")).toBe(true);
    expect(isRetriedMethod("VerifyToken")).toBe(true);
    expect(isRetriedMethod("IssueToken")).toBe(false);
    expect(isRetriedMethod("Refresh")).toBe(false);
    expect(isRetriedMethod("CreateUser")).toBe(false);
    expect(isRetriedMethod("RevokeSession")).toBe(false);
  });

  /**
   * A connected client through a proxy, then the proxy stopped: the next
   * connection attempt is refused. `channelOptions` as given (grpc-js's own
   * reconnect backoff is 1 s by default).
   */
  async function droppedClient(channelOptions?: TesseraClientOptions["channelOptions"], retry: TesseraClientOptions["retry"] = { maxRetries: 3, baseDelayMs: 200 }) {
    const proxy = await new TcpProxy({ host: host(), port: port() }).start();
    const client = createTesseraClient(proxy.address, { token: server.adminToken, retry, channelOptions });
    cleanups.push(() => client.close());
    await client.verify.getJwks({});
    await proxy.cut();
    let restarted = false;
    const restart = async () => {
      if (restarted) return;
      restarted = true;
      await proxy.start();
      cleanups.push(() => proxy.cut().catch(() => undefined));
    };
    return { client, restart, restarted: () => restarted };
  }

  // grpc-js waits out a reconnect backoff (1 s by default) after a refused connection, failing calls at once meanwhile;
  // a short one here, so that the outcome depends on the SDK's retries alone (see the it.fails below for the default).
  const quickReconnect = { "grpc.initial_reconnect_backoff_ms": 50, "grpc.max_reconnect_backoff_ms": 100 };

  it("retries a read-only call made while the server is unreachable", async () => {
    const read = await droppedClient(quickReconnect);
    const retries: number[] = [];
    // The first attempt fails (the connection is gone); the server is back before the retry.
    const me = await read.client.users.getMe({}, { onRetryableError: (_error, attempt) => (retries.push(attempt), void read.restart()) });
    expect(me.user?.username).toBe("admin");
    expect(retries).toEqual([0]);

    // Back 150 ms later, within the backoff of the retries (200 ms, doubled, jittered).
    const jwks = await droppedClient(quickReconnect);
    const failures: number[] = [];
    const pending = jwks.client.verify.getJwks({}, { onRetryableError: (error) => failures.push(error.code) });
    await sleep(150);
    await jwks.restart();
    expect((await pending).keys.length).toBeGreaterThan(0);
    expect(failures.length).toBeGreaterThan(0);
    expect(failures.every((code) => code === Status.UNAVAILABLE)).toBe(true);
  });

  it("never retries a login: UNAVAILABLE at once, although the server is back 150 ms later", async () => {
    const write = await droppedClient(quickReconnect);
    const called = { retried: false };
    const login = write.client.issue.issueToken({ credential: ADMIN }, { onRetryableError: () => (called.retried = true) });
    const restarting = sleep(150).then(write.restart);
    const refused = await clientFailure(login);
    expect(write.restarted(), "failed before the server came back").toBe(false);
    await restarting;
    expect(refused.code).toBe(Status.UNAVAILABLE);
    expect(refused.reason).toBeUndefined();
    expect(refused).toBeInstanceOf(ClientError);
    expect(called.retried).toBe(false);
    // The server is back: the same login works now.
    expect((await write.client.issue.issueToken({ credential: ADMIN })).accessToken).toBeTruthy();
  });

  // grpc-js waits 1 s before reconnecting a refused channel by default and fails calls at once meanwhile: the client's
  // channel reconnects about as fast as its retries back off, so a read-only call rides out a short outage.
  it("with its default channel and retry policy, a read-only call rides out an outage that ends before its last retry", async () => {
    const read = await droppedClient(undefined, undefined);
    const attempts: number[] = [];
    // The server is back once a reconnection has been refused, 100-200 ms before the last retry.
    const me = await read.client.users.getMe({}, { onRetryableError: (_error, attempt) => (attempts.push(attempt), attempt === 1 && void read.restart()) });
    expect(attempts).toEqual([0, 1]);
    expect(me.user?.username).toBe("admin");
  });

  it("fails a call to a server that never answers with DEADLINE_EXCEEDED at the default deadline", async () => {
    const sockets = new Set<Socket>();
    const hole: TcpServer = createTcpServer((socket) => {
      sockets.add(socket);
      socket.on("error", () => undefined);
    });
    hole.listen(0, "127.0.0.1");
    await once(hole, "listening");
    const address = `127.0.0.1:${(hole.address() as { port: number }).port}`;
    const client = createTesseraClient(address, { defaultDeadlineMs: 300 });
    try {
      const started = Date.now();
      const read = await clientFailure(client.verify.getJwks({}));
      expect(read.code).toBe(Status.DEADLINE_EXCEEDED);
      const write = await clientFailure(client.issue.issueToken({ credential: ADMIN }));
      expect(write.code).toBe(Status.DEADLINE_EXCEEDED);
      expect(sockets.size, "the calls did reach the black hole").toBeGreaterThan(0);
      expect(Date.now() - started).toBeLessThan(10_000);
      // A call's own deadline wins over the default.
      const own = await clientFailure(client.verify.getJwks({}, { deadline: 100 }));
      expect(own.code).toBe(Status.DEADLINE_EXCEEDED);
    } finally {
      client.close();
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => hole.close(resolve));
    }
  });
});

describe("typed errors", () => {
  it("carry the status, the ErrorInfo reason and the field violations", async () => {
    const client = tessera.withToken(server.adminToken);
    const invalid = await clientFailure(client.users.createUser({ user: { username: "no spaces allowed@" }, password: "a-good-password-1" } as never));
    expect(invalid.code).toBe(Status.INVALID_ARGUMENT);
    expect(invalid.status).toBe("INVALID_ARGUMENT");
    expect(invalid.reason).toBe("INVALID_INPUT");
    expect(invalid.domain).toBe("tessera.identity.v1");
    expect(invalid.fieldViolations.map((v) => v.field)).toContain("user.username");
    expect(invalid.fieldViolations.find((v) => v.field === "user.username")?.description).toBeTruthy();
    expect(invalid).toBeInstanceOf(ClientError);
    expect(errorReason(invalid)).toBe(invalid.reason);

    const missing = await clientFailure(tessera.users.getMe({}));
    expect(missing.code).toBe(Status.UNAUTHENTICATED);
    expect(missing.reason).toBe("TOKEN_MISSING");
    expect(missing).toBeInstanceOf(ClientError);
    expect(errorReason(missing)).toBe("TOKEN_MISSING");
    expect(missing.fieldViolations).toEqual([]);
    expect(missing.retryDelayMs).toBeUndefined();
  });

  it("a throttled login says TOO_MANY_ATTEMPTS and how long to wait", async () => {
    // Another account than the admin's: the server blocks (account, address) after 3 failures here.
    await admin.users.createUser({ user: { username: "guessed" }, password: "guessed-password-1" } as never);
    const login = (password: string) => tessera.issue.issueToken({ credential: { $case: "password", value: { tenant: "system", username: "guessed", password } } });
    const reasons: (string | undefined)[] = [];
    let throttled: TesseraClientError | undefined;
    for (let i = 0; i < 10 && !throttled; i++) {
      const error = await clientFailure(login(`wrong-guess-${i}`));
      reasons.push(error.reason);
      if (error.reason === "TOO_MANY_ATTEMPTS") throttled = error;
    }
    expect(reasons.slice(0, 3)).toEqual(["INVALID_CREDENTIALS", "INVALID_CREDENTIALS", "INVALID_CREDENTIALS"]);
    expect(throttled, `reasons: ${reasons.join(", ")}`).toBeDefined();
    expect(throttled!.code).toBe(Status.RESOURCE_EXHAUSTED);
    expect(throttled!.retryDelayMs).toBeGreaterThan(0);
    expect(throttled).toBeInstanceOf(ClientError);
    expect(errorReason(throttled)).toBe(throttled!.reason);
    // Even the right password waits now.
    expect((await clientFailure(login("guessed-password-1"))).reason).toBe("TOO_MANY_ATTEMPTS");
  });
});

describe("protecting your own services", () => {
  let grpc: Server;
  let verifier: TokenVerifier;
  let health: Client<typeof HealthDefinition>;
  let open: Client<typeof HealthDefinition>;
  let http: HttpServer;
  let httpUrl: string;
  /** context.principal's username of each call that got past the middleware. */
  const principals: (string | undefined)[] = [];

  beforeAll(async () => {
    verifier = new TokenVerifier(tessera);
    const state = HealthState();
    state.setStatus("healthy");
    // As its documentation writes it (this line typechecks only with the middleware's declared type right).
    createServer().use(tesseraAuthMiddleware(verifier));
    const auth = (options?: AuthMiddlewareOptions) => tesseraAuthMiddleware(verifier, options);
    grpc = createServer()
      .use(auth())
      .use(async function* record(call, context) {
        principals.push(context.principal?.username);
        return yield* call.next(call.request, context);
      });
    grpc.add(HealthDefinition, HealthServiceImpl(state));
    const port = await grpc.listen("127.0.0.1:0");
    const channel = createChannel(`127.0.0.1:${port}`);
    health = createClient(HealthDefinition, channel);
    const publicServer = createServer().use(auth({ public: ["/grpc.health.v1.Health/Check"] }));
    publicServer.add(HealthDefinition, HealthServiceImpl(state));
    const publicPort = await publicServer.listen("127.0.0.1:0");
    const publicChannel = createChannel(`127.0.0.1:${publicPort}`);
    open = createClient(HealthDefinition, publicChannel);

    const check = authorize(verifier);
    http = createHttpServer(async (req, res) => {
      const permission = new URL(req.url ?? "/", "http://x").searchParams.get("permission") ?? undefined;
      const auth = await check(req.headers.authorization, permission);
      if (!auth.ok) return void res.writeHead(auth.status, { "www-authenticate": "Bearer" }).end(auth.reason);
      res.end(`hello ${auth.principal.username}`);
    });
    http.listen(0, "127.0.0.1");
    await once(http, "listening");
    httpUrl = `http://127.0.0.1:${(http.address() as { port: number }).port}`;
    cleanups.push(
      () => channel.close(),
      () => publicChannel.close(),
      () => grpc.shutdown(),
      () => publicServer.shutdown(),
      () => new Promise((resolve) => http.close(resolve)),
    );
  });

  const SERVING = 1; // HealthCheckResponse_ServingStatus.SERVING
  const bearer = (token: string) => ({ metadata: Metadata({ authorization: `Bearer ${token}` }) });

  it("tesseraAuthMiddleware refuses calls without a valid token and lets public methods through", async () => {
    const missing = await failure(health.check({ service: "" }));
    expect(missing).toBeInstanceOf(ClientError);
    expect((missing as ClientError).code).toBe(Status.UNAUTHENTICATED);
    expect((missing as ClientError).details).toMatch(/TOKEN_MISSING/);
    const forged = await failure(health.check({ service: "" }, bearer(`${server.adminToken.slice(0, -4)}AAAA`)));
    expect((forged as ClientError).code).toBe(Status.UNAUTHENTICATED);
    expect(principals).toEqual([]);
    expect((await health.check({ service: "" }, bearer(server.adminToken))).status).toBe(SERVING);
    expect(principals).toEqual(["admin"]);
    expect((await open.check({ service: "" })).status).toBe(SERVING);
    // Public means no token is needed, not that any goes: the middleware let it through without looking.
    expect((await open.check({ service: "" }, bearer("garbage"))).status).toBe(SERVING);
  });

  it("authorize() answers 401 without a token, 403 for a permission outside the token's scope, 200 with the principal", async () => {
    const narrow = await server.login("system", "admin", ADMIN_PASSWORD, ["identity.users.list"]);
    expect(narrow.grantedPermissions).toEqual(["identity.users.list"]);
    const get = (path: string, token?: string) => fetch(`${httpUrl}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
    const none = await get("/");
    expect(none.status).toBe(401);
    expect(await none.text()).toBe("TOKEN_MISSING");
    expect((await get("/", "not.a.token")).status).toBe(401);
    const ok = await get("/?permission=identity.users.list", narrow.accessToken);
    expect(ok.status).toBe(200);
    expect(await ok.text()).toBe("hello admin");
    const forbidden = await get("/?permission=identity.tenants.create", narrow.accessToken);
    expect(forbidden.status).toBe(403);
    expect(await forbidden.text()).toBe("PERMISSION_DENIED");
    // The unnarrowed admin token carries *.*.*.
    expect((await get("/?permission=identity.tenants.create", server.adminToken)).status).toBe(200);
  });
});

describe("service identity without Tessera", () => {
  const REGION = "reports-api";
  const CAPABILITY = "report-writers";
  const LOCAL = "local:tessera-copy";
  let key: ServiceKey;
  let httpsUrl: string;
  let authority: Record<string, unknown>;
  let verifier: AssertionVerifier;

  beforeAll(async () => {
    await admin.permissions.createGroup({ group: { name: CAPABILITY, permissions: ["identity.users.list"] } } as never);
    await admin.registry.createRegion({ region: { id: REGION, alias: "Reports API", active: true } } as never);
    key = generateServiceKey();
    const published = await admin.registry.publishCapability({ regionId: REGION, capability: CAPABILITY, publicKey: JSON.stringify(key.publicJwk), expireTime: inAnHour() } as never);
    expect(published.capability?.keyId).toBe(key.kid);
    const document = await server.clients.registry.getRegistryDocument({});
    authority = JSON.parse(document.authorityPublicKeyJwk) as Record<string, unknown>;
    httpsUrl = `http://127.0.0.1:${server.tessera.httpPort}/registry.json`;
    verifier = new AssertionVerifier({
      registries: [
        new RegistryResolver({ kind: "https", url: httpsUrl }, { authorityKeys: [authority], cacheMs: 200 }),
        new RegistryResolver({ kind: "local", name: LOCAL, document: { regions: document.regions, capabilities: document.capabilities } }, { authorityKeys: [authority] }),
      ],
      audience: "reports",
    });
  });

  const prove = (overrides: Partial<Parameters<typeof proveMyself>[0]> = {}) =>
    proveMyself({ privateKey: key, region: REGION, capability: CAPABILITY, registry: httpsUrl, audience: "reports", ...overrides });
  const refusal = async (promise: Promise<unknown>) => {
    const error = await failure(promise);
    expect(error).toBeInstanceOf(AssertionError);
    return (error as AssertionError).reason;
  };

  it("an AssertionVerifier verifies proveMyself assertions against the HTTPS document and a local copy, once each", async () => {
    const assertion = prove({ data: { job: 42 } });
    const verified = await verifier.verify(assertion);
    expect(verified).toMatchObject({ region: REGION, capability: CAPABILITY, registry: httpsUrl, tenant: "system", data: { job: 42 } });
    expect(await refusal(verifier.verify(assertion))).toBe("ASSERTION_REPLAYED");
    const local = await verifier.verify(prove({ registry: LOCAL }));
    expect(local).toMatchObject({ region: REGION, capability: CAPABILITY, registry: LOCAL });

    expect(await refusal(verifier.verify(prove({ audience: "someone-else" })))).toBe("TOKEN_INVALID");
    expect(await refusal(verifier.verify(prove({ registry: "https://elsewhere.test/registry.json" })))).toBe("REGISTRY_NOT_ALLOWED");
    expect(await refusal(verifier.verify(prove({ registry: SELF })))).toBe("REGISTRY_NOT_ALLOWED");
    expect(await refusal(verifier.verify(prove({ privateKey: generateServiceKey() })))).toBe("TOKEN_INVALID");
    expect(await refusal(verifier.verify(prove({ registry: LOCAL, privateKey: generateServiceKey("P-256") })))).toBe("TOKEN_INVALID");
    // A resolver pinned to another authority trusts none of the records.
    const pinnedElsewhere = new AssertionVerifier({
      registries: [new RegistryResolver({ kind: "https", url: httpsUrl }, { authorityKeys: [generateServiceKey().publicJwk] })],
      audience: "reports",
    });
    expect(await refusal(pinnedElsewhere.verify(prove()))).toBe("TOKEN_INVALID");
    // Refused assertions were not used up.
    const good = prove();
    await expect(verifier.verify(good)).resolves.toMatchObject({ region: REGION });
  });

  it("refuses a revoked capability once the resolver's cache is over", async () => {
    const other = generateServiceKey("P-384");
    await admin.registry.createRegion({ region: { id: "revoked-svc", alias: "", active: true } } as never);
    await admin.registry.publishCapability({ regionId: "revoked-svc", capability: CAPABILITY, publicKey: JSON.stringify(other.publicJwk), expireTime: inAnHour() } as never);
    const theirs = () => prove({ privateKey: other, region: "revoked-svc" });
    // Published after the resolver last read the document: found once its cache (200 ms) is over.
    const found = await eventually(() => verifier.verify(theirs()).then((v) => v.region, () => undefined));
    expect(found).toBe("revoked-svc");
    await admin.registry.revokeCapability({ regionId: "revoked-svc", capability: CAPABILITY } as never);
    const reason = await eventually(() => verifier.verify(theirs()).then(() => undefined, (error: AssertionError) => error.reason));
    expect(reason).toBe("SESSION_REVOKED");
    // The other capability of the same document is unaffected.
    await expect(verifier.verify(prove())).resolves.toMatchObject({ region: REGION });
  });

  it("Tessera's own VerifyToken accepts a proveMyself assertion, and a TesseraSession logs in with one", async () => {
    const { principal } = await server.clients.verify.verifyToken({ token: prove({ registry: SELF }), audience: "reports" });
    expect(principal).toMatchObject({ kind: PrincipalKind.PRINCIPAL_KIND_SERVICE, subject: REGION, permissions: ["identity.users.list"] });
    expect(principal?.region).toMatchObject({ id: REGION, capability: CAPABILITY, registry: SELF });

    let logins = 0;
    const login = (): Partial<IssueTokenRequest> => {
      logins++;
      return { credential: { $case: "serviceAssertion", value: { assertion: prove({ registry: SELF, audience: server.config.issuer }) } } };
    };
    const session = await TesseraSession.start(tessera, { login });
    expect(session.tokens.refreshToken).toBe("");
    expect(session.tokens.grantedPermissions).toEqual(["identity.users.list"]);
    const first = session.tokens.accessToken;
    const local = await new TokenVerifier(tessera).verify(first);
    expect(local).toMatchObject({ kind: "service", subject: REGION, region: { id: REGION, capability: CAPABILITY, registry: SELF } });
    // The service token carries the capability's group: it may list users.
    expect((await session.client.users.listUsers({ pageSize: 1 } as never)).users.length).toBeGreaterThan(0);
    // A service renews by logging in again with a fresh assertion (a replayed one would be refused).
    await session.refresh();
    expect(logins).toBe(2);
    expect(session.refreshes).toBe(0);
    await server.clients.verify.verifyToken({ token: session.tokens.accessToken });
  });
});

describe("the tessera command", () => {
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "tessera-cli-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    await admin.registry.createRegion({ region: { id: "cli-svc", alias: "", active: true } } as never);
    await admin.permissions.createGroup({ group: { name: "cli-readers", permissions: ["identity.users.list"] } } as never);
  });

  it("makes a key, publishes it and signs assertions Tessera accepts", async () => {
    const file = join(dir, "svc.key");
    const jwk = JSON.parse(await cli(["key", "new", file])) as Record<string, string>;
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, "utf8")).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(jwk).toMatchObject({ kty: "OKP", crv: "Ed25519", alg: "EdDSA", kid: expect.any(String) });
    expect(jwk).not.toHaveProperty("d");
    // An existing key is never overwritten.
    await expect(cli(["key", "new", file])).rejects.toThrow(/EEXIST/);
    expect(JSON.parse(await cli(["key", "new", join(dir, "p256.key"), "P-256"]))).toMatchObject({ kty: "EC", crv: "P-256", alg: "ES256" });

    const env = { TESSERA_ADDRESS: server.address, TESSERA_TOKEN: server.adminToken };
    const published = JSON.parse(await cli(["key", "publish", file, "cli-svc", "cli-readers", "--expires", "2"], env)) as Record<string, unknown>;
    expect(published).toMatchObject({ region: "cli-svc", capability: "cli-readers", keyId: jwk.kid });
    const { capabilities } = await admin.registry.listCapabilities({ regionId: "cli-svc" } as never);
    expect(capabilities).toHaveLength(1);
    expect(capabilities[0]).toMatchObject({ regionId: "cli-svc", capability: "cli-readers", keyId: jwk.kid, active: true });
    expect(JSON.parse(capabilities[0]!.publicKeyJwk)).toMatchObject({ x: jwk.x });
    const days = (capabilities[0]!.expireTime!.getTime() - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(1.9);
    expect(days).toBeLessThan(2.1);

    const assertion = await cli(["key", "sign", file, "cli-svc", "cli-readers", SELF, "reports", "30"]);
    const { principal } = await server.clients.verify.verifyToken({ token: assertion, audience: "reports" });
    expect(principal).toMatchObject({ kind: PrincipalKind.PRINCIPAL_KIND_SERVICE, subject: "cli-svc", permissions: ["identity.users.list"] });
    const claims = JSON.parse(Buffer.from(assertion.split(".")[1]!, "base64url").toString()) as { exp: number; iat: number };
    expect(claims.exp - claims.iat).toBe(30);
  });

  it("refuses bad usage, and publishing without a token or with a refused one", async () => {
    const file = join(dir, "usage.key");
    await cli(["key", "new", file]);
    await expect(cli([])).rejects.toThrow(/usage:/);
    await expect(cli(["key"])).rejects.toThrow(/usage:/);
    await expect(cli(["key", "frobnicate", file])).rejects.toThrow(/usage:/);
    await expect(cli(["key", "sign", file, "cli-svc"])).rejects.toThrow(/usage:/);
    await expect(cli(["key", "sign", file, "cli-svc", "cli-readers", SELF, "reports", "soon"])).rejects.toThrow(/usage:/);
    await expect(cli(["key", "publish", file, "cli-svc", "cli-readers", "--expires"])).rejects.toThrow(/usage:/);
    await expect(cli(["key", "publish", file, "cli-svc", "cli-readers"], { TESSERA_ADDRESS: server.address })).rejects.toThrow(/TESSERA_TOKEN/);
    const refused = await clientFailure(cli(["key", "publish", file, "cli-svc", "cli-readers"], { TESSERA_ADDRESS: server.address, TESSERA_TOKEN: "not-a-token" }));
    expect(refused.code).toBe(Status.UNAUTHENTICATED);
    // Nothing was published by the refused attempts.
    expect((await admin.registry.listCapabilities({ regionId: "cli-svc" } as never)).capabilities).toHaveLength(1);
  });
});
