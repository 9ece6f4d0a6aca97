// A lost database gives UNAVAILABLE/DATABASE_UNAVAILABLE (never a crash or a
// stack trace), and the server recovers by itself when the database returns.
// Runs against the real PostgreSQL (TEST_DATABASE_URL) through a TCP proxy that
// the test cuts and restores.
import { Status } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectFailure } from "../support/errors.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { TcpProxy } from "../support/tcp-proxy.ts";

const databaseUrl = process.env.TEST_DATABASE_URL;

describe.skipIf(!databaseUrl)("database outage (PostgreSQL)", () => {
  let server: TestServer;
  let proxy: TcpProxy;

  beforeAll(async () => {
    const target = new URL(databaseUrl!);
    proxy = new TcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
    await proxy.start();
    server = await startTestServer({ TESSERA_REVOCATION_STALE_LIMIT: "1500ms" }, {
      databaseUrl: (url) => {
        const routed = new URL(url);
        routed.hostname = "127.0.0.1";
        routed.port = String(proxy.port);
        return routed.toString();
      },
    });
  });
  afterAll(async () => {
    await proxy.start().catch(() => undefined);
    await server?.close();
  });

  it("answers UNAVAILABLE while the database is gone and recovers when it returns", async () => {
    const admin = server.as(server.adminToken);
    await admin.tenants.createTenant({ tenant: { name: "before-outage" } });

    const health = () => fetch(`http://127.0.0.1:${server.tessera.httpPort}/healthz`).then(async (r) => ({ status: r.status, body: await r.json() }));
    expect(await health()).toEqual({ status: 200, body: { status: "SERVING" } });

    await proxy.cut();
    expect(await health()).toEqual({ status: 503, body: { status: "NOT_SERVING", reason: "DATABASE_UNAVAILABLE" } });
    const error = await expectFailure(admin.tenants.listTenants({}), { code: Status.UNAVAILABLE, reason: "DATABASE_UNAVAILABLE" });
    expect(error.details).not.toMatch(/at |ECONN|stack/);
    await expectFailure(admin.tenants.createTenant({ tenant: { name: "during-outage" } }), { code: Status.UNAVAILABLE, reason: "DATABASE_UNAVAILABLE" });

    await proxy.start();
    let names: string[] = [];
    for (let attempt = 0; attempt < 50 && !names.includes("before-outage"); attempt++) {
      names = await admin.tenants.listTenants({}).then((r) => r.tenants.map((t) => t.name), () => []);
      if (!names.includes("before-outage")) await new Promise((r) => setTimeout(r, 100));
    }
    expect(names).toContain("before-outage");
    expect(names).not.toContain("during-outage");
    expect((await health()).status).toBe(200);
  });

  it("VerifyToken stops trusting its cache once the revocation log has been unreadable past the stale limit, and recovers", async () => {
    const verify = () => server.clients.verify.verifyToken({ token: server.adminToken, audience: "" });
    await verify(); // cached
    // The feed reads the log again after the outage of the test before, in its own time: the stale
    // limit counts from its last good read, so start from a fresh one (it reads every 500 ms).
    const staleness = async () => {
      const body = await fetch(`http://127.0.0.1:${server.tessera.httpPort}/metrics`).then((r) => r.text());
      return Number(/^tessera_revocation_feed_staleness_seconds (\S+)$/m.exec(body)?.[1] ?? Infinity);
    };
    for (let attempt = 0; attempt < 100 && (await staleness()) > 0.6; attempt++) await new Promise((r) => setTimeout(r, 50));
    expect(await staleness()).toBeLessThanOrEqual(0.6);
    await proxy.cut();
    // Within the limit (1.5 s here) the cache still answers: a revocation made elsewhere could be missed that long.
    await expect(verify()).resolves.toMatchObject({ principal: { username: "admin" } });
    await new Promise((r) => setTimeout(r, 2_000));
    // Past it, the session must be read from the database, which is gone: UNAVAILABLE, not a stale yes.
    await expectFailure(verify(), { code: Status.UNAVAILABLE, reason: "DATABASE_UNAVAILABLE" });
    await proxy.start();
    let ok = false;
    for (let attempt = 0; attempt < 50 && !ok; attempt++) {
      ok = await verify().then(() => true, () => false);
      if (!ok) await new Promise((r) => setTimeout(r, 100));
    }
    expect(ok).toBe(true);
  });
});
