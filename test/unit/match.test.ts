// Properties of the permission pattern matcher (fast-check).
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MAX_VIOLATIONS, Violations } from "../../src/errors.ts";
import {
  anyPatternMatches,
  checkPatternList,
  CODENAME,
  intersectPatterns,
  isPermissionPattern,
  patternMatches,
  withoutRedundant,
} from "../../src/permissions/match.ts";

const segment = fc.stringMatching(/^[a-z][a-z0-9_-]{0,6}$/);
const service = fc.stringMatching(/^[a-z][a-z0-9-]{0,5}(\.[a-z][a-z0-9-]{0,4})?$/);
const codename = fc.tuple(service, segment, segment).map((parts) => parts.join("."));
const star = (arb: fc.Arbitrary<string>) => fc.oneof(arb, fc.constant("*"));
const pattern = fc.tuple(star(service), star(segment), star(segment)).map((parts) => parts.join("."));
/** A pattern built from a codename by starring some of its segments: it must cover it. */
const codenameAndCover = fc.tuple(service, segment, segment, fc.boolean(), fc.boolean(), fc.boolean()).map(([s, r, a, x, y, z]) => ({
  codename: `${s}.${r}.${a}`,
  cover: `${x ? "*" : s}.${y ? "*" : r}.${z ? "*" : a}`,
}));

describe("permission patterns", () => {
  it("accept every generated codename and pattern as well-formed", () => {
    fc.assert(fc.property(codename, pattern, (c, p) => isPermissionPattern(c) && isPermissionPattern(p)));
  });

  it("*.*.* covers every codename", () => {
    fc.assert(fc.property(codename, (c) => patternMatches("*.*.*", c)));
  });

  it("a literal codename covers only itself", () => {
    fc.assert(fc.property(codename, codename, (a, b) => patternMatches(a, b) === (a === b)));
  });

  it("starring segments of a codename gives a pattern that covers it", () => {
    fc.assert(fc.property(codenameAndCover, ({ codename: c, cover }) => patternMatches(cover, c)));
  });

  it("a `*` in the request is covered only by a `*` in the grant", () => {
    fc.assert(fc.property(service, segment, segment, (s, r, a) => !patternMatches(`${s}.${r}.${a}`, `${s}.*.${a}`) && patternMatches(`${s}.*.${a}`, `${s}.*.${a}`)));
  });

  it("intersectPatterns(a, b) covers a codename exactly when both a and b cover it", () => {
    fc.assert(
      fc.property(fc.array(pattern, { maxLength: 4 }), fc.array(pattern, { maxLength: 4 }), codename, (a, b, c) => {
        const both = anyPatternMatches(a, c) && anyPatternMatches(b, c);
        return anyPatternMatches(intersectPatterns(a, b), c) === both;
      }),
      { numRuns: 500 },
    );
  });

  it("rejects malformed patterns", () => {
    for (const bad of ["", "a", "a.b", "a..b", "A.b.c", "a.b.c*", "a.*b.c", "*", "a.b.c.", " a.b.c", "a.b.c d", "a.b.é"]) {
      expect(isPermissionPattern(bad), bad).toBe(false);
    }
  });

  it("handles microservice names that contain dots", () => {
    expect(patternMatches("region.eu.*.retrieve", "region.eu.profile.retrieve")).toBe(true);
    expect(patternMatches("*.profile.retrieve", "region.eu.profile.retrieve")).toBe(true);
    expect(patternMatches("region.*.retrieve", "region.eu.profile.retrieve")).toBe(false);
  });
});

