// Properties of the permission pattern matcher (fast-check).
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { anyPatternMatches, intersectPatterns, isPermissionPattern, patternMatches } from "../../src/permissions/match.ts";

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
