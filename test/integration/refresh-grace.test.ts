// The refresh grace window (TESSERA_REFRESH_GRACE): a re-presentation of the
// token just rotated, within the window, gets the same successor, so an honest
// client that lost a response or refreshed twice at once stays logged in and
// there is still one live chain; anything else is reuse and revokes the session.
import { Status } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectFailure } from "../support/errors.ts";
import { startTestServer, type TestServer } from "../support/server.ts";

let server: TestServer;
const GRACE_MS = 2000;

beforeAll(async () => {
  server = await startTestServer({ TESSERA_REFRESH_GRACE: "2s" });
  const admin = server.as(server.adminToken);
  await admin.tenants.createTenant({ tenant: { name: "grace" }, admin: { username: "owner", password: "owner-password" } });
});
afterAll(() => server?.close());

const login = () => server.login("grace", "owner", "owner-password");
const refresh = (refreshToken: string, requestedPermissions: string[] = []) => server.clients.refresh.refresh({ refreshToken, requestedPermissions });
const REUSE = { code: Status.UNAUTHENTICATED, reason: "REFRESH_TOKEN_INVALID" };
const REVOKED = { code: Status.UNAUTHENTICATED, reason: "SESSION_REVOKED" };

describe("Refresh grace window", () => {
  it("gives a retry after a lost response the same successor, and keeps one live chain", async () => {
    const first = await login();
    const lost = await refresh(first.refreshToken); // the client never saw this answer
    const retry = await refresh(first.refreshToken);
    expect(retry.refreshToken).toBe(lost.refreshToken);
    expect(retry.sessionId).toBe(first.sessionId);
    await server.clients.verify.verifyToken({ token: retry.accessToken });
    // The chain goes on from the one successor.
    const next = await refresh(retry.refreshToken);
    expect(next.refreshToken).not.toBe(retry.refreshToken);
    await server.clients.verify.verifyToken({ token: next.accessToken });
  });

  it("gives every one of 16 concurrent refreshes of one token the same successor", async () => {
    const first = await login();
    const results = await Promise.all(Array.from({ length: 16 }, () => refresh(first.refreshToken)));
    expect(new Set(results.map((r) => r.refreshToken)).size).toBe(1);
    await refresh(results[0]!.refreshToken);
  });

  it("treats a presentation after the window as reuse and revokes the session", async () => {
    const first = await login();
    const next = await refresh(first.refreshToken);
    await new Promise((resolve) => setTimeout(resolve, GRACE_MS + 500));
    await expectFailure(refresh(first.refreshToken), REUSE);
    await expectFailure(server.clients.verify.verifyToken({ token: next.accessToken }), REVOKED);
    await expectFailure(refresh(next.refreshToken), REVOKED);
  });

  it("refuses a stolen token once the owner has rotated twice, within the window too, and revokes the session", async () => {
    const stolen = await login();
    const second = await refresh(stolen.refreshToken);
    const third = await refresh(second.refreshToken);
    // The thief presents the first token: its successor is spent, so it is an older token: reuse.
    await expectFailure(refresh(stolen.refreshToken), REUSE);
    await expectFailure(refresh(third.refreshToken), REVOKED);
    await expectFailure(server.clients.verify.verifyToken({ token: third.accessToken }), REVOKED);
  });

  it("catches a thief who follows each of the owner's rotations within the window, at the second one", async () => {
    const stolen = await login();
    const owner1 = await refresh(stolen.refreshToken);
    const thief1 = await refresh(stolen.refreshToken); // within the window: the same successor, now shared
    expect(thief1.refreshToken).toBe(owner1.refreshToken);
    const owner2 = await refresh(owner1.refreshToken);
    // The shared token gets no grace: presenting it again is reuse, and the session ends for both.
    await expectFailure(refresh(owner1.refreshToken), REUSE);
    await expectFailure(refresh(owner2.refreshToken), REVOKED);
  });

  it("never hands out a successor of a revoked session", async () => {
    const first = await login();
    const next = await refresh(first.refreshToken);
    await server.as(next.accessToken).issue.revokeSession({});
    await expectFailure(refresh(first.refreshToken), REVOKED);
  });
});
