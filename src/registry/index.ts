// Registry (Region System): what the rest of the code may use. createRegistry
// wires the registry Tessera keeps, the resolvers of outside registries, the
// jti replay record and the assertion verifier, and follows the revocation
// feed so that a change on any replica reaches this one's caches.
import type { Logger } from "pino";
import type { Database } from "../db/orm.ts";
import type { RevocationFeed } from "../events/index.ts";
import { RemoteHttp, type RemoteHttpSettings } from "../federation/index.ts";
import type { SessionFallback, SessionState } from "../tokens/index.ts";
import { AssertionVerifier } from "./assertions.ts";
import { RegistryResolvers, type ResolverSettings } from "./resolvers.ts";
import { RegistryService } from "./registry.service.ts";
import type { TrustedRegistry } from "./trust.ts";
import { intersectPatterns } from "../permissions/index.ts";
import type { ReplayStore } from "../throttling/index.ts";

export { CapabilityEntity, RegionEntity, RegistryAuthorityKeyEntity } from "./registry.entity.ts";
export { parseSelfNames, parseTrustedRegistries, type TrustedRegistry } from "./trust.ts";
export { registryServiceImpl } from "./registry.grpc.ts";
export { registryDocumentRoute } from "./registry.http.ts";
export type { RegistryService } from "./registry.service.ts";
export type { AssertionVerifier } from "./assertions.ts";

export interface RegistryOptions {
  masterKey: Buffer;
  selfNames: string[];
  trusted: TrustedRegistry[];
  publishMaxAgeSeconds: number;
  assertionMaxLifetimeSeconds: number;
  resolver: ResolverSettings;
  /** Bounds of HTTPS registry fetches; `ca` (PEM) replaces the system roots when set. */
  http: RemoteHttpSettings & { ca?: string };
  tenantByName: (em: import("@mikro-orm/core").EntityManager, name: string) => Promise<{ id: string; name: string; disabled: boolean } | null>;
  feed: RevocationFeed;
  /** The single-use record (shared with the other single-use proofs). */
  replays: ReplayStore;
  log: Logger;
}

export interface Registry {
  service: RegistryService;
  verifier: AssertionVerifier;
  resolvers: RegistryResolvers;
  /** The state of the "sessions" that are capabilities of this registry (exchanged tokens' sid). */
  sessionFallback: SessionFallback;
  lookup: { deps: { registry: RegistryService; resolvers: RegistryResolvers }; settings: { selfNames: string[]; trusted: TrustedRegistry[] } };
  close(): Promise<void>;
}

export function createRegistry(orm: Database, options: RegistryOptions): Registry {
  const service = new RegistryService({ masterKey: options.masterKey, publishMaxAgeSeconds: options.publishMaxAgeSeconds });
  const http = new RemoteHttp(options.http);
  const resolvers = new RegistryResolvers(http, options.resolver);
  const replays = options.replays;
  const verifier = new AssertionVerifier(
    { maxLifetimeSeconds: options.assertionMaxLifetimeSeconds, selfNames: options.selfNames, trusted: options.trusted },
    { registry: service, resolvers, tenantByName: options.tenantByName, remember: (parts, expiresAt) => replays.remember("assertion", parts, expiresAt) },
  );
  options.feed.onEvent((event) => {
    switch (event.kind) {
      case "REGISTRY_CHANGED":
        if (!event.tenantId) service.authority.forget();
        service.changed();
        return;
      case "GRANTS_CHANGED":
      case "USER_REVOKED":
      case "TENANT_REVOKED":
        service.changed();
        return;
      default:
        return;
    }
  });

  const sessionFallback: SessionFallback = async (em, sessionId): Promise<SessionState | null> => {
    const c = await service.localCapability(em, { id: sessionId });
    if (!c) return null;
    const granted = await service.capabilityGrants(em, c);
    return {
      sessionId,
      kind: c.userId ? "user" : "service",
      subject: c.userId ?? c.regionId,
      tenantId: c.tenantId,
      tenantName: c.tenantName,
      tenantDisabled: false,
      userId: c.userId,
      username: c.username,
      userDisabled: false,
      // Revoked, region inactive, tenant or user disabled, or expired: its tokens are refused.
      revoked: !c.active || c.expiresAt.getTime() <= Date.now(),
      expiresAt: c.expiresAt,
      elected: [],
      granted: intersectPatterns(granted, granted),
    };
  };

  return {
    service,
    verifier,
    resolvers,
    sessionFallback,
    lookup: { deps: { registry: service, resolvers }, settings: { selfNames: options.selfNames, trusted: options.trusted } },
    async close() {
      await http.close();
    },
  };
}
