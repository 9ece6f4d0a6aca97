// Authentication of every call: reads `authorization: Bearer <token>` and puts
// the verified principal in the call context, with the RPC's declared access
// (access.ts). Deny by default: a method that declares no access is refused,
// and one that is not public needs a valid token before its handler runs;
// handlers then check the permission the declaration names (authorize.ts).
import type { ServerMiddleware } from "nice-grpc";
import type { EntityManagerSource } from "../db/entity-manager-source.ts";
import { permissionDenied, unauthenticated } from "../errors.ts";
import { MAX_JWT_LENGTH, type Principal } from "../tokens/index.ts";
import { allowsAnonymous, type DeclaredAccess } from "./access.ts";
import { CallScope, type TesseraContext } from "./context.ts";

/** Verifies an access token and returns its principal, or throws UNAUTHENTICATED; `em` is read only when the caches cannot answer. */
export type Authenticator = (token: string, em: EntityManagerSource) => Promise<Principal>;

const BEARER = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/;

export function readBearer(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const match = BEARER.exec(header.trim());
  if (!match || match[1]!.length > MAX_JWT_LENGTH) throw unauthenticated("TOKEN_INVALID", "malformed authorization header");
  return match[1];
}

export function authMiddleware(
  authenticate: Authenticator,
  accessTable: ReadonlyMap<string, DeclaredAccess>,
): ServerMiddleware<Pick<TesseraContext, "principal" | "access">, Pick<TesseraContext, "em">> {
  return async function* authenticateCall(call, context) {
    const access = accessTable.get(call.method.path);
    if (!access) throw permissionDenied(`${call.method.path} declares no access and is refused`);
    // A presented token must be valid, on public RPCs too: an expired or forged
    // token is refused with its reason, never downgraded to an anonymous call
    // (CreateTenant, for one, behaves differently for anonymous callers).
    const token = readBearer(context.metadata.get("authorization"));
    const principal = token ? await authenticate(token, () => context.em) : undefined;
    if (!principal && !allowsAnonymous(access)) throw unauthenticated("TOKEN_MISSING", "this call needs authorization: Bearer <access token>");
    const scope = CallScope.of(context);
    scope.principal = principal;
    scope.access = access;
    return yield* call.next(call.request, scope);
  };
}
