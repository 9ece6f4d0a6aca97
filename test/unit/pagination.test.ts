// Page tokens: a round trip returns the key, and anything but an untouched
// token of the same query is INVALID_PAGE_TOKEN.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { TesseraError, Violations } from "../../src/errors.ts";
import { configurePageTokens, nextPageToken, readPage } from "../../src/shared/pagination.ts";

const query = { kind: "users", tenantId: "t1", prefix: "" };

function tokenFor(key: string, q: unknown = query): string {
  const rows = [{ key: "first" }, { key }, { key: "beyond" }];
  return nextPageToken(rows, { limit: 2 }, (r) => r.key, q).next;
}

function read(pageToken: string, q: unknown = query) {
  const v = new Violations();
  const page = readPage({ pageSize: 2, pageToken }, q, v);
  v.throwIfAny();
  return page;
}

const refused = (pageToken: string, q: unknown = query) => {
  try {
    read(pageToken, q);
    return false;
  } catch (error) {
    return error instanceof TesseraError && error.reason === "INVALID_PAGE_TOKEN" && error.kind === "INVALID_ARGUMENT";
  }
};

describe("page tokens", () => {
  it("return the last key of the page for the same query", () => {
    fc.assert(fc.property(fc.string({ maxLength: 200 }), (key) => read(tokenFor(key)).after === key));
  });

  it("are refused for another query", () => {
    expect(refused(tokenFor("k"), { ...query, tenantId: "t2" })).toBe(true);
  });

  it("are refused when any character is changed, dropped or added", () => {
    const token = tokenFor("2026-01-01T00:00:00.000Z|00000000-0000-4000-8000-000000000000");
    fc.assert(
      fc.property(fc.nat({ max: token.length - 1 }), fc.constantFrom("A", "B", "C", "D", "z", "0", "-", "_", "."), (i, c) => {
        const edited = token.slice(0, i) + c + token.slice(i + 1);
        return edited === token || refused(edited);
      }),
      { numRuns: 1000 },
    );
    expect(refused(token.slice(0, -1))).toBe(true);
    expect(refused(`${token}A`)).toBe(true);
    expect(refused(token.split(".")[0]!)).toBe(true);
    expect(refused("garbage")).toBe(true);
    expect(refused("x".repeat(5000))).toBe(true);
  });

  it("are refused after the key changes, and accepted by any process with the same master key", () => {
    configurePageTokens(Buffer.alloc(32, 1));
    const token = tokenFor("k");
    configurePageTokens(Buffer.alloc(32, 2));
    expect(refused(token)).toBe(true);
    configurePageTokens(Buffer.alloc(32, 1));
    expect(read(token).after).toBe("k");
  });
});