describe("isPermissionPattern", () => {
  it("accepts codenames and patterns up to 200 characters, not one more", () => {
    const at = (length: number) => `${"s".repeat(length - 4)}.r.a`;
    expect(at(200)).toHaveLength(200);
    expect(isPermissionPattern(at(200))).toBe(true);
    expect(isPermissionPattern(at(201))).toBe(false);
    expect(isPermissionPattern(`*.${"r".repeat(196)}.a`)).toBe(true);
    expect(isPermissionPattern(`*.${"r".repeat(197)}.a`)).toBe(false);
    expect(isPermissionPattern(`a.b.${"c".repeat(500)}`)).toBe(false);
  });

  it("accepts `*` for any whole segment and the documented segment alphabets", () => {
    for (const good of [
      "a.b.c",
      "*.b.c",
      "a.*.c",
      "a.b.*",
      "*.*.*",
      "identity.users.create",
      "region.eu-1.profile.retrieve",
      "game2.profile_v2.re-try",
      "a-.b_.c-",
      "a9.b9.c9",
      "a..b.c.d",
    ]) {
      expect(isPermissionPattern(good), good).toBe(true);
    }
  });

  it("refuses a bad character or a bad first character in each segment", () => {
    for (const bad of [
      // service: [a-z][a-z0-9.-]*
      "1a.b.c",
      "-a.b.c",
      ".a.b.c",
      "_a.b.c",
      "Ab.b.c",
      "a_b.c.d",
      "aB.c.d",
      "a!.b.c",
      "a b.c.d",
      "**.b.c",
      "a*.b.c",
      "*a.b.c",
      // resource: [a-z][a-z0-9_-]*
      "a.1b.c",
      "a._b.c",
      "a.-b.c",
      "a.Bb.c",
      "a.bB.c",
      "a.b!.c",
      "a.b c.d",
      "a.**.c",
      "a.b*.c",
      // action
      "a.b.1c",
      "a.b._c",
      "a.b.-c",
      "a.b.Cc",
      "a.b.cC",
      "a.b.c!",
      "a.b.**",
      "a.b.*c",
      "a.b.c\n",
    ]) {
      expect(isPermissionPattern(bad), bad).toBe(false);
    }
  });
});

describe("CODENAME", () => {
  it("matches codenames (no `*`), with dotted microservice names", () => {
    for (const good of ["a.b.c", "identity.users.create", "region.eu-1.profile.retrieve", "game2.profile_v2.re-try", "a9.b-_.c_-"]) {
      expect(CODENAME.test(good), good).toBe(true);
    }
  });

  it("refuses patterns and malformed names", () => {
    for (const bad of [
      "*.b.c",
      "a.*.c",
      "a.b.*",
      "a.b",
      "a",
      "",
      ".a.b",
      "a..b",
      "a.b.",
      "1a.b.c",
      "Aa.b.c",
      "a_b.c.d",
      "a.1b.c",
      "a.B.c",
      "a.b.1c",
      "a.b.C",
      "a.b.c!",
      " a.b.c",
      "a.b.c ",
      "xa.b.c.",
      "a.b c.d",
      "a b.c.d",
      "a.b.c\nd.e.f",
    ]) {
      expect(CODENAME.test(bad), JSON.stringify(bad)).toBe(false);
    }
  });
});

describe("patternMatches", () => {
  it("covers a name by itself, even one that is not a three-segment codename", () => {
    for (const name of ["a.b.c", "legacy", "a.b", ".b.c", "a..b", ""]) {
      expect(patternMatches(name, name), name).toBe(true);
    }
  });

  it("never covers, and never throws on, a name or pattern that does not split in three", () => {
    for (const [p, c] of [
      ["*.*.*", "legacy"],
      ["*.*.*", "a.b"],
      ["*.*.*", ".b.c"],
      ["*.b.c", ".b.c"],
      ["a.b", "x.a.b"],
      ["legacy", "a.b.c"],
      [".b.c", "a.b.c"],
      ["*.*.*", ""],
    ] as const) {
      expect(patternMatches(p, c), `${p} / ${c}`).toBe(false);
    }
  });

  it("matches segment by segment, `*` covering one whole segment", () => {
    expect(patternMatches("a.*.c", "a.b.c")).toBe(true);
    expect(patternMatches("a.*.c", "a.b.d")).toBe(false);
    expect(patternMatches("a.*.c", "x.b.c")).toBe(false);
    expect(patternMatches("*.b.*", "a.b.c")).toBe(true);
    expect(patternMatches("*.b.*", "a.x.c")).toBe(false);
    expect(patternMatches("a.b.*", "a.b.c")).toBe(true);
    expect(patternMatches("a.b.*", "a.x.c")).toBe(false);
    expect(patternMatches("a.b.c", "a.b.d")).toBe(false);
    expect(patternMatches("a.b.c", "x.b.c")).toBe(false);
    expect(patternMatches("a.b.c", "a.x.c")).toBe(false);
    expect(patternMatches("a.b.c", "a.b.*")).toBe(false);
    expect(patternMatches("*.*.*", "*.*.*")).toBe(true);
  });
});

