// Minecraft's server-hash digest and Tessera's login challenges (src/federation/minecraft-challenge.ts).
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { MinecraftChallenges, minecraftDigest } from "../../src/federation/index.ts";

describe("minecraftDigest", () => {
  it.each([
    ["Notch", "4ed1f46bbe04bc756bcb17c0c7ce3e4632f06a48"],
    ["jeb_", "-7c9d5b0044c130109a5d7b5fb5c317c02b4e28c1"],
    ["simon", "88e16a1019277b15d58faf0541e11910eb756f6"],
  ])("digests %s as Minecraft does (wiki.vg test vectors)", (input, digest) => {
    expect(minecraftDigest(input)).toBe(digest);
  });
});

describe("MinecraftChallenges", () => {
  const key = randomBytes(32);
  const challenges = new MinecraftChallenges(key, 120);
  const tenant = "8f1c2b3a-0000-4000-8000-000000000001";

  it("accepts its own live challenge for its tenant only", () => {
    const { serverId, expiresAt } = challenges.issue(tenant);
    expect(challenges.check(serverId, tenant)?.expiresAt.getTime()).toBe(Math.floor(expiresAt.getTime() / 1000) * 1000);
    expect(challenges.check(serverId, "8f1c2b3a-0000-4000-8000-000000000002")).toBeUndefined();
    expect(new MinecraftChallenges(randomBytes(32), 120).check(serverId, tenant)).toBeUndefined();
  });

  it("refuses an expired or edited challenge", () => {
    const { serverId } = challenges.issue(tenant, Date.now() - 121_000);
    expect(challenges.check(serverId, tenant)).toBeUndefined();
    const live = challenges.issue(tenant).serverId;
    const parts = live.split(".");
    expect(challenges.check([parts[0], parts[1], "zzzzzzz", parts[3]].join("."), tenant)).toBeUndefined();
    expect(challenges.check(`${live.slice(0, -1)}${live.endsWith("A") ? "B" : "A"}`, tenant)).toBeUndefined();
  });
});
