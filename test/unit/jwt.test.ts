// Access-token JWS (src/tokens/jwt.ts). Every test token is signed with a key
// made here, so each check of parseAccessToken/verifyAccessToken is met on its
// own: a token that breaks one rule and keeps all the others, the signature
// included, must be refused for that rule and with its own message.
import { generateKeyPairSync, sign, verify } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { refusal } from "../support/errors.ts";
import { TesseraError } from "../../src/errors.ts";
import {
  ACCESS_TOKEN_TYP,
  checkAudienceAndExpiry,
  CLOCK_SKEW_SECONDS,
  MAX_JWT_LENGTH,
  parseAccessToken,
  signJwt,
  verifyAccessToken,
  type AccessClaims,
} from "../../src/tokens/jwt.ts";

const { publicKey, privateKey } = generateKeyPairSync("ed25519");
const other = generateKeyPairSync("ed25519");

const NOW = 1_750_000_000;
const ISSUER = "https://tessera.test";
const AUDIENCE = "tessera";
const KID = "key-2025-01";
const EXPECTED = { issuer: ISSUER, audience: AUDIENCE, nowSeconds: NOW };
const HEADER = { alg: "EdDSA", kid: KID, typ: "at+jwt" };

function claims(overrides: Record<string, unknown> = {}): AccessClaims {
  return {
    iss: ISSUER,
    sub: "0b7e8a52-5d1c-4f0e-9a43-6a1e2f3c4d5e",
    aud: AUDIENCE,
    exp: NOW + 300,
    iat: NOW,
    jti: "3f0c1a9e-2b4d-4c6e-8f10-1a2b3c4d5e6f",
    tid: "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a",
    sid: "5e4d3c2b-1a0f-4e9d-8c7b-6a5f4e3d2c1b",
    scope: "identity.self.* game.profile.retrieve",
    upn: "alice@example.com",
    knd: "user",
    preferred_username: "alice",
    ...overrides,
  } as AccessClaims;
}

/** A JSON value, or (a string) the exact JSON text, base64url-encoded. */
const enc = (value: unknown) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");
const dec = (segment: string) => Buffer.from(segment, "base64url");

/** A compact JWS over any header and payload, signed with the test key (or `key`). */
function build(header: unknown, payload: unknown, key = privateKey): string {
  const input = `${enc(header)}.${enc(payload)}`;
  return `${input}.${sign(null, Buffer.from(input), key).toString("base64url")}`;
}

/** The payload's JSON with `name` set to raw JSON text (e.g. 1e999, which JSON.parse reads as Infinity). */
function rawClaim(name: string, json: string): string {
  return JSON.stringify({ ...claims(), [name]: "__RAW__" }).replace('"__RAW__"', json);
}

function withoutClaim(name: string): Record<string, unknown> {
  const c: Record<string, unknown> = { ...claims() };
  delete c[name];
  return c;
}

function withoutHeader(name: string): Record<string, unknown> {
  const h: Record<string, unknown> = { ...HEADER };
  delete h[name];
  return h;
}

const check = (token: string, expected = EXPECTED, key = publicKey) => verifyAccessToken(parseAccessToken(token), key, expected);


const invalid = (message: string) => ({ kind: "UNAUTHENTICATED", reason: "TOKEN_INVALID", message });

/** A valid token of exactly `length` characters (the username pads it). */
function tokenOfLength(length: number): string {
  for (let kidLength = 1; kidLength <= 64; kidLength++) {
    const header = { ...HEADER, kid: "k".repeat(kidLength) };
    const fixed = enc(header).length + 1 + 1 + 86;
    for (let pad = 0; ; pad++) {
      const c = claims({ preferred_username: "u".repeat(pad) });
      const total = fixed + enc(c).length;
      if (total === length) return build(header, c);
      if (total > length) break;
    }
  }
  throw new Error(`no token of length ${length}`);
}

