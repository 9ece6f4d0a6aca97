// `buf curl` (the real binary) discovers and calls the API through server
// reflection, with no local schema, over both reflection protocols: every
// service on the port (health and reflection included) and the google.rpc
// error-detail types that failed calls carry.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { create, fromBinary, toJson, createFileRegistry, type JsonObject } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../support/server.ts";

const run = promisify(execFile);
const BUF = "node_modules/.bin/buf";
const GRPC = ["curl", "--protocol", "grpc", "--http2-prior-knowledge"];
let server: TestServer;

beforeAll(async () => {
  // A second failed login of one account is throttled, so that a RetryInfo is one call away.
  server = await startTestServer({ TESSERA_LOGIN_FAILURES_PER_ACCOUNT: "1" });
});
afterAll(() => server?.close());

/** Runs `buf curl`; a failed RPC resolves too, with buf curl's error JSON (on stderr) parsed. */
async function bufCurl(args: string[]): Promise<{ stdout: string; error?: { code: string; details?: { type: string; value: string }[] } }> {
  try {
    const { stdout } = await run(BUF, [...GRPC, ...args]);
    return { stdout };
  } catch (e) {
    const { stdout, stderr } = e as { stdout: string; stderr: string };
    if (!stderr.startsWith("{")) throw e;
    return { stdout, error: JSON.parse(stderr) };
  }
}

const services = [
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
  "tessera.identity.v1.IssueService",
  "tessera.identity.v1.PermissionService",
  "tessera.identity.v1.RefreshService",
  "tessera.identity.v1.RegistryService",
  "tessera.identity.v1.TenantService",
  "tessera.identity.v1.UserService",
  "tessera.identity.v1.VerifyService",
];

describe("server reflection", () => {
  it.each(["grpc-v1", "grpc-v1alpha"])("lists every service on the port over %s", async (protocol) => {
    const { stdout } = await bufCurl(["--reflect-protocol", protocol, "--list-services", `http://${server.address}`]);
    expect(stdout.trim().split("\n").sort()).toEqual(services);
  });

  it("lets buf curl call an RPC with a JSON body and a bearer token", async () => {
    const { stdout } = await bufCurl([
      "-H",
      `authorization: Bearer ${server.adminToken}`,
      "-d",
      '{"namePrefix": "sys"}',
      `http://${server.address}/tessera.identity.v1.TenantService/ListTenants`,
    ]);
    expect(JSON.parse(stdout).tenants.map((t: { name: string }) => t.name)).toEqual(["system"]);
  });

  it("lets buf curl call the health service with no schema", async () => {
    const { stdout } = await bufCurl([`http://${server.address}/grpc.health.v1.Health/Check`]);
    expect(JSON.parse(stdout)).toEqual({ status: "SERVING" });
  });

  it("serves the google.rpc error-detail types, enough to decode what buf curl prints for a failed call", async () => {
    // buf curl prints each detail as {type, value: base64}: it decodes only
    // the types compiled into itself, and google.rpc.ErrorInfo is not one
    // (buf 1.74). The types come from reflection instead; fetch them here with
    // buf curl itself, calling the reflection service like any other.
    const { stdout } = await bufCurl([
      "-d",
      JSON.stringify({ fileContainingSymbol: "google.rpc.ErrorInfo" }) + JSON.stringify({ fileByFilename: "google/protobuf/duration.proto" }),
      `http://${server.address}/grpc.reflection.v1.ServerReflection/ServerReflectionInfo`,
    ]);
    // One indented JSON object per response message, each opening at column 0.
    const files = stdout
      .trim()
      .split(/\n(?=\{)/)
      .map((message) => JSON.parse(message) as { fileDescriptorResponse: { fileDescriptorProto: string[] } })
      .flatMap((r) => r.fileDescriptorResponse.fileDescriptorProto)
      .map((b64) => fromBinary(FileDescriptorProtoSchema, Buffer.from(b64, "base64")));
    expect(files.map((f) => f.name)).toEqual(["google/rpc/error_details.proto", "google/protobuf/duration.proto"]);
    const registry = createFileRegistry(create(FileDescriptorSetSchema, { file: files.reverse() }));
    const decode = (detail: { type: string; value: string }): JsonObject => {
      const schema = registry.getMessage(detail.type);
      if (!schema) throw new Error(`reflection does not know ${detail.type}`);
      return toJson(schema, fromBinary(schema, Buffer.from(detail.value, "base64"))) as JsonObject;
    };
    const issue = (body: object) => bufCurl(["-d", JSON.stringify({ password: body }), `http://${server.address}/tessera.identity.v1.IssueService/IssueToken`]);

    const wrong = await issue({ tenant: "system", username: "admin", password: "not the password" });
    expect(wrong.error?.code).toBe("unauthenticated");
    expect(wrong.error?.details?.map(decode)).toEqual([{ reason: "INVALID_CREDENTIALS", domain: "tessera.identity.v1" }]);

    const throttled = await issue({ tenant: "system", username: "admin", password: "not the password either" });
    expect(throttled.error?.code).toBe("resource_exhausted");
    const [info, retry] = throttled.error?.details?.map(decode) ?? [];
    expect(info).toMatchObject({ reason: "TOO_MANY_ATTEMPTS" });
    expect(retry).toHaveProperty("retryDelay", expect.stringMatching(/^\d+(\.\d+)?s$/));

    const invalid = await issue({ tenant: "", username: "admin", password: "x" });
    expect(invalid.error?.code).toBe("invalid_argument");
    expect(invalid.error?.details?.map(decode)).toContainEqual({ fieldViolations: expect.arrayContaining([{ field: "password.tenant", description: "is required" }]) });
  });
});
