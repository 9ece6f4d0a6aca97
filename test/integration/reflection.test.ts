// `buf curl` (the real binary) discovers and calls the API through server
// reflection, with no local schema, over both reflection protocols.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../support/server.ts";

const run = promisify(execFile);
const BUF = "node_modules/.bin/buf";
let server: TestServer;

beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server?.close());

describe("server reflection", () => {
  it.each(["grpc-v1", "grpc-v1alpha"])("lists every service of the contract over %s", async (protocol) => {
    const { stdout } = await run(BUF, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", "--reflect-protocol", protocol, "--list-services", `http://${server.address}`]);
    const services = stdout.trim().split("\n").sort();
    expect(services).toEqual(
      [
        "tessera.identity.v1.IssueService",
        "tessera.identity.v1.PermissionService",
        "tessera.identity.v1.RefreshService",
        "tessera.identity.v1.RegistryService",
        "tessera.identity.v1.TenantService",
        "tessera.identity.v1.UserService",
        "tessera.identity.v1.VerifyService",
      ].sort(),
    );
  });

  it("lets buf curl call an RPC with a JSON body and a bearer token", async () => {
    const { stdout } = await run(BUF, [
      "curl",
      "--protocol",
      "grpc",
      "--http2-prior-knowledge",
      "-H",
      `authorization: Bearer ${server.adminToken}`,
      "-d",
      '{"namePrefix": "sys"}',
      `http://${server.address}/tessera.identity.v1.TenantService/ListTenants`,
    ]);
    expect(JSON.parse(stdout).tenants.map((t: { name: string }) => t.name)).toEqual(["system"]);
  });
});
