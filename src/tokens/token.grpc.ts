// IssueService, RefreshService and VerifyService over gRPC.
import type { EntityManager } from "@mikro-orm/core";
import { entityManagerOf, type EntityManagerSource } from "../db/entity-manager-source.ts";
import type { ServiceImplementation } from "nice-grpc";
import type { IssueServiceDefinition, IssueTokenRequest, Session as SessionMessage } from "@tessera/client";
import type { RefreshServiceDefinition } from "@tessera/client";
import type { BinaryWriter } from "@bufbuild/protobuf/wire";
import { VerifyServiceDefinition, VerifyTokenResponse, type Principal as PrincipalMessage } from "@tessera/client";
import { RevocationKind } from "@tessera/client";
import { PrincipalKind } from "@tessera/client";
import { invalidInput, permissionDenied, TesseraError, Violations } from "../errors.ts";
import type { TesseraMetrics } from "../observability/metrics.ts";
import { refKey } from "../db/refs.ts";
import type { RevocationFeed } from "../events/index.ts";
import { authorizeCall, authorizeCallSelfOr, hasPermission, requirePrincipal } from "../grpc/authorize.ts";
import type { TesseraContext } from "../grpc/context.ts";
import { isPermissionPattern, anyPatternMatches } from "../permissions/index.ts";
import type { TokenSet } from "./access-token-signer.ts";
import { looksLikeAssertion } from "./service-exchange.ts";
import type { Tokens } from "./index.ts";
import type { Principal } from "./principal.ts";
import type { Session } from "./token.entity.ts";

const kindOf = (kind: "user" | "service") => (kind === "user" ? PrincipalKind.PRINCIPAL_KIND_USER : PrincipalKind.PRINCIPAL_KIND_SERVICE);

function tokenResponse(set: TokenSet) {
  return {
    accessToken: set.accessToken,
    tokenType: "Bearer",
    expireTime: set.expiresAt,
    refreshToken: set.refreshToken,
    refreshExpireTime: set.refreshExpiresAt,
    sessionId: set.sessionId,
    grantedPermissions: set.granted,
  };
}

// Principals are reused while their session state is unchanged; so are their messages.
const principalMessages = new WeakMap<Principal, PrincipalMessage>();

export function toPrincipalMessage(p: Principal): PrincipalMessage {
  let message = principalMessages.get(p);
  if (!message) principalMessages.set(p, (message = buildPrincipalMessage(p)));
  return message;
}

// VerifyToken of a known token answers the same principal message while the
// session's state is unchanged; its response object and that response's bytes
// are kept with it (weakly, so they go when the principal does).
const verifyResponses = new WeakMap<PrincipalMessage, VerifyTokenResponse>();
const encodedVerifyResponses = new WeakMap<VerifyTokenResponse, Uint8Array>();

function verifyTokenResponse(principal: PrincipalMessage): VerifyTokenResponse {
  let response = verifyResponses.get(principal);
  if (!response) verifyResponses.set(principal, (response = { principal }));
  return response;
}

/**
 * VerifyService as the server registers it: the contract's definition, with
 * VerifyToken's responses copied (nice-grpc's fromPartial, which fills in
 * defaults for absent fields) and encoded once per response object instead
 * of on every call. Nothing changes a response after the handler returns it.
 * In the VerifyToken benchmark the two were ~5 % of the server's busy time.
 */
export const verifyServiceDefinition: typeof VerifyServiceDefinition = {
  ...VerifyServiceDefinition,
  methods: {
    ...VerifyServiceDefinition.methods,
    verifyToken: {
      ...VerifyServiceDefinition.methods.verifyToken,
      responseType: {
        ...VerifyTokenResponse,
        fromPartial: (object) => object as VerifyTokenResponse,
        encode(message: VerifyTokenResponse, writer?: BinaryWriter): BinaryWriter {
          if (writer) return VerifyTokenResponse.encode(message, writer);
          let bytes = encodedVerifyResponses.get(message);
          if (!bytes) encodedVerifyResponses.set(message, (bytes = VerifyTokenResponse.encode(VerifyTokenResponse.fromPartial(message)).finish()));
          const encoded = bytes;
          return { finish: () => encoded } as BinaryWriter;
        },
      },
    },
  },
};

function buildPrincipalMessage(p: Principal): PrincipalMessage {
  return {
    kind: kindOf(p.kind),
    subject: p.subject,
    tenantId: p.tenantId,
    tenantName: p.tenantName,
    sessionId: p.sessionId,
    permissions: [...p.permissions],
    expireTime: p.expiresAt,
    upn: p.upn,
    username: p.username,
    region: p.region ? { id: p.region.id, capability: p.region.capability, registry: p.region.registry, expireTime: p.region.expiresAt } : undefined,
    audience: [...p.audience],
  };
}