describe("signJwt", () => {
  it("writes the pinned header, the claims and an Ed25519 signature over header.payload", () => {
    const c = claims();
    const token = signJwt(c, KID, privateKey);
    const [h, p, s] = token.split(".") as [string, string, string];
    expect(token.split(".")).toHaveLength(3);
    expect(JSON.parse(dec(h).toString())).toEqual({ alg: "EdDSA", kid: KID, typ: "at+jwt" });
    expect(JSON.parse(dec(p).toString())).toEqual(c);
    expect(dec(s)).toHaveLength(64);
    expect(verify(null, Buffer.from(`${h}.${p}`), publicKey, dec(s))).toBe(true);
    expect(ACCESS_TOKEN_TYP).toBe("at+jwt");
    expect(MAX_JWT_LENGTH).toBe(8192);
    expect(CLOCK_SKEW_SECONDS).toBe(30);
  });

  it("round-trips through parseAccessToken and verifyAccessToken", () => {
    const c = claims();
    const token = signJwt(c, KID, privateKey);
    const [h, p, s] = token.split(".") as [string, string, string];
    expect(parseAccessToken(token)).toEqual({ kid: KID, input: `${h}.${p}`, payload: p, signature: s });
    expect(check(token)).toEqual(c);
  });

  it("hand-built tokens in the same shape verify too (the helpers here agree with the module)", () => {
    expect(check(build(HEADER, claims()))).toEqual(claims());
  });
});

describe("parseAccessToken refuses", () => {
  it("a token over MAX_JWT_LENGTH characters, and accepts one of exactly that length", () => {
    const longest = tokenOfLength(MAX_JWT_LENGTH);
    expect(longest).toHaveLength(8192);
    expect(check(longest).preferred_username).toMatch(/^u+$/);
    const over = tokenOfLength(MAX_JWT_LENGTH + 1);
    expect(over).toHaveLength(8193);
    expect(refusal(() => check(over))).toEqual(invalid("token is too large"));
  });

  it("anything but three base64url segments", () => {
    const token = build(HEADER, claims());
    const [h, p, s] = token.split(".") as [string, string, string];
    for (const bad of [
      "",
      h,
      `${h}.${p}`,
      `${h}.${p}.${s}.${s}`,
      `${token}.`,
      `${h}..${s}`,
      `.${p}.${s}`,
      `${h}.${p}.`,
      // Node's base64url decoder skips padding, blanks and other strays, so
      // these would decode to the very same bytes: only the shape check refuses them.
      `${h}.${p}.${s}=`,
      `${h}.${p}.=${s}`,
      `${h}.${p}.${s} `,
      `${h}.${p}. ${s}`,
      `${h}.${p}.${s.slice(0, 40)} ${s.slice(40)}`,
      `${h}.${p}.${s.slice(0, 40)}+${s.slice(40)}`,
      `${h}.${p}.${s.slice(0, 40)}/${s.slice(40)}`,
    ]) {
      expect(refusal(() => check(bad)), JSON.stringify(bad)).toEqual(invalid("token is not a compact JWS"));
    }
    // The same token with a fourth segment is refused even though its first three are valid.
    expect(refusal(() => parseAccessToken(`${token}.${p}`))).toEqual(invalid("token is not a compact JWS"));
  });

  it("a header that is not a JSON object", () => {
    for (const header of ["null", "[]", '["EdDSA"]', "1", '"EdDSA"', "true", "{", "not json", ""]) {
      const token = build(header, claims());
      if (header === "") {
        // An empty segment is caught by the shape check already.
        expect(refusal(() => check(token))).toEqual(invalid("token is not a compact JWS"));
        continue;
      }
      expect(refusal(() => check(token)), header).toEqual(invalid("token header is not a JSON object"));
    }
  });

  it("any algorithm but EdDSA, even with a valid Ed25519 signature", () => {
    for (const alg of ["none", "HS256", "RS256", "ES256", "eddsa", "EDDSA", "Ed25519", "", null, 1]) {
      expect(refusal(() => check(build({ ...HEADER, alg }, claims()))), String(alg)).toEqual(invalid("token algorithm is not allowed"));
    }
    expect(refusal(() => check(build(withoutHeader("alg"), claims())))).toEqual(invalid("token algorithm is not allowed"));
  });

  it("any typ but at+jwt", () => {
    for (const typ of ["JWT", "jwt", "AT+JWT", "at+JWT", "application/at+jwt", "id+jwt", "", null, 1]) {
      expect(refusal(() => check(build({ ...HEADER, typ }, claims()))), String(typ)).toEqual(invalid("token is not an access token (typ)"));
    }
    expect(refusal(() => check(build(withoutHeader("typ"), claims())))).toEqual(invalid("token is not an access token (typ)"));
  });

  it.each(["jku", "jwk", "x5u", "x5c", "crit"])("a %s header, whatever its value", (name) => {
    for (const value of ["https://attacker.example/jwks.json", { kty: "OKP", crv: "Ed25519", x: "AAAA" }, ["exp"], null, ""]) {
      expect(refusal(() => check(build({ ...HEADER, [name]: value }, claims())))).toEqual(invalid(`token header "${name}" is not allowed`));
    }
  });

  it("other extra header fields are ignored", () => {
    expect(check(build({ ...HEADER, cty: "x", zip: "no", x5t: "abc" }, claims()))).toEqual(claims());
  });

  it("a kid that is missing, not a string, empty or over 64 characters; 1 to 64 are accepted", () => {
    for (const kid of [undefined, null, 7, ["k"], { length: 3 }, "", "k".repeat(65)]) {
      const header = kid === undefined ? withoutHeader("kid") : { ...HEADER, kid };
      expect(refusal(() => check(build(header, claims()))), JSON.stringify(kid)).toEqual(invalid("token has no valid kid"));
    }
    for (const kid of ["k", "k".repeat(64)]) {
      expect(parseAccessToken(build({ ...HEADER, kid }, claims())).kid).toBe(kid);
      expect(check(build({ ...HEADER, kid }, claims()))).toEqual(claims());
    }
  });
});

