// TokenVerifier, hasPermission and RegistryResolver without a server: tokens signed here with a key
// the verifier gets from a function, the cases an attacker would try.
import { generateKeyPairSync, sign } from "node:crypto";
import { authorize, hasPermission, RegistryResolver, RevocationKind, RevocationWatcher, TokenVerifier, type TesseraClient } from "@tessera/client";
import { describe, expect, it } from "vitest";

const { publicKey, privateKey } = generateKeyPairSync("ed25519");
const jwk = { ...(publicKey.export({ format: "jwk" }) as Record<string, string>), kid: "k1", alg: "EdDSA", use: "sig" };
const b64 = (v: object) => Buffer.from(JSON.stringify(v)).toString("base64url");

function token(claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}): string {
  const now = Math.floor(Date.now() / 1000);
  const input = `${b64({ alg: "EdDSA", typ: "at+jwt", kid: "k1", ...header })}.${b64({
    iss: "tessera", aud: "tessera", sub: "u1", tid: "t1", sid: "s1", iat: now, exp: now + 300, scope: "game.profile.read", ...claims,
  })}`;
  return `${input}.${sign(null, Buffer.from(input), privateKey).toString("base64url")}`;
}
const reason = (promise: Promise<unknown>) => promise.then(() => "OK", (e: { reason?: string }) => e.reason);

describe("TokenVerifier", () => {
  it("accepts one spelling of a signature only (the last character's spare bits are not a new token)", async () => {
    const verifier = new TokenVerifier(async () => ({ keys: [jwk] }));
    const good = token();
    expect(await reason(verifier.verify(good))).toBe("OK");
    const last = good.at(-1)!;
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    // 64 bytes are 86 characters: the last one carries 4 spare bits, so 16 characters decode alike.
    const signature = good.split(".")[2]!;
    const twins = [...alphabet].filter((c) => c !== last && Buffer.from(signature.slice(0, -1) + c, "base64url").equals(Buffer.from(signature, "base64url")));
    expect(twins).toHaveLength(15);
    for (const c of twins) expect(await reason(verifier.verify(good.slice(0, -1) + c))).toBe("TOKEN_INVALID");
  });

  it("gives exp no leeway, refuses other algorithms, types and issuers", async () => {
    const verifier = new TokenVerifier(async () => ({ keys: [jwk] }), { clockToleranceSeconds: 30 });
    const now = Math.floor(Date.now() / 1000);
    expect(await reason(verifier.verify(token({ exp: now })))).toBe("TOKEN_EXPIRED");
    expect(await reason(verifier.verify(token({ iat: now + 20 })))).toBe("OK"); // within the tolerance
    expect(await reason(verifier.verify(token({}, { alg: "HS256" })))).toBe("TOKEN_INVALID");
    expect(await reason(verifier.verify(token({}, { typ: "JWT" })))).toBe("TOKEN_INVALID");
    expect(await reason(verifier.verify(token({ iss: "other" })))).toBe("TOKEN_INVALID");
    expect(await reason(verifier.verify(token({ aud: "billing" })))).toBe("TOKEN_INVALID");
  });

  it("never takes a withdrawn key back from a fetch that still lists it (an in-flight one, a replica not reloaded yet)", async () => {
    const watcher = new RevocationWatcher({} as TesseraClient, { failMode: "open" });
    let fetches = 0;
    const verifier = new TokenVerifier(async () => (fetches++, { keys: [jwk] }), { revocations: watcher, unknownKidCooldownMs: 0 });
    const t = token();
    expect(await reason(verifier.verify(t))).toBe("OK");
    watcher.apply({ cursor: "1", kind: RevocationKind.REVOCATION_KIND_KEY_RETIRED, tenantId: "", userId: "", sessionId: "", keyId: "k1", eventTime: new Date() });
    expect(await reason(verifier.verify(t))).toBe("TOKEN_INVALID");
    expect(await reason(verifier.verify(token({ sid: "s2" })))).toBe("TOKEN_INVALID");
    expect(fetches).toBeGreaterThan(1); // it did fetch again, and the answer still listed k1
  });

  it("returns results callers cannot change for the next hit", async () => {
    const verifier = new TokenVerifier(async () => ({ keys: [jwk] }));
    const t = token();
    const first = await verifier.verify(t);
    expect(() => (first.scope as string[]).push("identity.*.*")).toThrow();
    expect((await verifier.verify(t)).scope).toEqual(["game.profile.read"]);
  });
});

describe("hasPermission and authorize", () => {
  it("matches as Tessera does: dotted service names, `*` per segment", () => {
    expect(hasPermission({ scope: ["*.profile.read"] }, "game.eu.profile.read")).toBe(true);
    expect(hasPermission({ scope: ["game.eu.*.*"] }, "game.eu.profile.read")).toBe(true);
    expect(hasPermission({ scope: ["game.*.*"] }, "game.eu.profile.read")).toBe(false);
    expect(hasPermission({ scope: ["game.profile.*"] }, "game.profile.write")).toBe(true);
    expect(hasPermission({ scope: ["game.profile.read"] }, "game.profile.write")).toBe(false);
    expect(hasPermission({ scope: ["*.*.*"] }, "not-a-codename")).toBe(false);
  });

  it("refuses tokens of tenants the service does not serve", async () => {
    const verifier = new TokenVerifier(async () => ({ keys: [jwk] }));
    const t = token({ tid: "tenant-b" });
    expect(await authorize(verifier, { tenants: ["tenant-a"] })(`Bearer ${t}`, "game.profile.read")).toMatchObject({ ok: false, status: 403 });
    expect(await authorize(verifier, { tenants: ["tenant-b"] })(`Bearer ${t}`, "game.profile.read")).toMatchObject({ ok: true });
    expect(await authorize(verifier)(undefined)).toMatchObject({ ok: false, status: 401 });
  });
});

describe("RegistryResolver", () => {
  const authorityKeys = [jwk];
  it("reads HTTPS registries (plain HTTP on loopback only), never a URL that only looks local", () => {
    expect(() => new RegistryResolver({ kind: "https", url: "http://localhost:@evil.example/registry.json" }, { authorityKeys })).toThrow(/https/);
    expect(() => new RegistryResolver({ kind: "https", url: "http://id.example.com/registry.json" }, { authorityKeys })).toThrow(/https/);
    expect(() => new RegistryResolver({ kind: "https", url: "https://user:pw@id.example.com/registry.json" }, { authorityKeys })).toThrow(/credentials/);
    expect(new RegistryResolver({ kind: "https", url: "http://127.0.0.1:8080/registry.json" }, { authorityKeys }).name).toBe("http://127.0.0.1:8080/registry.json");
  });

  it("does not look up names no registry can hold", async () => {
    let reads = 0;
    const resolver = new RegistryResolver({ kind: "https", url: "https://id.example.com/registry.json", fetch: (async () => (reads++, new Response("{}"))) as typeof fetch }, { authorityKeys });
    expect(await resolver.lookup("Not_A_Label", "billing")).toBeNull();
    expect(await resolver.lookup("billing-api", "bad name")).toBeNull();
    expect(reads).toBe(0);
  });
});
