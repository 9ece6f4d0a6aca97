// A throwaway certificate authority for TLS tests, made with the openssl CLI:
// an EC P-256 CA (self-signed, CA:TRUE) and a server certificate it signed
// for the given DNS names and IP addresses, both valid for one day. Nothing
// is kept on disk; clients trust `caPem` (undici: new Agent({ connect: { ca } })).
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findExecutable } from "./nginx.ts";

export interface TestCa {
  /** The CA certificate, for clients to trust. */
  caPem: string;
  /** The server certificate (leaf only) for `names`. */
  certPem: string;
  /** The server's private key (PKCS #8). */
  keyPem: string;
}

/** The openssl binary, or undefined when the machine has none. */
export function opensslPath(): string | undefined {
  return findExecutable("openssl");
}

/** A new CA and a server certificate for `names` (DNS names and IP literals, e.g. ["localhost", "127.0.0.1"]). */
export function createTestCa(names: string[]): TestCa {
  const openssl = opensslPath();
  if (!openssl) throw new Error("openssl is not installed (apt-get install openssl)");
  if (names.length === 0) throw new Error("a server certificate needs at least one name");
  for (const name of names) if (!/^[A-Za-z0-9.*:_-]+$/.test(name)) throw new Error(`not a DNS name or IP address: ${JSON.stringify(name)}`);
  const dir = mkdtempSync(join(tmpdir(), "tessera-ca-"));
  const path = (name: string) => join(dir, name);
  const run = (...args: string[]) => {
    try {
      execFileSync(openssl, args, { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
    } catch (error) {
      throw new Error(`openssl ${args.join(" ")} failed:\n${String((error as { stderr?: unknown }).stderr ?? error)}`);
    }
  };
  try {
    // Our own configuration, so the machine's openssl.cnf adds no extensions of its own.
    writeFileSync(
      path("openssl.cnf"),
      [
        "[req]",
        "distinguished_name = dn",
        "prompt = no",
        "[dn]",
        "[ca]",
        "basicConstraints = critical, CA:TRUE",
        "keyUsage = critical, keyCertSign, cRLSign",
        "subjectKeyIdentifier = hash",
        "[server]",
        "basicConstraints = critical, CA:FALSE",
        "keyUsage = critical, digitalSignature",
        "extendedKeyUsage = serverAuth",
        "subjectKeyIdentifier = hash",
        "authorityKeyIdentifier = keyid:always",
        `subjectAltName = ${names.map((n) => `${isIP(n) ? "IP" : "DNS"}:${n}`).join(", ")}`,
        "",
      ].join("\n"),
    );
    const config = ["-config", path("openssl.cnf")];
    const serial = () => `0x${randomBytes(16).toString("hex").replace(/^./, "1")}`;
    run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path("ca.key"));
    run("req", "-x509", "-new", ...config, "-extensions", "ca", "-key", path("ca.key"), "-subj", "/CN=Tessera test CA", "-days", "1", "-sha256", "-set_serial", serial(), "-out", path("ca.pem"));
    run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path("server.key"));
    run("req", "-new", ...config, "-key", path("server.key"), "-subj", `/CN=${names[0]}`, "-out", path("server.csr"));
    run("x509", "-req", "-in", path("server.csr"), "-CA", path("ca.pem"), "-CAkey", path("ca.key"), "-set_serial", serial(), "-days", "1", "-sha256", "-extfile", path("openssl.cnf"), "-extensions", "server", "-out", path("server.pem"));
    return { caPem: readFileSync(path("ca.pem"), "utf8"), certPem: readFileSync(path("server.pem"), "utf8"), keyPem: readFileSync(path("server.key"), "utf8") };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