describe("verifyAccessToken refuses", () => {
  it("a signature by another key, over other bytes, or of the wrong length", () => {
    const token = build(HEADER, claims());
    const [h, p, s] = token.split(".") as [string, string, string];
    expect(refusal(() => check(build(HEADER, claims(), other.privateKey)))).toEqual(invalid("token signature is invalid"));
    expect(refusal(() => check(token, EXPECTED, other.publicKey))).toEqual(invalid("token signature is invalid"));
    const otherPayload = build(HEADER, claims({ sub: "someone-else" })).split(".")[1]!;
    expect(refusal(() => check(`${h}.${otherPayload}.${s}`))).toEqual(invalid("token signature is invalid"));
    const sig = dec(s);
    for (const bad of [sig.subarray(0, 63), Buffer.concat([sig, Buffer.from([0])]), Buffer.concat([sig, sig]), Buffer.from([0]), Buffer.alloc(64)]) {
      expect(refusal(() => check(`${h}.${p}.${bad.toString("base64url")}`)), `${bad.length} bytes`).toEqual(invalid("token signature is invalid"));
    }
  });

  it("a signed payload that is not a JSON object", () => {
    for (const payload of ["null", "[]", "[1]", "1", '"claims"', "false", "{", "nope"]) {
      expect(refusal(() => check(build(HEADER, payload))), payload).toEqual(invalid("token payload is not a JSON object"));
    }
  });

  it.each(["exp", "iat"])("a token without a finite numeric %s", (name) => {
    expect(refusal(() => check(build(HEADER, withoutClaim(name))))).toEqual(invalid(`token has no valid ${name}`));
    for (const json of ['"1750000300"', "null", "true", "[1750000300]", "{}", "1e999", "-1e999"]) {
      expect(refusal(() => check(build(HEADER, rawClaim(name, json)))), json).toEqual(invalid(`token has no valid ${name}`));
    }
  });

  it.each(["iss", "sub", "jti", "tid", "sid", "scope", "knd"])("a token without a string %s", (name) => {
    expect(refusal(() => check(build(HEADER, withoutClaim(name))))).toEqual(invalid(`token has no valid ${name}`));
    for (const value of [null, 1, true, ["x"], { v: "x" }]) {
      expect(refusal(() => check(build(HEADER, claims({ [name]: value })))), JSON.stringify(value)).toEqual(invalid(`token has no valid ${name}`));
    }
  });

  it("another issuer", () => {
    for (const iss of ["https://tessera.test/", "https://evil.test", "", "HTTPS://TESSERA.TEST"]) {
      expect(refusal(() => check(build(HEADER, claims({ iss }))))).toEqual(invalid("token issuer is not accepted"));
    }
    expect(refusal(() => check(build(HEADER, claims()), { ...EXPECTED, issuer: "https://other.test" }))).toEqual(invalid("token issuer is not accepted"));
  });

  it("an audience that does not name this service; accepts a string or a list naming it", () => {
    expect(check(build(HEADER, claims({ aud: AUDIENCE })))).toEqual(claims({ aud: AUDIENCE }));
    expect(check(build(HEADER, claims({ aud: ["other", AUDIENCE] })))).toEqual(claims({ aud: ["other", AUDIENCE] }));
    expect(check(build(HEADER, claims({ aud: [AUDIENCE] })))).toEqual(claims({ aud: [AUDIENCE] }));
    for (const aud of ["other", "", "tessera ", [], ["other"], [["tessera"]], null, 1, { 0: AUDIENCE, length: 1 }, `["${AUDIENCE}"]`]) {
      expect(refusal(() => check(build(HEADER, claims({ aud })))), JSON.stringify(aud)).toEqual(invalid("token audience is not accepted"));
    }
    expect(refusal(() => check(build(HEADER, withoutClaim("aud"))))).toEqual(invalid("token audience is not accepted"));
    expect(refusal(() => check(build(HEADER, claims()), { ...EXPECTED, audience: "other" }))).toEqual(invalid("token audience is not accepted"));
  });

  it("a token issued more than CLOCK_SKEW_SECONDS in the future; up to the skew is accepted", () => {
    expect(check(build(HEADER, claims({ iat: NOW + 30 })))).toEqual(claims({ iat: NOW + 30 }));
    expect(check(build(HEADER, claims({ iat: NOW - 3600 })))).toEqual(claims({ iat: NOW - 3600 }));
    expect(check(build(HEADER, claims({ iat: NOW + 29.5 })))).toEqual(claims({ iat: NOW + 29.5 }));
    for (const iat of [NOW + 31, NOW + 30.5, NOW + 3600]) {
      expect(refusal(() => check(build(HEADER, claims({ iat })))), String(iat)).toEqual(invalid("token is issued in the future"));
    }
  });

  it("an expired token as TOKEN_EXPIRED, from the second of exp on, with no leeway", () => {
    const expired = { kind: "UNAUTHENTICATED", reason: "TOKEN_EXPIRED", message: "token has expired" };
    expect(check(build(HEADER, claims({ exp: NOW + 1 })))).toEqual(claims({ exp: NOW + 1 }));
    expect(check(build(HEADER, claims({ exp: NOW + 0.5 })))).toEqual(claims({ exp: NOW + 0.5 }));
    for (const exp of [NOW, NOW - 1, NOW - 0.5, 0, -1]) {
      expect(refusal(() => check(build(HEADER, claims({ exp })))), String(exp)).toEqual(expired);
    }
    // The same token is fine a second earlier.
    const token = build(HEADER, claims({ exp: NOW }));
    expect(check(token, { ...EXPECTED, nowSeconds: NOW - 1 })).toEqual(claims({ exp: NOW }));
  });

  it("looks at no claim before the signature, and at no claim value before the claim types", () => {
    const everythingWrong = claims({ iss: "x", aud: "y", iat: NOW + 999, exp: NOW - 999 });
    expect(refusal(() => check(build(HEADER, everythingWrong, other.privateKey)))).toEqual(invalid("token signature is invalid"));
    expect(refusal(() => check(build(HEADER, { ...everythingWrong, exp: "soon" })))).toEqual(invalid("token has no valid exp"));
    expect(refusal(() => check(build(HEADER, everythingWrong)))).toEqual(invalid("token issuer is not accepted"));
  });

  it("reports expiry only for a token that is otherwise valid", () => {
    const expired = { exp: NOW - 1 };
    expect(refusal(() => check(build(HEADER, claims({ ...expired, aud: "other" }))))).toEqual(invalid("token audience is not accepted"));
    expect(refusal(() => check(build(HEADER, claims({ ...expired, iat: NOW + 31 }))))).toEqual(invalid("token is issued in the future"));
    expect(refusal(() => check(build(HEADER, claims({ ...expired, iss: "other" }))))).toEqual(invalid("token issuer is not accepted"));
  });
});