function toSessionMessage(s: Session): SessionMessage {
  return {
    id: s.id,
    tenantId: refKey(s.tenant),
    subject: s.subject,
    principalKind: kindOf(s.kind as "user" | "service"),
    electedPermissions: s.elected,
    createTime: s.createdAt,
    refreshTime: s.refreshedAt,
    expireTime: s.expiresAt,
    clientAddress: s.clientAddress,
  };
}

/** The metrics token issuance reports to (metrics.ts). */
export type TokenMetrics = Pick<TesseraMetrics, "tokenIssued" | "loginRefused">;

/** The credential kinds as metrics label them (a bounded set: the contract's oneof). */
const CREDENTIAL_LABEL: Record<string, string> = { password: "password", minecraft: "minecraft", oidc: "oidc", serviceAssertion: "service_assertion" };

export function issueServiceImpl(tokens: Tokens, metrics?: TokenMetrics): ServiceImplementation<typeof IssueServiceDefinition, TesseraContext> {
  async function issue(request: IssueTokenRequest, context: TesseraContext) {
    const credentialKind = CREDENTIAL_LABEL[request.credential?.$case ?? ""] ?? "none";
    try {
      const set = await issueWith(request, context);
      metrics?.tokenIssued(set.tenant, credentialKind);
      return set;
    } catch (error) {
      if (error instanceof TesseraError) metrics?.loginRefused(credentialKind, error.reason, error.kind === "RESOURCE_EXHAUSTED");
      throw error;
    }
  }
  async function issueWith(request: IssueTokenRequest, context: TesseraContext): Promise<TokenSet> {
    const credential = request.credential;
    if (!credential) throw invalidInput([{ field: "credential", description: "set one of password, minecraft, oidc, service_assertion" }]);
    // What every credential elects, the same for all of them.
    const election = { requested: request.requestedPermissions, audience: request.audience, peer: context.peer };
    let set: TokenSet;
    switch (credential.$case) {
      case "password":
        set = await tokens.login.issue(context.em, { ...election, tenant: credential.value.tenant, username: credential.value.username, password: credential.value.password });
        break;
      case "minecraft":
        set = await tokens.remote.minecraft(context.em, {
          ...election,
          username: credential.value.username,
          serverHash: credential.value.serverHash,
          serverAddress: credential.value.serverAddress,
          serverId: credential.value.serverId,
        });
        break;
      case "oidc":
        set = await tokens.remote.oidc(context.em, { ...election, tenant: credential.value.tenant, idToken: credential.value.idToken, nonce: credential.value.nonce });
        break;
      case "serviceAssertion":
        if (!credential.value.assertion) throw invalidInput([{ field: "credential.service_assertion.assertion", description: "is required" }]);
        set = await tokens.exchange.exchange(() => context.em, { ...election, assertion: credential.value.assertion });
        break;
      default:
        throw invalidInput([{ field: `credential.${(credential as { $case: string }).$case}`, description: "this credential kind is not enabled on this server" }]);
    }
    return set;
  }
  return {
    async issueToken(request, context) {
      const set = await issue(request, context);
      return { ...tokenResponse(set), principalKind: kindOf(set.kind) };
    },

    async createMinecraftChallenge(request, context) {
      const challenge = await tokens.remote.minecraftChallenge(context.em, request.serverAddress);
      return { serverId: challenge.serverId, serverHash: challenge.serverHash, expireTime: challenge.expiresAt };
    },

    async revokeSession(request, context) {
      const principal = requirePrincipal(context);
      const sessionId = request.sessionId || principal.sessionId;
      // Logging out of the current session needs nothing; the caller's other
      // sessions need identity.self.revoke_sessions; anyone's in the tenant
      // identity.sessions.revoke.
      let onlyUserId: string | undefined = principal.subject;
      if (sessionId !== principal.sessionId) {
        const { permission, selfPermission } = context.access;
        if (hasPermission(principal, permission)) onlyUserId = undefined;
        else if (!hasPermission(principal, selfPermission)) throw permissionDenied(`missing permission ${selfPermission}`);
      }
      await tokens.sessions.revokeSession(context.em, principal.tenantId, sessionId, onlyUserId);
      return {};
    },

    async revokeAllSessions(request, context) {
      const target = authorizeCallSelfOr(context, request);
      return { revokedCount: await tokens.sessions.revokeAllSessions(context.em, target.tenantId, target.userId) };
    },

    async listSessions(request, context) {
      const target = authorizeCallSelfOr(context, request);
      const page = await tokens.sessions.listSessions(context.em, target.tenantId, target.userId, request);
      return { sessions: page.sessions.map(toSessionMessage), nextPageToken: page.nextPageToken };
    },

    async rotateSigningKey(request, context) {
      authorizeCall(context);
      const rotated = await tokens.keys.rotate(context.em, { retireCurrentNow: request.retireCurrentNow });
      return { keyId: rotated.kid, activateTime: rotated.activatesAt };
    },
  };
}

