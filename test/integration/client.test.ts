import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTesseraClient, errorReason, TokenVerifier, type TesseraClient } from "@tessera/client";
import { ADMIN_PASSWORD, startTestServer, type TestServer } from "../support/server.ts";

let server: TestServer;
let tessera: TesseraClient;
beforeAll(async () => {
  server = await startTestServer();
  tessera = createTesseraClient({ address: server.address });
});
afterAll(async () => {
  tessera?.close();
  await server?.close();
});

describe("client SDK", () => {
  it("gets a JWKS whose max-age is half the key publish lead (1 minute by default): verifiers refetch before a new key signs", async () => {
    const response = await fetch(`http://127.0.0.1:${server.tessera.httpPort}/.well-known/jwks.json`);
    expect(response.headers.get("cache-control")).toBe("public, max-age=30");
    const lead = await startTestServer({ TESSERA_KEY_PUBLISH_LEAD: "10m" });
    try {
      const longer = await fetch(`http://127.0.0.1:${lead.tessera.httpPort}/.well-known/jwks.json`);
      expect(longer.headers.get("cache-control")).toBe("public, max-age=300");
    } finally {
      await lead.close();
    }
  });

  it("logs in, calls with the token, and exposes error reasons", async () => {
    const { accessToken } = await tessera.issue.issueToken({
      credential: { $case: "password", value: { tenant: "system", username: "admin", password: ADMIN_PASSWORD } },
    });
    const admin = tessera.withToken(accessToken);
    expect((await admin.users.getMe({})).user?.username).toBe("admin");
    const failure = await tessera.users.getMe({}).catch((e: unknown) => e);
    expect(errorReason(failure)).toBe("TOKEN_MISSING");
    expect(errorReason(new Error("plain"))).toBeUndefined();
  });

  it("takes the token from a function on every call", async () => {
    let calls = 0;
    const client = tessera.withToken(() => {
      calls++;
      return server.adminToken;
    });
    await client.users.getMe({});
    await client.users.getMe({});
    expect(calls).toBe(2);
  });

  it("verifies access tokens locally against the published keys and rejects tampering", async () => {
    const verifier = new TokenVerifier(tessera);
    const verified = await verifier.verify(server.adminToken);
    expect(verified.scope).toEqual(["*.*.*"]);
    expect(verified.tenantId).toMatch(/^[0-9a-f-]{36}$/);
    const [h, p, s] = server.adminToken.split(".");
    const forged = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p!, "base64url").toString()), scope: "x.y.z" })).toString("base64url");
    await expect(verifier.verify(`${h}.${forged}.${s}`)).rejects.toThrow();
  });

  /** The SDK client with GetJwks counted, and made to fail while `down` is set. */
  function countingClient() {
    const state = { calls: 0, down: false };
    const client = {
      ...tessera,
      verify: {
        ...tessera.verify,
        getJwks: (...args: Parameters<TesseraClient["verify"]["getJwks"]>) => {
          state.calls++;
          return state.down ? Promise.reject(new Error("JWKS unreachable")) : tessera.verify.getJwks(...args);
        },
      },
    } as TesseraClient;
    return { client, state };
  }

  it("refetches an unknown kid at most once per cooldown, so garbage kids cannot make it hammer the server", async () => {
    const { client, state } = countingClient();
    const verifier = new TokenVerifier(client, { unknownKidCooldownMs: 300 });
    await verifier.verify(server.adminToken);
    expect(state.calls).toBe(1);
    const [, p, sig] = server.adminToken.split(".");
    const garbage = async () => {
      for (let i = 0; i < 20; i++) {
        const header = Buffer.from(JSON.stringify({ alg: "EdDSA", typ: "at+jwt", kid: `garbage-${i}` })).toString("base64url");
        await expect(verifier.verify(`${header}.${p}.${sig}`)).rejects.toThrow();
      }
    };
    await garbage();
    expect(state.calls).toBe(1); // within the cooldown of the first fetch
    await sleep(350);
    await garbage();
    expect(state.calls).toBe(2); // one refetch for twenty unknown kids
  });

  it("keeps verifying with known keys through a JWKS outage up to its stale limit, then fails closed", async () => {
    const { client, state } = countingClient();
    const verifier = new TokenVerifier(client, { jwksMaxAgeMs: 100, jwksStaleLimitMs: 400 });
    await verifier.verify(server.adminToken);
    state.down = true;
    await sleep(150);
    const before = state.calls;
    for (let i = 0; i < 20; i++) await expect(verifier.verify(server.adminToken)).resolves.toMatchObject({ subject: expect.any(String) });
    expect(state.calls - before, "one failed refetch per cooldown, not one per verification").toBe(1);
    await sleep(450);
    await expect(verifier.verify(server.adminToken)).rejects.toMatchObject({ reason: "KEYS_UNAVAILABLE" });
    state.down = false;
    await expect(verifier.verify(server.adminToken)).resolves.toMatchObject({ subject: expect.any(String) });
  });

  // Last in this file: it retires the key every earlier test's tokens were signed with.
  it("stops accepting a token once its key has left the server's JWKS (retired at once after a compromise)", async () => {
    const verifier = new TokenVerifier(tessera, { jwksMaxAgeMs: 200 });
    const before = await server.login("system", "admin", ADMIN_PASSWORD);
    await verifier.verify(before.accessToken);
    // An ordinary rotation first: the token's key is then retired but still accepted (its tokens live on) ...
    await server.as(before.accessToken).issue.rotateSigningKey({});
    await server.clients.verify.verifyToken({ token: before.accessToken });
    // ... and a compromise pulls it too, not only the key that was current.
    await server.as(before.accessToken).issue.rotateSigningKey({ retireCurrentNow: true });
    expect((await server.clients.verify.getJwks({})).keys.map((k) => k.kid)).toHaveLength(1);
    // Tessera refuses it at once ...
    const refused = await server.clients.verify.verifyToken({ token: before.accessToken }).catch((e: unknown) => e);
    expect(errorReason(refused)).toBe("TOKEN_INVALID");
    // ... and the SDK once its key set has reached its maximum age.
    await sleep(250);
    await expect(verifier.verify(before.accessToken)).rejects.toThrow();
    // Tokens of the new key verify (its kid was unknown: refetched).
    const after = await server.login("system", "admin", ADMIN_PASSWORD);
    await expect(verifier.verify(after.accessToken)).resolves.toMatchObject({ subject: expect.any(String) });
    await server.clients.verify.verifyToken({ token: after.accessToken });
  });
});
