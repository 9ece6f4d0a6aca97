// AIP-158 pagination with keyset page tokens. A token carries the last key of
// the previous page and a fingerprint of the query, so a token cannot be
// replayed against a different filter or tenant, and it is authenticated with
// an HMAC under a server key: a forged or edited token is refused as
// INVALID_PAGE_TOKEN before any of it is decoded or reaches a query.
import { createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual } from "node:crypto";
import { TesseraError, Violations } from "../errors.ts";

/**
 * The HMAC key of page tokens. Random per process until configured; the server
 * derives it from the master key (configurePageTokens) so that every replica
 * accepts the tokens of the others.
 */
let pageTokenKey: Buffer = randomBytes(32);

/** Derives the page-token key from the master key (call once at start-up). */
export function configurePageTokens(masterKey: Buffer): void {
  pageTokenKey = Buffer.from(hkdfSync("sha256", masterKey, Buffer.alloc(0), "tessera page tokens v1", 32));
}

/** Longest page token accepted; real ones are well under it. */
const MAX_PAGE_TOKEN_LENGTH = 1024;
const MAC_BYTES = 16;

const mac = (payload: string) => createHmac("sha256", pageTokenKey).update(payload).digest().subarray(0, MAC_BYTES);

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 1000;

export interface PageRequest {
  pageSize: number;
  pageToken: string;
}

export interface Page {
  limit: number;
  /** Last key of the previous page; undefined on the first page. */
  after?: string;
}

function fingerprint(query: unknown): string {
  return createHash("sha256").update(JSON.stringify(query)).digest("base64url").slice(0, 16);
}

/** Validates page_size/page_token for a query described by `query` (its filters and scope). */
export function readPage(request: PageRequest, query: unknown, v: Violations, defaultSize = DEFAULT_PAGE_SIZE): Page {
  if (request.pageSize < 0 || request.pageSize > MAX_PAGE_SIZE) {
    v.add("page_size", `must be between 0 and ${MAX_PAGE_SIZE}`);
  }
  const limit = request.pageSize === 0 ? defaultSize : Math.min(request.pageSize, MAX_PAGE_SIZE);
  if (!request.pageToken) return { limit };
  const token = openPageToken(request.pageToken);
  if (!token || token.q !== fingerprint(query)) {
    throw new TesseraError("INVALID_ARGUMENT", "INVALID_PAGE_TOKEN", "page_token is invalid or belongs to another query", {
      fieldViolations: [{ field: "page_token", description: "invalid or from a different query" }],
    });
  }
  return { limit, after: token.k };
}

/** The payload of an authentic page token, or undefined. */
function openPageToken(pageToken: string): { k: string; q: string } | undefined {
  if (pageToken.length > MAX_PAGE_TOKEN_LENGTH) return undefined;
  const dot = pageToken.indexOf(".");
  if (dot < 0) return undefined;
  const payload = pageToken.slice(0, dot);
  // Compared as text: base64url decoding ignores a final character's spare bits, so two spellings decode alike.
  const presented = Buffer.from(pageToken.slice(dot + 1));
  const expected = Buffer.from(mac(payload).toString("base64url"));
  if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) return undefined;
  try {
    const value = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as { k?: unknown; q?: unknown } | null;
    return value && typeof value.k === "string" && typeof value.q === "string" ? { k: value.k, q: value.q } : undefined;
  } catch {
    return undefined;
  }
}

/** Returns the next_page_token when `rows` (fetched with limit + 1) has more. */
export function nextPageToken<T>(rows: T[], page: Page, keyOf: (row: T) => string, query: unknown): { items: T[]; next: string } {
  if (rows.length <= page.limit) return { items: rows, next: "" };
  const items = rows.slice(0, page.limit);
  const k = keyOf(items[items.length - 1]!);
  const payload = Buffer.from(JSON.stringify({ k, q: fingerprint(query) })).toString("base64url");
  return { items, next: `${payload}.${mac(payload).toString("base64url")}` };
}