describe("anyPatternMatches", () => {
  it("is true when one of the patterns covers the codename", () => {
    expect(anyPatternMatches([], "a.b.c")).toBe(false);
    expect(anyPatternMatches(["x.y.z"], "a.b.c")).toBe(false);
    expect(anyPatternMatches(["x.y.z", "a.*.c", "q.r.s"], "a.b.c")).toBe(true);
    expect(anyPatternMatches(new Set(["a.b.c"]), "a.b.c")).toBe(true);
    expect(anyPatternMatches(["a.b.c", "x.y.z"], "x.y.z")).toBe(true);
  });
});

describe("intersectPatterns", () => {
  it("takes the segment-wise meet of each pair", () => {
    expect(intersectPatterns(["a.*.*"], ["*.b.*"])).toEqual(["a.b.*"]);
    expect(intersectPatterns(["*.b.*"], ["a.*.*"])).toEqual(["a.b.*"]);
    expect(intersectPatterns(["a.b.c"], ["*.*.*"])).toEqual(["a.b.c"]);
    expect(intersectPatterns(["*.*.*"], ["a.b.c"])).toEqual(["a.b.c"]);
    expect(intersectPatterns(["a.b.c"], ["a.b.c"])).toEqual(["a.b.c"]);
    expect(intersectPatterns(["*.*.c"], ["a.*.*"])).toEqual(["a.*.c"]);
  });

  it("yields nothing for pairs that differ in a literal segment", () => {
    expect(intersectPatterns(["a.b.c"], ["a.b.d"])).toEqual([]);
    expect(intersectPatterns(["a.b.c"], ["a.x.c"])).toEqual([]);
    expect(intersectPatterns(["a.b.c"], ["x.b.c"])).toEqual([]);
    expect(intersectPatterns(["a.*.c"], ["x.*.*"])).toEqual([]);
    expect(intersectPatterns(["a.b.*"], ["*.x.*"])).toEqual([]);
    expect(intersectPatterns([], ["a.b.c"])).toEqual([]);
    expect(intersectPatterns(["a.b.c"], [])).toEqual([]);
  });

  it("skips entries that are not three segments, on either side", () => {
    expect(intersectPatterns(["legacy", "a.b.c", "a.b"], ["*.*.*"])).toEqual(["a.b.c"]);
    expect(intersectPatterns(["*.*.*"], ["legacy", "a.b.c", ".b.c"])).toEqual(["a.b.c"]);
  });

  it("returns the union of the meets, sorted and without redundant ones", () => {
    expect(intersectPatterns(["a.*.*", "b.*.*"], ["*.x.*", "*.x.y"])).toEqual(["a.x.*", "b.x.*"]);
    expect(intersectPatterns(["z.b.c", "a.b.c"], ["*.*.*"])).toEqual(["a.b.c", "z.b.c"]);
    expect(intersectPatterns(["a.*.*", "a.b.c"], ["*.*.*"])).toEqual(["a.*.*"]);
    expect(intersectPatterns(["a.*.*"], ["*.*.*", "a.b.*", "a.b.c"])).toEqual(["a.*.*"]);
    expect(intersectPatterns(["region.eu.*.*"], ["*.profile.retrieve"])).toEqual(["region.eu.profile.retrieve"]);
  });
});

