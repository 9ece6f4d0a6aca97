// The nginx test support: a real nginx in front of a node:http upstream.
import { existsSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nginxPath, startNginx, type TestNginx } from "../support/nginx.ts";

describe.skipIf(!nginxPath())("test nginx (skipped without an nginx binary: apt-get install nginx)", () => {
  let upstream: Server;
  let nginx: TestNginx;
  beforeAll(async () => {
    upstream = createServer((req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ path: req.url, forwardedFor: req.headers["x-forwarded-for"] }));
    });
    upstream.listen(0, "127.0.0.1");
    await new Promise((resolve) => upstream.once("listening", resolve));
    const upstreamPort = (upstream.address() as AddressInfo).port;
    nginx = await startNginx({
      config: ({ listen }) => `
        upstream app { server 127.0.0.1:${upstreamPort}; }
        server {
          listen 127.0.0.1:${listen};
          location / {
            proxy_pass http://app;
            proxy_set_header X-Forwarded-For $remote_addr;
            add_header X-Proxied-By nginx always;
          }
        }`,
    });
  });
  afterAll(async () => {
    await nginx?.stop();
    upstream?.closeAllConnections();
    await new Promise((resolve) => upstream?.close(resolve));
  });

  it("proxies to the upstream and adds its own header", async () => {
    const response = await fetch(`${nginx.url}/hello?x=1`);
    expect(response.status).toBe(200);
    expect(response.headers.get("x-proxied-by")).toBe("nginx");
    expect(response.headers.get("server")).toMatch(/^nginx/);
    expect(await response.json()).toEqual({ path: "/hello?x=1", forwardedFor: "127.0.0.1" });
    expect(nginx.accessLog()).toContain("GET /hello?x=1");
  });

  it("reports a configuration nginx refuses, with its error log", async () => {
    await expect(startNginx({ config: () => "no_such_directive on;" })).rejects.toThrow(/unknown directive "no_such_directive"/);
  });

  it("stops and removes its prefix", async () => {
    const other = await startNginx({ config: ({ listen }) => `server { listen 127.0.0.1:${listen}; return 204; }` });
    expect((await fetch(other.url)).status).toBe(204);
    await other.stop();
    await expect(fetch(other.url)).rejects.toThrow();
    expect(existsSync(other.prefix)).toBe(false);
  });
});
