// The composition root: opens the database, wires the domains together and
// starts the gRPC and HTTP servers. main.ts adds process concerns (signals).
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { readFileSync } from "node:fs";
import { ServerCredentials } from "@grpc/grpc-js";
import type { EntityManager } from "@mikro-orm/core";
import { HealthState } from "nice-grpc-server-health";
import type { Logger } from "pino";
import { IssueServiceDefinition } from "@tessera/client";
import { RefreshServiceDefinition } from "@tessera/client";
import { TenantServiceDefinition } from "@tessera/client";
import { UserServiceDefinition } from "@tessera/client";
import { PermissionServiceDefinition } from "@tessera/client";
import { RegistryServiceDefinition } from "@tessera/client";
import { gatekeeperRoute } from "./gatekeeper/index.ts";
import { createRegistry, registryDocumentRoute, registryServiceImpl } from "./registry/index.ts";
import { REGISTER_MICROSERVICE_PATH, RegistrationConsumer } from "./amqp/index.ts";
import { announceBootstrap, bootstrap } from "./bootstrap.ts";
import { Retention } from "./retention.ts";
import { ConfigError, type Config } from "./config.ts";
import { clusterExposition, isWorker, type Listening } from "./cluster.ts";
import { TesseraError } from "./errors.ts";
import { migrate, openDatabase, type Database } from "./db/orm.ts";
import { GAP_WAIT_MS, RevocationFeed } from "./events/index.ts";
import type { Authenticator } from "./grpc/auth.middleware.ts";
import { readAccessTable } from "./grpc/access.ts";
import { buildGrpcServer } from "./grpc/server.ts";
import { apiRegistry, RequestLimits } from "./grpc/request-limits.ts";
import { healthRoute } from "./http/health.ts";
import { metricsRoute, poolStats } from "./http/metrics.ts";
import { TesseraMetrics } from "./observability/metrics.ts";
import { buildHttpServer } from "./http/server.ts";
import { MinecraftChallenges, MinecraftSessionServer, OidcVerifier, RemoteHttp } from "./federation/index.ts";
import { createAdminGroup, PermissionService, permissionServiceImpl } from "./permissions/index.ts";
import { configurePageTokens } from "./shared/pagination.ts";
import { TenantService, tenantServiceImpl } from "./tenants/index.ts";
import { LoginThrottle, openLimiterStore, RateLimit, ReplayStore } from "./throttling/index.ts";
import { RevocationListener } from "./events/revocation-listener.ts";
import { createTokens, issueServiceImpl, jwksRoute, loadOrCreateMasterKey, refreshServiceImpl, verifyAnyToken, verifyServiceDefinition, verifyServiceImpl } from "./tokens/index.ts";
import { PasswordHasher, PasswordPolicy, UserService, userServiceImpl } from "./users/index.ts";

export interface Tessera {
  grpcPort: number;
  httpPort: number;
  /** Where it listens, as logged. */
  listening: Listening;
  orm: Database;
  /** Verifies an access token as every RPC does (for other transports, such as the AMQP consumer). */
  authenticate: Authenticator;
  /** Drains in-flight calls (up to the grace period), then closes servers and the database. */
  close(): Promise<void>;
}

function splitAddr(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(":");
  return { host: addr.slice(0, i).replace(/^\[|\]$/g, ""), port: Number(addr.slice(i + 1)) };
}

function grpcCredentials(config: Config): ServerCredentials {
  if (!config.tls) return ServerCredentials.createInsecure();
  const ca = config.tls.clientCaFile ? readFileSync(config.tls.clientCaFile) : null;
  return ServerCredentials.createSsl(
    ca,
    [{ cert_chain: readFileSync(config.tls.certFile), private_key: readFileSync(config.tls.keyFile) }],
    ca !== null,
  );
}

/** Listening on an address that is taken is a configuration problem: one clear line naming the variable. */
async function listenOr<T>(variable: string, address: string, listen: () => Promise<T>): Promise<T> {
  try {
    return await listen();
  } catch (error) {
    if (/EADDRINUSE|address already in use|No address added out of total/i.test(String((error as Error)?.message ?? error)) || (error as { code?: string })?.code === "EADDRINUSE") {
      throw new ConfigError(variable, `${address} is already in use (another Tessera?); choose a free address`);
    }
    throw error;
  }
}