describe("checkAudienceAndExpiry (repeated for an already verified token)", () => {
  const at = { audience: AUDIENCE, nowSeconds: NOW };
  const expired = { kind: "UNAUTHENTICATED", reason: "TOKEN_EXPIRED", message: "token has expired" };

  it("passes a token for this audience that has not expired", () => {
    expect(checkAudienceAndExpiry({ aud: AUDIENCE, exp: NOW + 1 }, at)).toBeUndefined();
    expect(checkAudienceAndExpiry({ aud: ["other", AUDIENCE], exp: NOW + 0.5 }, at)).toBeUndefined();
    expect(checkAudienceAndExpiry({ aud: [AUDIENCE], exp: NOW + 3600 }, at)).toBeUndefined();
  });

  it("refuses another audience", () => {
    for (const aud of ["other", "", [], ["other"], [[AUDIENCE]], null, undefined, 1, { 0: AUDIENCE, length: 1 }]) {
      expect(refusal(() => checkAudienceAndExpiry({ aud, exp: NOW + 60 } as never, at)), JSON.stringify(aud)).toEqual(invalid("token audience is not accepted"));
    }
    expect(refusal(() => checkAudienceAndExpiry({ aud: AUDIENCE, exp: NOW + 60 }, { ...at, audience: "other" }))).toEqual(invalid("token audience is not accepted"));
  });

  it("refuses from the second of exp on, as TOKEN_EXPIRED", () => {
    for (const exp of [NOW, NOW - 0.5, NOW - 1, 0]) {
      expect(refusal(() => checkAudienceAndExpiry({ aud: AUDIENCE, exp }, at)), String(exp)).toEqual(expired);
    }
    expect(refusal(() => checkAudienceAndExpiry({ aud: AUDIENCE, exp: NOW + 60 }, { ...at, nowSeconds: NOW + 60 }))).toEqual(expired);
    expect(checkAudienceAndExpiry({ aud: AUDIENCE, exp: NOW + 60 }, { ...at, nowSeconds: NOW + 59 })).toBeUndefined();
  });

  it("checks the audience before the expiry", () => {
    expect(refusal(() => checkAudienceAndExpiry({ aud: "other", exp: NOW - 1 }, at))).toEqual(invalid("token audience is not accepted"));
  });
});

