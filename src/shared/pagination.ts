// AIP-158 pagination with keyset page tokens. A token carries the last key of
// the previous page and a fingerprint of the query, so a token cannot be
// replayed against a different filter or tenant.
import { createHash } from "node:crypto";
import { TesseraError, Violations } from "../errors.ts";

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
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(request.pageToken, "base64url").toString("utf8"));
  } catch {
    decoded = undefined;
  }
  const token = decoded as { k?: unknown; q?: unknown } | undefined;
  if (!token || typeof token.k !== "string" || token.q !== fingerprint(query)) {
    throw new TesseraError("INVALID_ARGUMENT", "INVALID_PAGE_TOKEN", "page_token is invalid or belongs to another query", {
      fieldViolations: [{ field: "page_token", description: "invalid or from a different query" }],
    });
  }
  return { limit, after: token.k };
}

/** Returns the next_page_token when `rows` (fetched with limit + 1) has more. */
export function nextPageToken<T>(rows: T[], page: Page, keyOf: (row: T) => string, query: unknown): { items: T[]; next: string } {
  if (rows.length <= page.limit) return { items: rows, next: "" };
  const items = rows.slice(0, page.limit);
  const k = keyOf(items[items.length - 1]!);
  return { items, next: Buffer.from(JSON.stringify({ k, q: fingerprint(query) })).toString("base64url") };
}
