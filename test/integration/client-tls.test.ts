// createTesseraClient's tls option against a real Tessera serving TLS, and mTLS when the server asks
// for client certificates (TESSERA_TLS_CLIENT_CA_FILE): certificates made by openssl for the test.
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTesseraClient, Status, type TesseraClient, type TesseraClientOptions } from "@tessera/client";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startServerProcess, type ServerProcess } from "../support/process.ts";
import { createTestCa, opensslPath } from "../support/test-ca.ts";

const dir = mkdtempSync(join(tmpdir(), "tessera-client-tls-"));
const file = (name: string, text: string) => (writeFileSync(join(dir, name), text), join(dir, name));

/** A client CA and a client certificate it signed (extendedKeyUsage clientAuth). */
function clientCertificate(): { caPem: string; certPem: string; keyPem: string } {
  const openssl = opensslPath()!;
  const run = (...args: string[]) => execFileSync(openssl, args, { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
  writeFileSync(join(dir, "client.cnf"), ["[req]", "distinguished_name = dn", "prompt = no", "[dn]", "[ca]", "basicConstraints = critical, CA:TRUE", "keyUsage = critical, keyCertSign", "[client]", "basicConstraints = critical, CA:FALSE", "keyUsage = critical, digitalSignature", "extendedKeyUsage = clientAuth", ""].join("\n"));
  run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "cca.key");
  run("req", "-x509", "-new", "-config", "client.cnf", "-extensions", "ca", "-key", "cca.key", "-subj", "/CN=client CA", "-days", "1", "-out", "cca.pem");
  run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "client.key");
  run("req", "-new", "-config", "client.cnf", "-key", "client.key", "-subj", "/CN=billing-api", "-out", "client.csr");
  run("x509", "-req", "-in", "client.csr", "-CA", "cca.pem", "-CAkey", "cca.key", "-set_serial", "0x1234", "-days", "1", "-extfile", "client.cnf", "-extensions", "client", "-out", "client.pem");
  const read = (name: string) => readFileSync(join(dir, name), "utf8");
  return { caPem: read("cca.pem"), certPem: read("client.pem"), keyPem: read("client.key") };
}

const code = (promise: Promise<unknown>) => promise.then(() => "OK", (e: { code?: number }) => Status[e.code ?? -1]);

describe.skipIf(!opensslPath() && !process.env.CI)("createTesseraClient over TLS", () => {
  let ca: ReturnType<typeof createTestCa>;
  let client: ReturnType<typeof clientCertificate>;
  let tls: ServerProcess;
  let mtls: ServerProcess;
  const clients: TesseraClient[] = [];
  const open = (address: string, options: TesseraClientOptions) => {
    const c = createTesseraClient(address, { retry: false, defaultDeadlineMs: 5_000, ...options });
    clients.push(c);
    return c;
  };
  /** "localhost:<port>": the certificate's name, not the IP the server listens on. */
  const named = (server: ServerProcess) => `localhost:${server.grpcAddress.split(":").pop()}`;

  beforeAll(async () => {
    ca = createTestCa(["localhost"]);
    client = clientCertificate();
    // Server processes (the in-process test server logs in over plaintext): each with its own embedded database.
    const serverTls = { TESSERA_TLS_CERT_FILE: file("server.pem", ca.certPem), TESSERA_TLS_KEY_FILE: file("server.key", ca.keyPem) };
    // Each from the migrated embedded database the global setup made (a fresh initdb each took most of 30 s on a busy machine).
    for (const name of ["tls-data", "mtls-data"]) cpSync(inject("pgliteTemplate"), join(dir, name, "pg"), { recursive: true });
    [tls, mtls] = await Promise.all([
      startServerProcess({ ...serverTls, TESSERA_DATA_DIR: join(dir, "tls-data") }),
      startServerProcess({ ...serverTls, TESSERA_DATA_DIR: join(dir, "mtls-data"), TESSERA_TLS_CLIENT_CA_FILE: file("client-ca.pem", client.caPem) }),
    ]);
  }, 120_000);

  afterAll(async () => {
    for (const c of clients) c.close();
    await Promise.all([tls?.stop(), mtls?.stop()]);
    rmSync(dir, { recursive: true, force: true });
  });

  it("calls a TLS server whose CA it trusts, and refuses one it does not (nor plaintext)", async () => {
    expect((await open(named(tls), { tls: { ca: ca.caPem } }).verify.getJwks({})).keys.length).toBeGreaterThan(0);
    expect(await code(open(named(tls), { tls: true }).verify.getJwks({}))).toBe("UNAVAILABLE");
    expect(await code(open(named(tls), {}).verify.getJwks({}))).toBe("UNAVAILABLE");
  });

  it("presents its certificate for mTLS; without it the server refuses the connection", async () => {
    const withCert = open(named(mtls), { tls: { ca: ca.caPem, cert: client.certPem, key: client.keyPem } });
    expect((await withCert.verify.getJwks({})).keys.length).toBeGreaterThan(0);
    expect(await code(open(named(mtls), { tls: { ca: ca.caPem } }).verify.getJwks({}))).toBe("UNAVAILABLE");
    expect(() => createTesseraClient(named(mtls), { tls: { ca: ca.caPem, cert: client.certPem } })).toThrow(/go together/);
  });
});
