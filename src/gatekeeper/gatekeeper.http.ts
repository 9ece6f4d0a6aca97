// Gate-Keeper: GET /gatekeeper/verify answers NGINX `auth_request` (and any
// forward-auth proxy). The token comes from `Authorization: Bearer` or, for
// the seed's browser flow, a cookie (TESSERA_GATEKEEPER_COOKIE). 200 with the
// principal in X-Tessera-* headers (the proxy passes them upstream and may
// route on X-Tessera-Region / -Capability / -Registry); 401 without a valid access token
// or service assertion; 403 when `?permission=` is not granted; 503 when the
// answer cannot be known now (database or registry unreachable): a proxy
// must never read that as "allowed".
import type { ServerResponse } from "node:http";
import type { Logger } from "pino";
import { TesseraError } from "../errors.ts";
import type { HttpRoute } from "../http/server.ts";
import { anyPatternMatches, isPermissionPattern } from "../permissions/index.ts";
import type { Principal } from "../tokens/index.ts";

export interface GatekeeperOptions {
  /** Verifies an access token or a service assertion, as VerifyToken does. */
  verify(token: string, audience: string): Promise<Principal>;
  cookie: string;
  log: Logger;
}

const MAX_TOKEN = 8192;
/**
 * Header values are printable ASCII: anything else (a federated user's `é`, a control character) and
 * `%` itself are percent-encoded (UTF-8), so distinct values stay distinct and none can break a line.
 */
const headerValue = (value: string) =>
  value.replace(/[^\x20-\x24\x26-\x7e]/gu, (c) => {
    try {
      return encodeURIComponent(c);
    } catch {
      return "%EF%BF%BD"; // a lone surrogate: U+FFFD
    }
  });

function refuse(res: ServerResponse, status: number, reason: string, message: string): void {
  const headers: Record<string, string> = { "content-type": "text/plain; charset=utf-8", "x-tessera-error": reason, "cache-control": "no-store" };
  if (status === 401) headers["www-authenticate"] = reason === "TOKEN_MISSING" ? 'Bearer realm="tessera"' : 'Bearer realm="tessera", error="invalid_token"';
  const body = `${message}\n`;
  res.writeHead(status, { ...headers, "content-length": Buffer.byteLength(body) });
  res.end(body);
}

function tokenOf(authorization: string | undefined, cookieHeader: string | undefined, cookie: string): string | undefined {
  if (authorization) {
    const m = /^Bearer[ ]+([A-Za-z0-9._~+/=-]+)$/i.exec(authorization.trim());
    return m?.[1] ?? "";
  }
  if (!cookieHeader) return undefined;
  for (const part of cookieHeader.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === cookie) return part.slice(eq + 1).trim().replace(/^"(.*)"$/, "$1");
  }
  return undefined;
}

export function gatekeeperRoute(options: GatekeeperOptions): HttpRoute {
  return async (req, res, url) => {
    const permissions = url.searchParams.getAll("permission");
    const audience = url.searchParams.get("audience") ?? "";
    if (permissions.length > 16 || permissions.some((p) => !isPermissionPattern(p) || p.includes("*")) || audience.length > 255) {
      return refuse(res, 400, "INVALID_INPUT", "permission must be codenames {microservice}.{resource}.{action} (at most 16); audience at most 255 characters");
    }
    const token = tokenOf(req.headers.authorization, req.headers.cookie, options.cookie);
    if (token === undefined) return refuse(res, 401, "TOKEN_MISSING", "no token: send Authorization: Bearer <token> or the cookie");
    if (!token || token.length > MAX_TOKEN) return refuse(res, 401, "TOKEN_INVALID", "the Authorization header is not Bearer <token>");
    let principal: Principal;
    try {
      principal = await options.verify(token, audience);
    } catch (error) {
      if (error instanceof TesseraError) {
        if (error.kind === "UNAVAILABLE") return refuse(res, 503, error.reason, error.message);
        if (error.kind === "UNAUTHENTICATED" || error.kind === "INVALID_ARGUMENT") return refuse(res, 401, error.reason, error.message);
      }
      options.log.warn({ err: error }, "gatekeeper verification failed");
      return refuse(res, 503, "INTERNAL_ERROR", "verification failed; retry");
    }
    const missing = permissions.find((p) => !anyPatternMatches(principal.permissions, p));
    if (missing) return refuse(res, 403, "PERMISSION_DENIED", `missing permission ${missing}`);
    res.writeHead(200, {
      "cache-control": "no-store",
      "content-length": 0,
      "x-tessera-subject": headerValue(principal.subject),
      "x-tessera-tenant": headerValue(principal.tenantName),
      "x-tessera-tenant-id": principal.tenantId,
      "x-tessera-kind": principal.kind,
      "x-tessera-session": principal.sessionId,
      "x-tessera-username": headerValue(principal.username),
      "x-tessera-region": headerValue(principal.region?.id ?? ""),
      "x-tessera-capability": headerValue(principal.region?.capability ?? ""),
      // Which registry vouched for a service: region ids are unique within a registry, not across them.
      "x-tessera-registry": headerValue(principal.region?.registry ?? ""),
      "x-tessera-permissions": headerValue(principal.permissions.join(" ")),
    });
    res.end();
  };
}
