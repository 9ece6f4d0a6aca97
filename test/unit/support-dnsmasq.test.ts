// The dnsmasq test support: TXT records served by a real dnsmasq, read back
// through node's resolver, over UDP and (for answers over 512 bytes) TCP.
import { Resolver } from "node:dns/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dnsmasqPath, startDnsmasq, type TestDnsmasq } from "../support/dnsmasq.ts";

const strings = (char: string, count: number) => Array.from({ length: count }, (_, i) => String.fromCharCode(char.charCodeAt(0) + i).repeat(255));

describe.skipIf(!dnsmasqPath())("test dnsmasq (skipped without a dnsmasq binary: apt-get install dnsmasq-base)", () => {
  const long = strings("a", 3); // 765 bytes in one TXT record: truncated over UDP, so node asks again over TCP
  const veryLong = strings("j", 8); // 2 KB: too long for one dnsmasq configuration line, so it goes on the command line
  let dns: TestDnsmasq;
  let resolver: Resolver;
  beforeAll(async () => {
    dns = await startDnsmasq([
      { name: "long.registry.test", values: long },
      { name: "short.registry.test", values: ["eyJhbGciOiJFUzI1NiJ9.e30"] },
      { name: "billing-api.capability.svc-1.registry.test", values: ["hyphens"] },
      { name: "two.registry.test", values: ["first"] },
      { name: "two.registry.test", values: ["second"] },
      { name: "very-long.registry.test", values: veryLong },
      { name: "escaped.registry.test", values: ['a "quoted", \\backslashed# value'] },
    ]);
    resolver = new Resolver({ timeout: 2000, tries: 1 });
    resolver.setServers([dns.server]);
  });
  afterAll(async () => {
    await dns?.stop();
  });

  it("serves a record of three 255-byte strings exactly, over TCP after UDP truncation", async () => {
    // dnsmasq serves each TCP connection from a forked child, which logs under its own pid.
    const main = /dnsmasq\[(\d+)\]: started/.exec(dns.log())?.[1];
    const overTcp = () => [...dns.log().matchAll(/dnsmasq\[(\d+)\]: query\[TXT\] long\.registry\.test/g)].filter((m) => m[1] !== main).length;
    const before = overTcp();
    expect(await resolver.resolveTxt("long.registry.test")).toEqual([long]);
    expect(overTcp()).toBe(before + 1);
  });

  it("serves short records, hyphenated names and RRsets of several records", async () => {
    expect(await resolver.resolveTxt("short.registry.test")).toEqual([["eyJhbGciOiJFUzI1NiJ9.e30"]]);
    expect(await resolver.resolveTxt("billing-api.capability.svc-1.registry.test")).toEqual([["hyphens"]]);
    expect((await resolver.resolveTxt("two.registry.test")).sort()).toEqual([["first"], ["second"]]);
  });

  it("serves records longer than a dnsmasq configuration line, and escapes quotes and backslashes", async () => {
    expect(await resolver.resolveTxt("very-long.registry.test")).toEqual([veryLong]);
    expect(await resolver.resolveTxt("escaped.registry.test")).toEqual([['a "quoted", \\backslashed# value']]);
  });

  it("answers NXDOMAIN for other names and NODATA for other types", async () => {
    await expect(resolver.resolveTxt("missing.registry.test")).rejects.toMatchObject({ code: "ENOTFOUND" });
    await expect(resolver.resolveTxt("example.com")).rejects.toMatchObject({ code: "ENOTFOUND" });
    await expect(resolver.resolve4("short.registry.test")).rejects.toMatchObject({ code: "ENODATA" });
  });

  it("refuses values a TXT character-string cannot hold", async () => {
    await expect(startDnsmasq([{ name: "x.test", values: ["x".repeat(256)] }])).rejects.toThrow(/at most 255 bytes/);
  });

  it("restarts on the same port with other records", async () => {
    const first = await startDnsmasq([{ name: "k.registry.test", values: ["one"] }]);
    await first.stop();
    const second = await startDnsmasq([{ name: "k.registry.test", values: ["two"] }], { port: first.port });
    try {
      const r = new Resolver({ timeout: 2000, tries: 1 });
      r.setServers([second.server]);
      expect(await r.resolveTxt("k.registry.test")).toEqual([["two"]]);
    } finally {
      await second.stop();
    }
  });
});