export function refreshServiceImpl(tokens: Tokens, metrics?: TokenMetrics): ServiceImplementation<typeof RefreshServiceDefinition, TesseraContext> {
  return {
    async refresh(request, context) {
      const set = await tokens.refresh.refresh(() => context.em, { refreshToken: request.refreshToken, requested: request.requestedPermissions });
      metrics?.tokenIssued(set.tenant, "refresh");
      return tokenResponse(set);
    },
  };
}

/**
 * An access token, or (when the registry is configured) a service assertion,
 * whose jti it uses up: the one entry for VerifyToken, CheckPermission and
 * Gate-Keeper.
 */
export function verifyAnyToken(tokens: Tokens, em: EntityManagerSource, token: string, audience: string): Promise<Principal> {
  if (tokens.exchange.enabled && looksLikeAssertion(token)) return tokens.exchange.principal(em, token, audience);
  return tokens.verification.verify(em, token, audience);
}

const REVOCATION_KINDS: Record<string, RevocationKind> = {
  SESSION_REVOKED: RevocationKind.REVOCATION_KIND_SESSION_REVOKED,
  USER_REVOKED: RevocationKind.REVOCATION_KIND_USER_REVOKED,
  TENANT_REVOKED: RevocationKind.REVOCATION_KIND_TENANT_REVOKED,
  KEY_ADDED: RevocationKind.REVOCATION_KIND_KEY_ADDED,
  KEY_RETIRED: RevocationKind.REVOCATION_KIND_KEY_RETIRED,
  GRANTS_CHANGED: RevocationKind.REVOCATION_KIND_GRANTS_CHANGED,
  REGISTRY_CHANGED: RevocationKind.REVOCATION_KIND_REGISTRY_CHANGED,
};

export function verifyServiceImpl(
  tokens: Tokens,
  feed: RevocationFeed,
): ServiceImplementation<typeof VerifyServiceDefinition, TesseraContext> {
  return {
    async verifyToken(request, context) {
      if (!request.token) throw invalidInput([{ field: "token", description: "is required" }]);
      return verifyTokenResponse(toPrincipalMessage(await verifyAnyToken(tokens, () => context.em, request.token, request.audience)));
    },

    async checkPermission(request, context) {
      const v = new Violations();
      if (!isPermissionPattern(request.permission) || request.permission.includes("*")) {
        v.add("permission", "must be a codename {microservice}.{resource}.{action}");
      }
      v.throwIfAny();
      const principal = request.token ? await verifyAnyToken(tokens, () => context.em, request.token, "") : requirePrincipal(context);
      return { allowed: anyPatternMatches(principal.permissions, request.permission), principal: toPrincipalMessage(principal) };
    },

    async getJwks() {
      return { keys: tokens.keys.jwks() };
    },

    async *watchRevocations(request, context) {
      authorizeCall(context);
      let cursor = 0;
      if (request.cursor) {
        cursor = Number(request.cursor);
        if (!/^\d{1,15}$/.test(request.cursor) || !Number.isSafeInteger(cursor)) {
          throw invalidInput([{ field: "cursor", description: "must be a cursor from a previous event" }]);
        }
      }
      // The subscriber is caught up once it has the event named here (the newest one settled now):
      // what it receives after that is live. Sent at once, so the subscriber knows the stream is open.
      context.header.set("tessera-backlog-end", String(await feed.lastSettledId()));
      context.sendHeader();
      for await (const event of feed.watch(cursor, context.signal)) {
        yield {
          cursor: String(event.id),
          kind: REVOCATION_KINDS[event.kind] ?? RevocationKind.REVOCATION_KIND_UNSPECIFIED,
          tenantId: event.tenantId ?? "",
          userId: event.userId ?? "",
          sessionId: event.sessionId ?? "",
          keyId: event.keyId ?? "",
          eventTime: event.createdAt,
        };
      }
    },
  };
}
