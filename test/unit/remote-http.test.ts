// The bounded HTTP client of remote logins: tenant-chosen URLs (OpenID Connect
// issuers) never reach private addresses, by name or by literal; bodies are
// bounded as they stream and never decompressed.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { addressAllowed, RemoteHttp } from "../../src/federation/index.ts";
import { TesseraError } from "../../src/errors.ts";

let server: Server;
let port: number;
beforeAll(async () => {
  server = createServer((req, res) => {
    if (req.url === "/big") {
      res.writeHead(200, { "content-type": "application/json" }); // chunked: no content-length to refuse early
      for (let i = 0; i < 64; i++) res.write(" ".repeat(16 * 1024));
      res.end();
    } else if (req.url === "/slow") {
      setTimeout(() => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end("{}");
      }, 300);
    } else if (req.url === "/gzip") {
      res.writeHead(200, { "content-type": "application/json", "content-encoding": "gzip" });
      res.end(gzipSync(Buffer.alloc(1024 * 1024, " ")));
    } else {
      res.writeHead(200, { "content-type": "application/json" });
      res.end('{"ok":true}');
    }
  });
  server.listen(0, "127.0.0.1");
  await new Promise((resolve) => server.once("listening", resolve));
  port = (server.address() as AddressInfo).port;
});
afterAll(() => server?.close());

const settings = { connectTimeoutMs: 1000, totalTimeoutMs: 2000, maxInFlight: 4, maxResponseBytes: 256 * 1024 };
/** The refusal's reason and message, and the codes along its cause chain. */
const reason = (promise: Promise<unknown>) =>
  promise.then(
    () => "answered",
    (e: unknown) => {
      const codes: string[] = [];
      for (let c = (e as { cause?: unknown }).cause, depth = 0; c && depth < 6; c = (c as { cause?: unknown }).cause, depth++) codes.push(String((c as { code?: unknown }).code ?? (c as Error).message));
      return e instanceof TesseraError ? `${e.reason}: ${e.message} [${codes.join(" ")}]` : String(e);
    },
  );

describe("addressAllowed", () => {
  it("refuses private, loopback, link-local, shared and mapped addresses, and lets public ones through", () => {
    for (const a of ["10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "169.254.169.254", "0.0.0.0", "127.0.0.1", "::1", "fd00::1", "fe80::1", "::ffff:10.0.0.1", "::ffff:127.0.0.1", "::", "not an ip"]) {
      expect(addressAllowed(a, false), a).toBe(false);
    }
    for (const a of ["93.184.216.34", "2606:4700::1111", "::ffff:8.8.8.8"]) expect(addressAllowed(a, false), a).toBe(true);
    expect(addressAllowed("127.0.0.1", true)).toBe(true);
    expect(addressAllowed("::1", true)).toBe(true);
    expect(addressAllowed("10.1.2.3", true)).toBe(false);
  });
});

describe("RemoteHttp", () => {
  it("with publicOnly, refuses loopback by literal and by name (at connect time), unless loopback is allowed", async () => {
    const guarded = new RemoteHttp({ ...settings, publicOnly: { allowLoopback: false } });
    try {
      expect(await reason(guarded.get(`http://127.0.0.1:${port}/`, "the issuer"))).toMatch(/^UPSTREAM_UNAVAILABLE: .*private address/);
      // By name: refused by the connect-time lookup (EPRIVATE), not by a failed connection.
      expect(await reason(guarded.get(`http://localhost:${port}/`, "the issuer"))).toMatch(/^UPSTREAM_UNAVAILABLE: .*EPRIVATE/);
      expect(await reason(guarded.get(`http://[::ffff:127.0.0.1]:${port}/`, "the issuer"))).toMatch(/^UPSTREAM_UNAVAILABLE/);
    } finally {
      await guarded.close();
    }
    const loopback = new RemoteHttp({ ...settings, publicOnly: { allowLoopback: true } });
    try {
      expect((await loopback.get(`http://localhost:${port}/`, "the issuer")).body).toBe('{"ok":true}');
    } finally {
      await loopback.close();
    }
  });

  it("refuses a body over the limit as it streams, and a compressed body", async () => {
    const http = new RemoteHttp(settings);
    try {
      expect(await reason(http.get(`http://127.0.0.1:${port}/big`, "the issuer"))).toMatch(/^UPSTREAM_UNAVAILABLE/);
      expect(await reason(http.get(`http://127.0.0.1:${port}/gzip`, "the issuer"))).toMatch(/^UPSTREAM_UNAVAILABLE/);
      expect((await http.get(`http://127.0.0.1:${port}/`, "the issuer")).status).toBe(200);
    } finally {
      await http.close();
    }
  });

  it("keeps calls in flight to one host within its share, leaving the other slots to other hosts", async () => {
    const http = new RemoteHttp({ ...settings, maxInFlightPerHost: 2 });
    try {
      const slow = [1, 2, 3].map(() => reason(http.get(`http://127.0.0.1:${port}/slow`, "the issuer")));
      // Another host still has its slots.
      const otherServer = createServer((_req, res) => res.end("{}"));
      otherServer.listen(0, "127.0.0.1");
      await new Promise((resolve) => otherServer.once("listening", resolve));
      const other = await http.get(`http://127.0.0.1:${(otherServer.address() as AddressInfo).port}/`, "the issuer").finally(() => otherServer.close());
      expect(other.status).toBe(200);
      const outcomes = await Promise.all(slow);
      expect(outcomes.filter((o) => o === "answered")).toHaveLength(2);
      expect(outcomes.filter((o) => o.includes("too many calls in flight to this host"))).toHaveLength(1);
    } finally {
      await http.close();
    }
  });
});
