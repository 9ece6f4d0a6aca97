// Minecraft login bound to Tessera (closing Argus's open door). With Argus's
// flow the game client hands over (username, server hash) after `join`; but
// the operator of ANY Minecraft server the player joins receives exactly that
// pair, and could present it with another tenant's server address: a login
// as the player anywhere. Here Tessera issues the server id instead: a
// short-lived, single-use challenge bound to the tenant of a server address
// (an HMAC under a key derived from the master key, so every replica checks
// it with nothing stored). The player's launcher calls `join` with the
// Minecraft digest of that server id alone, and Tessera computes the same
// digest itself. A vanilla client connecting to a server always digests the
// server id together with a fresh shared secret and the server's public key,
// so no Minecraft server can obtain a join that matches a Tessera challenge.
import { createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual } from "node:crypto";

const PREFIX = "tmc1";
export const MINECRAFT_CHALLENGE = /^tmc1\.[A-Za-z0-9_-]{22}\.[0-9a-z]{1,10}\.[A-Za-z0-9_-]{22}$/;

/**
 * Minecraft's "server hash": SHA-1 of the input read as a signed (two's
 * complement) big-endian number, in hexadecimal without leading zeros.
 */
export function minecraftDigest(input: string | Buffer): string {
  const digest = createHash("sha1").update(input).digest();
  const negative = (digest[0]! & 0x80) !== 0;
  if (negative) {
    for (let i = 0; i < digest.length; i++) digest[i] = ~digest[i]! & 0xff;
    for (let i = digest.length - 1; i >= 0; i--) {
      digest[i] = (digest[i]! + 1) & 0xff;
      if (digest[i] !== 0) break;
    }
  }
  const hex = digest.toString("hex").replace(/^0+/, "") || "0";
  return negative ? `-${hex}` : hex;
}

export class MinecraftChallenges {
  readonly #key: Buffer;
  readonly #ttlSeconds: number;

  constructor(masterKey: Buffer, ttlSeconds: number) {
    this.#key = Buffer.from(hkdfSync("sha256", masterKey, Buffer.alloc(0), "tessera minecraft challenges v1", 32));
    this.#ttlSeconds = ttlSeconds;
  }

  #mac(tenantId: string, nonce: string, expires: string): string {
    return createHmac("sha256", this.#key).update(`${tenantId}\u0000${nonce}\u0000${expires}`).digest().subarray(0, 16).toString("base64url");
  }

  /** A new server id for a login into `tenantId`. */
  issue(tenantId: string, now = Date.now()): { serverId: string; expiresAt: Date } {
    const nonce = randomBytes(16).toString("base64url");
    const expiresAt = new Date(now + this.#ttlSeconds * 1000);
    const expires = Math.floor(expiresAt.getTime() / 1000).toString(36);
    return { serverId: `${PREFIX}.${nonce}.${expires}.${this.#mac(tenantId, nonce, expires)}`, expiresAt };
  }

  /** Whether `serverId` is a live challenge this server issued for `tenantId`; its expiry (for the single-use record). */
  check(serverId: string, tenantId: string, now = Date.now()): { expiresAt: Date } | undefined {
    if (!MINECRAFT_CHALLENGE.test(serverId)) return undefined;
    const [, nonce, expires, mac] = serverId.split(".") as [string, string, string, string];
    const expected = Buffer.from(this.#mac(tenantId, nonce, expires));
    if (!timingSafeEqual(Buffer.from(mac), expected)) return undefined;
    const expiresAt = new Date(parseInt(expires, 36) * 1000);
    return expiresAt.getTime() > now ? { expiresAt } : undefined;
  }
}
