import { BlockList } from "node:net";
import { describe, expect, it } from "vitest";
import { clientAddress, socketAddress } from "../../src/grpc/client-address.ts";

const trusted = new BlockList();
trusted.addSubnet("10.0.0.0", 8, "ipv4");

describe("client address", () => {
  it("takes the socket address, without its port, IPv4-mapped IPv6 as IPv4", () => {
    expect(socketAddress("127.0.0.1:5000")).toBe("127.0.0.1");
    expect(socketAddress("::1:5000")).toBe("::1");
    expect(socketAddress("::ffff:192.0.2.7:443")).toBe("192.0.2.7");
  });

  it("ignores x-forwarded-for from a caller that is not a trusted proxy (a caller cannot choose its address)", () => {
    expect(clientAddress("203.0.113.9:1234", "198.51.100.1", trusted)).toBe("203.0.113.9");
  });

  it("believes a trusted proxy, walking the chain from the nearest hop past other trusted proxies", () => {
    expect(clientAddress("10.0.0.2:1234", "198.51.100.1", trusted)).toBe("198.51.100.1");
    expect(clientAddress("10.0.0.2:1234", "6.6.6.6, 198.51.100.1, 10.1.1.1", trusted)).toBe("198.51.100.1");
    // A spoofed leftmost entry is never reached while an untrusted hop stands before it.
    expect(clientAddress("10.0.0.2:1234", "1.2.3.4, 203.0.113.5", trusted)).toBe("203.0.113.5");
    // Garbage in the header leaves the last address that was believable.
    expect(clientAddress("10.0.0.2:1234", "not-an-ip", trusted)).toBe("10.0.0.2");
  });
});