describe("withoutRedundant", () => {
  it("drops duplicates and patterns another one covers, and sorts", () => {
    expect(withoutRedundant([])).toEqual([]);
    expect(withoutRedundant(["b.c.d", "a.b.c"])).toEqual(["a.b.c", "b.c.d"]);
    expect(withoutRedundant(["a.b.c", "a.b.c"])).toEqual(["a.b.c"]);
    expect(withoutRedundant(["a.b.c", "a.*.*", "b.c.d", "a.b.c", "*.c.d", "a.*.c"])).toEqual(["*.c.d", "a.*.*"]);
    expect(withoutRedundant(["a.b.c", "*.*.*", "x.y.z"])).toEqual(["*.*.*"]);
    expect(withoutRedundant(new Set(["x.y.*", "x.y.z", "legacy"]))).toEqual(["legacy", "x.y.*"]);
  });

  it("keeps patterns that only overlap", () => {
    expect(withoutRedundant(["a.*.c", "a.b.*"])).toEqual(["a.*.c", "a.b.*"]);
    expect(withoutRedundant(["*.b.c", "a.*.c"])).toEqual(["*.b.c", "a.*.c"]);
  });

  it("leaves no pattern covered by another, and covers what the input covered", () => {
    fc.assert(
      fc.property(fc.array(pattern, { maxLength: 8 }), codename, (patterns, c) => {
        const out = withoutRedundant(patterns);
        expect(out).toEqual([...out].sort());
        for (const p of out) expect(out.filter((q) => q !== p && patternMatches(q, p))).toEqual([]);
        return anyPatternMatches(out, c) === anyPatternMatches(patterns, c);
      }),
    );
  });
});

describe("checkPatternList", () => {
  const bad = "must be {microservice}.{resource}.{action}, `*` allowed per segment";

  it("accepts up to `max` good patterns", () => {
    const v = new Violations();
    checkPatternList(["a.b.c", "*.*.*", "x.*.z"], 3, "group.permissions", v);
    expect(v.list).toEqual([]);
    checkPatternList([], 0, "group.permissions", v);
    expect(v.list).toEqual([]);
  });

  it("reports each bad entry by index", () => {
    const v = new Violations();
    checkPatternList(["a.b.c", "A.b.c", "x.*.z", "nope"], 4, "requested_permissions", v);
    expect(v.list).toEqual([
      { field: "requested_permissions[1]", description: bad },
      { field: "requested_permissions[3]", description: bad },
    ]);
  });

  it("over `max` entries is one violation, and the entries are not looked at", () => {
    const v = new Violations();
    checkPatternList(["a.b.c", "bad", "x.y.z"], 2, "group.permissions", v);
    expect(v.list).toEqual([{ field: "group.permissions", description: "must have at most 2 entries" }]);
    const looked: PropertyKey[] = [];
    const spy = new Proxy(["a", "b", "c"], {
      get(target, key, receiver) {
        if (typeof key === "string" && /^\d+$/.test(key)) looked.push(key);
        return Reflect.get(target, key, receiver);
      },
    });
    const w = new Violations();
    checkPatternList(spy, 2, "f", w);
    expect(looked).toEqual([]);
    expect(w.list).toEqual([{ field: "f", description: "must have at most 2 entries" }]);
  });

  it("stops looking once the violations are full", () => {
    const entries = Array.from({ length: MAX_VIOLATIONS + 10 }, (_, i) => `Bad${i}`);
    const looked: string[] = [];
    const spy = new Proxy(entries, {
      get(target, key, receiver) {
        if (typeof key === "string" && /^\d+$/.test(key)) looked.push(key);
        return Reflect.get(target, key, receiver);
      },
    });
    const v = new Violations();
    checkPatternList(spy, 100, "f", v);
    expect(v.list).toHaveLength(MAX_VIOLATIONS);
    expect(v.list.at(-1)).toEqual({ field: `f[${MAX_VIOLATIONS - 1}]`, description: bad });
    expect(looked).toHaveLength(MAX_VIOLATIONS);

    // An already full collector gets nothing looked at.
    const full = new Violations();
    for (let i = 0; i < MAX_VIOLATIONS; i++) full.add("x", "y");
    looked.length = 0;
    checkPatternList(spy, 100, "f", full);
    expect(looked).toEqual([]);
  });
});
