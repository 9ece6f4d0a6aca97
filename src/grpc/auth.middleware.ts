// Authentication of every call: reads `authorization: Bearer <token>` and puts
// the verified principal in the call context. Deny by default: any RPC not
// listed as public needs a valid token before its handler runs; handlers then
// check the specific permission with authorize().
import type { ServerMiddleware } from "nice-grpc";
import type { EntityManager } from "@mikro-orm/core";
import { unauthenticated } from "../errors.ts";
import type { Principal, TesseraContext } from "./context.ts";

/** Verifies an access token and returns its principal, or throws UNAUTHENTICATED. */
export type Authenticator = (token: string, em: EntityManager) => Promise<Principal>;

/** RPCs callable without a token (DESIGN.md: Issue, Refresh, VerifyToken, GetJwks, RegisterUser, health, reflection). */
export const PUBLIC_RPCS: ReadonlySet<string> = new Set([
  "/tessera.identity.v1.IssueService/IssueToken",
  "/tessera.identity.v1.RefreshService/Refresh",
  "/tessera.identity.v1.VerifyService/VerifyToken",
  "/tessera.identity.v1.VerifyService/GetJwks",
  "/tessera.identity.v1.UserService/RegisterUser",
  "/tessera.identity.v1.RegistryService/GetRegistryDocument",
  // Open tenant signup is decided by the handler (configuration), so the RPC lets anonymous callers through.
  "/tessera.identity.v1.TenantService/CreateTenant",
  "/grpc.health.v1.Health/Check",
  "/grpc.health.v1.Health/Watch",
  "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
  "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
]);

const BEARER = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/;
/** Larger tokens are refused before any parsing (DESIGN: reject oversized tokens). */
export const MAX_TOKEN_LENGTH = 8192;

export function readBearer(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const match = BEARER.exec(header.trim());
  if (!match || match[1]!.length > MAX_TOKEN_LENGTH) throw unauthenticated("TOKEN_INVALID", "malformed authorization header");
  return match[1];
}

export function authMiddleware(authenticate: Authenticator): ServerMiddleware<Pick<TesseraContext, "principal">, Pick<TesseraContext, "em">> {
  return async function* authenticateCall(call, context) {
    // A presented token must be valid, on public RPCs too: an expired or forged
    // token is refused with its reason, never downgraded to an anonymous call
    // (CreateTenant, for one, behaves differently for anonymous callers).
    const token = readBearer(context.metadata.get("authorization"));
    const principal = token ? await authenticate(token, context.em) : undefined;
    if (!principal && !PUBLIC_RPCS.has(call.method.path)) throw unauthenticated("TOKEN_MISSING", "this call needs authorization: Bearer <access token>");
    return yield* call.next(call.request, { ...context, principal });
  };
}