// Properties over generated claims and keys ids.
const text = fc.string({ unit: "binary", maxLength: 24 });
const kidArb = fc.string({ unit: "binary", minLength: 1, maxLength: 40 }).filter((k) => k.length >= 1 && k.length <= 64);
const claimsArb = fc
  .record({
    iss: text,
    sub: text,
    aud: fc.oneof(text, fc.array(text, { minLength: 1, maxLength: 3 })),
    exp: fc.integer({ min: NOW + 1, max: NOW + 10 ** 8 }),
    iat: fc.integer({ min: 0, max: NOW + CLOCK_SKEW_SECONDS }),
    jti: text,
    tid: text,
    sid: text,
    scope: text,
    upn: text,
    knd: fc.constantFrom("user" as const, "service" as const),
    preferred_username: fc.option(text, { nil: undefined }),
  })
  .map((c) => {
    if (c.preferred_username === undefined) delete c.preferred_username;
    return c as AccessClaims;
  });
const audienceOf = (c: AccessClaims) => (typeof c.aud === "string" ? c.aud : c.aud[c.aud.length - 1]!);
const expectedFor = (c: AccessClaims) => ({ issuer: c.iss, audience: audienceOf(c), nowSeconds: NOW });

const isRefused = (token: string, expected: ReturnType<typeof expectedFor>) => {
  try {
    check(token, expected);
    return false;
  } catch (error) {
    if (!(error instanceof TesseraError)) throw error;
    return error.kind === "UNAUTHENTICATED" && error.reason === "TOKEN_INVALID";
  }
};

