// Two replicas on one PostgreSQL: a logout on A is refused by B's VerifyToken within moments,
// through LISTEN/NOTIFY (B polls the log only once a minute here, so polling cannot be what
// delivers it), also after B's listening connection was killed (it reconnects and catches up).
import { setTimeout as sleep } from "node:timers/promises";
import { errorReason } from "@tessera/client";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADMIN_PASSWORD, startTestServer, type TestServer } from "../support/server.ts";
import { KeyStore } from "../../src/tokens/keys.ts";
import { loadOrCreateMasterKey, SigningKeyEntity } from "../../src/tokens/index.ts";

const databaseUrl = process.env.TEST_DATABASE_URL;

/** Polls `check` until it returns true, for at most `ms`. */
async function within(ms: number, check: () => Promise<boolean>): Promise<boolean> {
  const until = Date.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > until) return false;
    await sleep(20);
  }
}

describe.skipIf(!databaseUrl)("two replicas on one PostgreSQL: revocations by LISTEN/NOTIFY, one key per scheduled rotation", () => {
  let a: TestServer;
  let b: TestServer;
  beforeAll(async () => {
    a = await startTestServer({ TESSERA_REVOCATION_POLL_INTERVAL: "60s" });
    b = await startTestServer({ TESSERA_REVOCATION_POLL_INTERVAL: "60s" }, { replicaOf: a });
  }, 120_000);
  afterAll(async () => {
    await b?.close();
    await a?.close();
  });

  const refusedByB = (token: string) => async () =>
    errorReason(await b.clients.verify.verifyToken({ token, audience: "" }).then(() => undefined, (e: unknown) => e)) === "SESSION_REVOKED";

  async function loginVerifiedByB() {
    const login = await a.login("system", "admin", ADMIN_PASSWORD);
    // B has verified it (and cached the session) before A revokes it.
    await b.clients.verify.verifyToken({ token: login.accessToken, audience: "" });
    return login;
  }

  it("a logout on A is refused by B within a second, with B's polling a minute apart", async () => {
    for (let i = 0; i < 3; i++) {
      const login = await loginVerifiedByB();
      await a.as(login.accessToken).issue.revokeSession({ sessionId: "" });
      expect(await within(1_000, refusedByB(login.accessToken)), `revocation ${i} reached B`).toBe(true);
    }
  });

  it("scheduled rotations firing on both replicas at once make one key", async () => {
    const store = (server: TestServer) =>
      new KeyStore({
        masterKey: loadOrCreateMasterKey(server.config.masterKey, server.config.dataDir),
        accessTokenTtlSeconds: server.config.accessTokenTtlSeconds,
        publishLeadSeconds: server.config.keyPublishLeadSeconds,
      });
    const count = () => a.tessera.orm.em.fork().count(SigningKeyEntity, {});
    const before = await count();
    // Due: the newest key is older than the interval (1 s) on both.
    await sleep(1_100);
    const [ka, kb] = [store(a), store(b)];
    await Promise.all([ka.reload(a.tessera.orm.em.fork()), kb.reload(b.tessera.orm.em.fork())]);
    const rotated = await Promise.all([ka.rotateIfDue(a.tessera.orm.em.fork(), 1), kb.rotateIfDue(b.tessera.orm.em.fork(), 1)]);
    expect(rotated.filter(Boolean)).toHaveLength(1);
    expect(await count()).toBe(before + 1);
  });

  it("after B's listening connection is killed, B reconnects and a later logout still reaches it at once", async () => {
    const admin = new pg.Client({ connectionString: a.config.databaseUrl });
    await admin.connect();
    try {
      const killed = await admin.query(
        "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'tessera revocation listener' and datname = current_database()",
      );
      // A's and B's listeners (one each) on this test's database.
      expect(killed.rowCount).toBe(2);
    } finally {
      await admin.end();
    }
    await sleep(500); // the listeners reconnect after 100 ms
    const login = await loginVerifiedByB();
    await a.as(login.accessToken).issue.revokeSession({ sessionId: "" });
    expect(await within(1_000, refusedByB(login.accessToken))).toBe(true);
  });
});
