import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTesseraClient, errorReason, TokenVerifier, type TesseraClient } from "../../src/client/index.ts";
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
});