describe("token properties", () => {
  it("sign → parse → verify returns the claims and the kid", () => {
    fc.assert(
      fc.property(claimsArb, kidArb, (c, kid) => {
        const token = signJwt(c, kid, privateKey);
        const parsed = parseAccessToken(token);
        expect(parsed.kid).toBe(kid);
        expect(verifyAccessToken(parsed, publicKey, expectedFor(c))).toEqual(c);
      }),
      { numRuns: 300 },
    );
  });

  it("flipping any byte of the header, payload or signature is refused as TOKEN_INVALID", () => {
    fc.assert(
      fc.property(claimsArb, kidArb, fc.constantFrom(0, 1, 2), fc.nat(), fc.integer({ min: 1, max: 255 }), (c, kid, part, at, mask) => {
        const segments = signJwt(c, kid, privateKey).split(".");
        const bytes = Buffer.from(dec(segments[part]!));
        bytes[at % bytes.length] = bytes[at % bytes.length]! ^ mask;
        segments[part] = bytes.toString("base64url");
        return isRefused(segments.join("."), expectedFor(c));
      }),
      { numRuns: 1000 },
    );
  });

  it("accepts only the canonical spelling of a signature (its last character's 4 spare bits are zero)", () => {
    const token = build(HEADER, claims());
    const [h, p, sig] = token.split(".") as [string, string, string];
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const sameBytes = [...alphabet].map((ch) => sig.slice(0, -1) + ch).filter((s) => s !== sig && dec(s).equals(dec(sig)));
    expect(sameBytes).toHaveLength(15);
    expect(isRefused(token, EXPECTED)).toBe(false);
    for (const spelling of sameBytes) expect(isRefused(`${h}.${p}.${spelling}`, EXPECTED), spelling).toBe(true);
  });

  it("changing any character of the token to another base64url character is refused", () => {
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    fc.assert(
      fc.property(claimsArb, kidArb, fc.nat(), fc.nat({ max: 63 }), (c, kid, at, replacement) => {
        const token = signJwt(c, kid, privateKey);
        const positions = [...token].flatMap((ch, i) => (ch === "." ? [] : [i]));
        const i = positions[at % positions.length]!;
        const char = alphabet[replacement]!;
        fc.pre(char !== token[i]);
        const tampered = token.slice(0, i) + char + token.slice(i + 1);
        // Also where the last base64url character of the signature only changes its 4
        // spare bits (the same bytes): only the canonical spelling verifies.
        return isRefused(tampered, expectedFor(c));
      }),
      { numRuns: 1000 },
    );
  });
});