export async function startTessera(config: Config, logger: Logger): Promise<Tessera> {
  const embedded = !config.databaseUrl;
  const masterKey = loadOrCreateMasterKey(config.masterKey, config.dataDir);
  configurePageTokens(masterKey);
  const orm = await openDatabase({ ...config, statementTimeoutMs: config.databaseStatementTimeoutMs });
  const metrics = new TesseraMetrics({ maxTenantLabels: config.metricsTenantLabels });
  // A worker's /metrics holds every worker's series, which the primary collects.
  if (isWorker) metrics.exposeThrough(clusterExposition(metrics.registry));
  /** Undone in reverse order should the start fail half-way. */
  const started: (() => Promise<unknown> | void)[] = [];
  try {
    const applied = await migrate(orm);
    if (applied.length) logger.info({ migrations: applied }, "database migrated");

    const boot = await bootstrap(orm.em.fork(), { username: config.adminUsername, password: config.adminPassword });
    // The embedded database runs one transaction at a time, so ids commit in
    // order and a hole is a rollback at once; PostgreSQL commits concurrently.
    const feed = new RevocationFeed(orm, logger, { gapWaitMs: embedded ? 0 : GAP_WAIT_MS });
    metrics.collectProcessMetrics();
    metrics.watchFeed(() => feed.lastPollOkAt);
    feed.onEvent((event) => metrics.revocationDelivered(event.createdAt));
    if (!embedded) metrics.watchPool(() => poolStats(orm));
    const limiterStore = await openLimiterStore({ redisUrl: config.redisUrl, orm, log: logger });
    const hasher = new PasswordHasher({ concurrency: config.passwordHashConcurrency, queue: config.passwordHashQueue });
    const loginThrottle = new LoginThrottle(limiterStore, {
      failuresPerAccountAndAddress: config.loginFailuresPerAccountAndAddress,
      failuresPerAccount: config.loginFailuresPerAccount,
      failuresPerAddress: config.loginFailuresPerAddress,
      blockSeconds: config.loginBlockSeconds,
    });
    const registrationLimit = (prefix: string, points: number) =>
      points > 0 ? new RateLimit(limiterStore, prefix, points, config.registrationWindowSeconds) : undefined;
    const users = new UserService({
      hasher,
      policy: new PasswordPolicy({ minLength: config.passwordMinLength }),
      loginThrottle,
      registrationsPerAddress: registrationLimit("register-address", config.registrationsPerAddress),
      registrationsPerTenant: registrationLimit("register-tenant", config.registrationsPerTenant),
    });
    const permissions = new PermissionService();
    const tenants = new TenantService(users, {
      oidcAllowHttpLoopback: config.oidcAllowHttpLoopback,
      missingGroups: (em, tenantId, ids) => permissions.missingGroups(em, tenantId, ids),
    });
    const remoteBounds = {
      connectTimeoutMs: config.remoteConnectTimeoutMs,
      totalTimeoutMs: config.remoteTimeoutMs,
      maxInFlight: config.remoteMaxInFlight,
      maxResponseBytes: 256 * 1024,
    };
    const remoteHttp = new RemoteHttp(remoteBounds);
    // Issuers are chosen by tenant administrators: their own client, limited to public addresses,
    // with its own calls in flight (one slow issuer does not stall Minecraft logins).
    const oidcHttp = new RemoteHttp({
      ...remoteBounds,
      // A quarter of the slots per issuer host: one tenant's slow issuer leaves the others theirs.
      maxInFlightPerHost: Math.max(1, Math.floor(config.remoteMaxInFlight / 4)),
      publicOnly: { allowLoopback: config.oidcAllowHttpLoopback },
    });
    started.push(() => remoteHttp.close(), () => oidcHttp.close());
    // Single-use proofs (service assertions, ID tokens) already used, on every replica.
    const replays = new ReplayStore(orm);
    // Expired sessions, refresh tokens, revocation-log entries and replay records, purged by one replica at a time.
    const retention = new Retention(orm, {
      intervalMs: config.retentionIntervalMs,
      batch: config.retentionBatch,
      revocationLogRetentionSeconds: config.revocationLogRetentionSeconds,
      log: logger,
    });
    retention.start();
    started.push(() => retention.stop());
    const registry = createRegistry(orm, {
      replays,
      masterKey,
      selfNames: config.registrySelfNames,
      trusted: config.trustedRegistries,
      publishMaxAgeSeconds: config.registryMaxAgeSeconds,
      assertionMaxLifetimeSeconds: config.assertionMaxLifetimeSeconds,
      resolver: {
        cacheMs: config.registryCacheSeconds * 1000,
        refetchCooldownMs: config.registryRefetchCooldownMs,
        dnsServers: config.registryDnsServers,
        dnsTimeoutMs: config.remoteTimeoutMs,
      },
      // Registries are the operator's allow-list, not tenants' choice: private addresses are fine.
      http: { ...remoteBounds, maxResponseBytes: 8 * 1024 * 1024, ca: config.registryCa },
      tenantByName: (em, name) =>
        tenants.findTenantByNameOrId(em, name).then(
          (t) => ({ id: t.id, name: t.name, disabled: t.disabled }),
          (error: unknown) => {
            if (error instanceof TesseraError && error.reason === "TENANT_NOT_FOUND") return null;
            throw error;
          },
        ),
      feed,
      log: logger,
    });
    started.push(() => registry.close());
    const tokens = await createTokens(orm, {
      assertions: registry.verifier,
      serviceSessions: registry.sessionFallback,
      serviceTokenTtlSeconds: config.serviceTokenTtlSeconds,
      // At least two poll intervals: one slow poll must not make every verification read the database.
      revocationStaleLimitMs: embedded ? undefined : Math.max(config.revocationStaleLimitMs, 2 * config.revocationPollIntervalMs),
      cacheSizes: { verifiedTokens: config.verifiedTokenCacheSize, sessions: config.sessionCacheSize },
      settings: config,
      masterKey,
      publishLeadSeconds: config.keyPublishLeadSeconds,
      feed,
      login: { hasher, throttle: loginThrottle },
      remote: {
        throttle: loginThrottle,
        minecraft: new MinecraftSessionServer(config.minecraftSessionUrl, remoteHttp),
        minecraftChallenges: new MinecraftChallenges(masterKey, config.minecraftChallengeTtlSeconds),
        minecraftClientHash: config.minecraftClientHash,
        oidc: new OidcVerifier(oidcHttp, {
          cacheSeconds: config.oidcCacheSeconds,
          allowHttpLoopback: config.oidcAllowHttpLoopback,
          refetchCooldownMs: config.oidcRefetchCooldownMs,
          clockToleranceSeconds: config.oidcClockToleranceSeconds,
          maxTokenAgeSeconds: config.oidcMaxTokenAgeSeconds,
        }),
        tenantByServerAddress: (em, address) => tenants.findTenantByServerAddress(em, address),
        tenantByNameOrId: (em, ref) =>
          tenants.findTenantByNameOrId(em, ref).catch((error: unknown) => {
            if (error instanceof TesseraError && error.reason === "TENANT_NOT_FOUND") return null;
            throw error;
          }),
        replays,
        provision: (em, tenant, identity, groupIds) =>
          users.provisionExternal(em, tenant, identity, (tem, user) => permissions.joinGroups(tem, user, groupIds)),
      },
      metrics,
      log: logger,
    });
    await feed.start(config.revocationPollIntervalMs);
    started.push(() => feed.stop(), () => limiterStore.close());
    // Other replicas' revocations at once (NOTIFY on commit); the embedded database has no other replicas.
    const listener = config.databaseUrl ? new RevocationListener(config.databaseUrl, () => void feed.poll().then((ok) => ok || feed.distrust()), logger) : undefined;
    await listener?.start();
    if (listener) started.push(() => listener.stop());
    tenants.onTenantCreated(async (em, tenant, admin) => {
      createAdminGroup(em, tenant, admin, false);
      await permissions.createDefaultGroups(em, tenant);
    });
    tenants.onTenantRevoked(async (em, tenantId) => {
      await tokens.sessions.revokeTenantSessionsInTransaction(em, tenantId);
      await registry.service.revokeTenantKeysInTransaction(em, tenantId);
    });
    tenants.onIssuerUsersRevoked(async (em, tenantId, userIds) => {
      for (const id of userIds) await tokens.sessions.revokeUserSessionsInTransaction(em, { id, tenant: tenantId }, "issuer_untrusted");
    });
    // Whatever ends all of a user's sessions ends the keys it published for itself too (an intruder's key must not outlive the clean-up).
    tokens.sessions.onUserSessionsRevoked((em, tenantId, userId) => registry.service.revokeUserKeysInTransaction(em, tenantId, userId));
    users.addHooks({
      created: (em, user) => permissions.joinDefaultGroups(em, user),
      revoked: async (em, user, why) => {
        await tokens.sessions.revokeUserSessionsInTransaction(em, user, why);
      },
    });

    const authenticate: Authenticator = (token, em) => tokens.verification.verify(em, token);
    const health = HealthState();
    const descriptors = apiRegistry();
    const access = readAccessTable(descriptors);
    const grpc = buildGrpcServer({
      metrics,
      tracing: config.tracing,
      grpcLimits: config.grpc,
      limits: new RequestLimits(descriptors),
      access,
      trustedProxies: config.trustedProxies,
      orm,
      logger,
      health,
      feed,
      authenticate,
      services: [
        { definition: TenantServiceDefinition, implementation: tenantServiceImpl(tenants, config) },
        { definition: UserServiceDefinition, implementation: userServiceImpl(users, tenants, permissions) },
        { definition: PermissionServiceDefinition, implementation: permissionServiceImpl(permissions) },
        { definition: IssueServiceDefinition, implementation: issueServiceImpl(tokens, metrics) },
        { definition: RefreshServiceDefinition, implementation: refreshServiceImpl(tokens, metrics) },
        { definition: verifyServiceDefinition, implementation: verifyServiceImpl(tokens, feed) },
        {
          definition: RegistryServiceDefinition,
          implementation: registryServiceImpl(registry.service, registry.lookup, {
            perTenant: config.registryWritesPerTenant > 0 ? new RateLimit(limiterStore, "registry-tenant", config.registryWritesPerTenant, 3600) : undefined,
            perUser: config.keyPublishesPerUser > 0 ? new RateLimit(limiterStore, "registry-user", config.keyPublishesPerUser, 3600) : undefined,
          }),
        },
      ],
    });
    const grpcAddr = splitAddr(config.grpcAddr);
    const grpcPort = await listenOr("TESSERA_GRPC_ADDR", config.grpcAddr, () =>
      grpc.listen(`${grpcAddr.host.includes(":") ? `[${grpcAddr.host}]` : grpcAddr.host}:${grpcAddr.port}`, grpcCredentials(config)),
    );

    const http = buildHttpServer(
      {
        "/healthz": healthRoute(orm, logger),
        "/metrics": metricsRoute(metrics, config.metricsAllow),
        "/.well-known/jwks.json": jwksRoute(tokens.keys, config.keyPublishLeadSeconds),
        "/registry.json": registryDocumentRoute(registry.service, () => orm.em.fork()),
        "/gatekeeper/verify": gatekeeperRoute({
          // A fork only when the caches cannot answer (one per request at most).
          verify: (token, audience) => {
            let em: EntityManager | undefined;
            return verifyAnyToken(tokens, () => (em ??= orm.em.fork()), token, audience);
          },
          cookie: config.gatekeeperCookie,
          log: logger,
        }),
      },
      logger,
    );
    const httpAddr = splitAddr(config.httpAddr);
    await listenOr("TESSERA_HTTP_ADDR", config.httpAddr, async () => {
      http.listen(httpAddr.port, httpAddr.host);
      await Promise.race([once(http, "listening"), once(http, "error").then(([error]) => Promise.reject(error))]);
    }).catch((error: unknown) => {
      grpc.forceShutdown();
      throw error;
    });
    started.push(() => void http.close());
    const httpPort = (http.address() as AddressInfo).port;

    const amqp = config.amqpUrl
      ? new RegistrationConsumer(orm, permissions, {
          url: config.amqpUrl,
          queue: config.amqpRegistrationQueue,
          log: logger,
          authenticate,
          feed,
          // The message is authorized exactly as the RPC is.
          access: access.get(REGISTER_MICROSERVICE_PATH)!,
        })
      : undefined;
    await amqp?.start();
    const stopKeyRotation = tokens.scheduleKeyRotation(config.keyRotationIntervalSeconds);

    health.setStatus("healthy");
    announceBootstrap(boot, logger);
    const listening = { grpc: `${grpcAddr.host}:${grpcPort}`, http: `${httpAddr.host}:${httpPort}`, database: embedded ? "pglite" : "postgresql" };
    // A worker of TESSERA_WORKERS: the primary says "tessera listening" once every worker serves.
    logger.info(listening, isWorker ? "worker listening" : "tessera listening");

    return {
      grpcPort,
      httpPort,
      listening,
      orm,
      authenticate,
      async close() {
        health.setStatus("unhealthy");
        stopKeyRotation();
        await retention.stop();
        await amqp?.stop();
        const grace = setTimeout(() => grpc.forceShutdown(), config.shutdownGraceSeconds * 1000);
        await grpc.shutdown();
        clearTimeout(grace);
        http.closeAllConnections();
        await new Promise<void>((resolve) => http.close(() => resolve()));
        await listener?.stop();
        await feed.stop();
        await limiterStore.close();
        await remoteHttp.close();
        await oidcHttp.close();
        await registry.close();
        await orm.close(true);
        metrics.close();
      },
    };
  } catch (error) {
    for (const undo of started.reverse()) await Promise.resolve(undo()).catch(() => undefined);
    await orm.close(true).catch(() => undefined);
    throw error;
  }
}
