// The test CA support: a node:https server with a certificate of the throwaway
// CA, which undici accepts when told to trust the CA and refuses otherwise.
import { X509Certificate } from "node:crypto";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { Agent, fetch } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestCa, opensslPath, type TestCa } from "../support/test-ca.ts";

describe.skipIf(!opensslPath())("test CA (skipped without the openssl CLI: apt-get install openssl)", () => {
  let ca: TestCa;
  let server: Server;
  let port: number;
  const agents: Agent[] = [];
  const agent = (options: ConstructorParameters<typeof Agent>[0]) => {
    const a = new Agent(options);
    agents.push(a);
    return a;
  };
  /** The TLS error code a fetch fails with (undefined when it succeeds). */
  const refused = (url: string, dispatcher: Agent) =>
    fetch(url, { dispatcher }).then(
      () => undefined,
      (error: { cause?: { code?: string } }) => error.cause?.code,
    );
  beforeAll(async () => {
    ca = createTestCa(["localhost", "127.0.0.1"]);
    server = createServer({ cert: ca.certPem, key: ca.keyPem }, (_req, res) => res.end("over TLS"));
    server.listen(0, "127.0.0.1");
    await new Promise((resolve) => server.once("listening", resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await Promise.all(agents.map((a) => a.close()));
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
  });

  it("issues a CA and a server certificate for the names, valid for a day", () => {
    const caCert = new X509Certificate(ca.caPem);
    const leaf = new X509Certificate(ca.certPem);
    expect(caCert.ca).toBe(true);
    expect(leaf.ca).toBe(false);
    expect(leaf.checkIssued(caCert)).toBe(true);
    expect(leaf.verify(caCert.publicKey)).toBe(true);
    expect(leaf.subjectAltName).toBe("DNS:localhost, IP Address:127.0.0.1");
    expect(leaf.publicKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
    expect(leaf.validToDate.getTime() - leaf.validFromDate.getTime()).toBe(24 * 3600 * 1000);
  });

  it("serves TLS that a client trusting the CA accepts, by IP and by DNS name", async () => {
    for (const host of ["127.0.0.1", "localhost"]) {
      const response = await fetch(`https://${host}:${port}/`, { dispatcher: agent({ connect: { ca: ca.caPem } }) });
      expect(await response.text()).toBe("over TLS");
    }
  });

  it("is refused by a client that does not trust the CA, or by another CA", async () => {
    const url = `https://127.0.0.1:${port}/`;
    expect(await refused(url, agent({}))).toBe("UNABLE_TO_VERIFY_LEAF_SIGNATURE");
    expect(await refused(url, agent({ connect: { ca: createTestCa(["localhost"]).caPem } }))).toBe("UNABLE_TO_VERIFY_LEAF_SIGNATURE");
  });

  it("is refused for a name the certificate does not hold", async () => {
    const other = createTestCa(["tessera.test"]);
    const tls = createServer({ cert: other.certPem, key: other.keyPem }, (_req, res) => res.end());
    tls.listen(0, "127.0.0.1");
    await new Promise((resolve) => tls.once("listening", resolve));
    try {
      const url = `https://127.0.0.1:${(tls.address() as AddressInfo).port}/`;
      expect(await refused(url, agent({ connect: { ca: other.caPem } }))).toBe("ERR_TLS_CERT_ALTNAME_INVALID");
    } finally {
      tls.closeAllConnections();
      await new Promise((resolve) => tls.close(resolve));
    }
  });
});
