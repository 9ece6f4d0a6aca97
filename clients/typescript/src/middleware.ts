// Protecting your own services with Tessera's tokens: a nice-grpc server
// middleware, and a plain function for HTTP frameworks, both on a
// TokenVerifier (local verification, revocations when it has a watcher).
import { Status, ServerError, type ServerMiddleware } from "nice-grpc-common";
import { TokenVerificationError, type TokenVerifier, type VerifiedAccessToken } from "./verifier.ts";

/** What tesseraAuthMiddleware adds to a call's context. */
export interface TesseraAuthContext {
  /** The verified caller; undefined only for calls that `optional` let through without a token. */
  principal: VerifiedAccessToken | undefined;
}

export interface AuthMiddlewareOptions {
  /** Let calls without an `authorization` header through with `principal` undefined (default false). A bad token is refused either way. */
  optional?: boolean;
  /** Methods (e.g. "/my.pkg.Service/Health") that need no token at all. */
  public?: string[];
  /** Tenant ids whose tokens are accepted (default: every tenant's); others are refused PERMISSION_DENIED. */
  tenants?: string[];
}

/** `<service>.<resource>.<action>`: a service name may itself contain dots, the last two segments are fixed (as on the server). */
function splitCodename(value: string): [string, string, string] | undefined {
  const last = value.lastIndexOf(".");
  const mid = value.lastIndexOf(".", last - 1);
  if (mid <= 0) return undefined;
  return [value.slice(0, mid), value.slice(mid + 1, last), value.slice(last + 1)];
}

/** Does `principal` hold `permission` (`svc.resource.action`; its scope may hold patterns with `*` segments)? The same matching as Tessera's. */
export function hasPermission(principal: Pick<VerifiedAccessToken, "scope">, permission: string): boolean {
  const wanted = splitCodename(permission);
  if (!wanted) return false;
  return principal.scope.some((pattern) => {
    if (pattern === permission) return true;
    const parts = splitCodename(pattern);
    return parts !== undefined && parts.every((part, i) => part === "*" || part === wanted[i]);
  });
}

/**
 * Whether `principal` belongs to one of `tenants` (ids). Permissions are per
 * tenant: every tenant's administrators may grant their own users any
 * pattern, so a service that serves some tenants only must say which.
 */
function tenantAllowed(principal: VerifiedAccessToken, tenants: readonly string[] | undefined): boolean {
  return tenants === undefined || tenants.includes(principal.tenantId);
}

/**
 * nice-grpc server middleware: verifies `authorization: Bearer <token>` with
 * `verifier` and puts the principal in `context.principal`; refuses with
 * UNAUTHENTICATED (no or bad token) or UNAVAILABLE (keys or revocations
 * unreachable and failing closed).
 *
 *   const server = createServer().use(tesseraAuthMiddleware(verifier));
 *   server.add(MyServiceDefinition, { async get(req, ctx) { ctx.principal?.subject … } });
 */
export function tesseraAuthMiddleware(verifier: TokenVerifier, options: AuthMiddlewareOptions = {}): ServerMiddleware<TesseraAuthContext> {
  const open = new Set(options.public ?? []);
  return async function* tesseraAuth(call, context) {
    if (open.has(call.method.path)) return yield* call.next(call.request, { ...context, principal: undefined });
    const header = context.metadata.get("authorization");
    if (header === undefined && options.optional) return yield* call.next(call.request, { ...context, principal: undefined });
    let principal: VerifiedAccessToken;
    try {
      principal = await verifier.verifyAuthorization(header);
    } catch (error) {
      throw toServerError(call.method.path, error);
    }
    if (!tenantAllowed(principal, options.tenants)) throw new ServerError(Status.PERMISSION_DENIED, "PERMISSION_DENIED: this service does not serve the token's tenant");
    return yield* call.next(call.request, { ...context, principal });
  };
}

function toServerError(_path: string, error: unknown): ServerError {
  if (error instanceof TokenVerificationError) {
    const unavailable = error.reason === "KEYS_UNAVAILABLE" || error.reason === "REVOCATIONS_UNAVAILABLE";
    return new ServerError(unavailable ? Status.UNAVAILABLE : Status.UNAUTHENTICATED, `${error.reason}: ${error.message}`);
  }
  return new ServerError(Status.INTERNAL, "token verification failed");
}

/** The outcome of `authorize` for HTTP: a principal, or the status and reason to answer with. */
export type AuthorizeResult =
  | { ok: true; principal: VerifiedAccessToken }
  | { ok: false; status: 401 | 403 | 503; reason: string; message: string };

/**
 * For HTTP frameworks: `(authorizationHeader, permission?) => result`. 401
 * without a valid token, 403 when `permission` is not in its scope (or the
 * token's tenant is not one of `options.tenants`), 503
 * when keys or revocations cannot be checked (failing closed).
 *
 *   const check = authorize(verifier);
 *   http.createServer(async (req, res) => {
 *     const auth = await check(req.headers.authorization, "billing.invoice.read");
 *     if (!auth.ok) return res.writeHead(auth.status, { "www-authenticate": "Bearer" }).end(auth.reason);
 *     res.end(`hello ${auth.principal.username}`);
 *   });
 */
export function authorize(verifier: TokenVerifier, options: { tenants?: string[] } = {}): (authorizationHeader: string | undefined | null, permission?: string) => Promise<AuthorizeResult> {
  return async (header, permission) => {
    let principal: VerifiedAccessToken;
    try {
      principal = await verifier.verifyAuthorization(header);
    } catch (error) {
      if (!(error instanceof TokenVerificationError)) throw error;
      const unavailable = error.reason === "KEYS_UNAVAILABLE" || error.reason === "REVOCATIONS_UNAVAILABLE";
      return { ok: false, status: unavailable ? 503 : 401, reason: error.reason, message: error.message };
    }
    if (!tenantAllowed(principal, options.tenants)) return { ok: false, status: 403, reason: "PERMISSION_DENIED", message: "this service does not serve the token's tenant" };
    if (permission !== undefined && !hasPermission(principal, permission)) {
      return { ok: false, status: 403, reason: "PERMISSION_DENIED", message: `the token does not carry ${permission}` };
    }
    return { ok: true, principal };
  };
}
