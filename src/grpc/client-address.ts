// The caller's address, as throttling and session records see it: the socket
// peer, or, when the peer is a trusted proxy (TESSERA_TRUSTED_PROXIES), the
// nearest untrusted address in its `x-forwarded-for` chain. Headers from
// anyone else are ignored: a caller cannot pick its own address.
import { isIP, type BlockList } from "node:net";

/** "127.0.0.1:5000" or "::1:5000" (grpc-js puts no brackets) -> the address; IPv4-mapped IPv6 as IPv4. */
export function socketAddress(peer: string): string {
  const address = peer.replace(/:\d+$/, "").replace(/^\[(.*)\]$/, "$1");
  return address.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, "$1");
}

function isTrusted(address: string, trusted: BlockList): boolean {
  const family = isIP(address);
  return family !== 0 && trusted.check(address, family === 4 ? "ipv4" : "ipv6");
}

export function clientAddress(peer: string, forwardedFor: string | undefined, trusted: BlockList): string {
  let address = socketAddress(peer);
  if (!forwardedFor || !isTrusted(address, trusted)) return address;
  // Walk the chain from the right (the hop nearest to us) past trusted proxies.
  const hops = forwardedFor.split(",").map((hop) => socketAddress(hop.trim())).slice(-32);
  while (hops.length && isTrusted(address, trusted)) {
    const next = hops.pop()!;
    if (!isIP(next)) break;
    address = next;
  }
  return address;
}
