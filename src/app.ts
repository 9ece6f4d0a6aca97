// The composition root: opens the database, wires the domains together and
// starts the gRPC and HTTP servers. main.ts adds process concerns (signals).
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { readFileSync } from "node:fs";
import { ServerCredentials } from "@grpc/grpc-js";
import { HealthState } from "nice-grpc-server-health";
import type { Logger } from "pino";
import { IssueServiceDefinition } from "../gen/tessera/identity/v1/issue_service.ts";
import { RefreshServiceDefinition } from "../gen/tessera/identity/v1/refresh_service.ts";
import { TenantServiceDefinition } from "../gen/tessera/identity/v1/tenant_service.ts";
import { UserServiceDefinition } from "../gen/tessera/identity/v1/user_service.ts";
import { VerifyServiceDefinition } from "../gen/tessera/identity/v1/verify_service.ts";
import { PermissionServiceDefinition } from "../gen/tessera/identity/v1/permission_service.ts";
import { PermissionService } from "./permissions/permission.service.ts";
import { permissionServiceImpl } from "./permissions/permission.grpc.ts";
import { RegistrationConsumer } from "./amqp/registration-consumer.ts";
import { bootstrap, createAdminGroup } from "./bootstrap.ts";
import type { Config } from "./config.ts";
import { migrate, openDatabase, type Database } from "./db/orm.ts";
import type { Authenticator } from "./grpc/auth.middleware.ts";
import { buildGrpcServer } from "./grpc/server.ts";
import { RequestLimits } from "./grpc/request-limits.ts";
import { buildHttpServer, json } from "./http/server.ts";
import { configurePageTokens } from "./shared/pagination.ts";
import { TenantService } from "./tenants/tenant.service.ts";
import { tenantServiceImpl } from "./tenants/tenant.grpc.ts";
import { UserService } from "./users/user.service.ts";
import { PasswordHasher, PasswordPolicy } from "./users/password.ts";
import { LoginThrottle, openLimiterStore, RateLimit } from "./throttling/index.ts";
import { userServiceImpl } from "./users/user.grpc.ts";
import { KeyStore } from "./tokens/keys.ts";
import { loadOrCreateMasterKey } from "./tokens/master-key.ts";
import { GAP_WAIT_MS, recordRevocation, RevocationFeed } from "./tokens/revocations.ts";
import { SessionCache } from "./tokens/session-cache.ts";
import { TokenService } from "./tokens/token.service.ts";
import { issueServiceImpl, refreshServiceImpl, verifyServiceImpl } from "./tokens/token.grpc.ts";

export interface Tessera {
  grpcPort: number;
  httpPort: number;
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

export async function startTessera(config: Config, logger: Logger): Promise<Tessera> {
  const embedded = !config.databaseUrl;
  const masterKey = loadOrCreateMasterKey(config.masterKey, config.dataDir, embedded);
  configurePageTokens(masterKey);
  const orm = await openDatabase(config);
  try {
    const applied = await migrate(orm);
    if (applied.length) logger.info({ migrations: applied }, "database migrated");

    const boot = await bootstrap(orm.em.fork(), { username: config.adminUsername, password: config.adminPassword });
    // The embedded database runs one transaction at a time, so ids commit in
    // order and a hole is a rollback at once; PostgreSQL commits concurrently.
    const feed = new RevocationFeed(orm, logger, { gapWaitMs: embedded ? 0 : GAP_WAIT_MS });
    const keys = new KeyStore({
      masterKey,
      accessTokenTtlSeconds: config.accessTokenTtlSeconds,
      publishLeadSeconds: config.keyPublishLeadSeconds,
      onKeyEvent: async (em, kind, kid) => {
        recordRevocation(em, { kind, keyId: kid });
        await em.flush();
      },
    });
    await keys.init(orm.em.fork());
    const sessions = new SessionCache();
    feed.onEvent((event) => {
      sessions.apply(event);
      if (event.kind === "KEY_ADDED" || event.kind === "KEY_RETIRED") {
        keys.reload(orm.em.fork()).catch((error: unknown) => logger.warn({ err: error }, "signing keys reload failed; next key event or rotation retries"));
      }
    });
    await feed.start();
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
    const tokens = new TokenService(config, keys, sessions, feed, { hasher, throttle: loginThrottle });

    const users = new UserService({
      hasher,
      policy: new PasswordPolicy({ minLength: config.passwordMinLength }),
      loginThrottle,
      registrationsPerAddress: registrationLimit("register-address", config.registrationsPerAddress),
      registrationsPerTenant: registrationLimit("register-tenant", config.registrationsPerTenant),
    });
    const tenants = new TenantService(users);
    const permissions = new PermissionService();
    tenants.onTenantCreated(async (em, tenant, admin) => {
      createAdminGroup(em, tenant, admin, false);
      await permissions.createDefaultGroups(em, tenant);
    });
    tenants.onTenantRevoked((em, tenantId) => tokens.revokeTenantSessionsInTransaction(em, tenantId));
    users.addHooks({
      created: (em, user) => permissions.joinDefaultGroups(em, user),
      revoked: async (em, user, why) => {
        await tokens.revokeUserSessionsInTransaction(em, user, why);
      },
    });

    const authenticate: Authenticator = (token, em) => tokens.verify(em, token);
    const health = HealthState();
    const limits = new RequestLimits();
    const grpc = buildGrpcServer({
      limits,
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
        { definition: IssueServiceDefinition, implementation: issueServiceImpl(tokens, keys) },
        { definition: RefreshServiceDefinition, implementation: refreshServiceImpl(tokens) },
        { definition: VerifyServiceDefinition, implementation: verifyServiceImpl(tokens, keys, feed) },
      ],
    });
    const grpcAddr = splitAddr(config.grpcAddr);
    const grpcPort = await grpc.listen(`${grpcAddr.host.includes(":") ? `[${grpcAddr.host}]` : grpcAddr.host}:${grpcAddr.port}`, grpcCredentials(config));

    const http = buildHttpServer(
      {
        // 200 while the database answers, 503 (so that a load balancer takes the replica out) while it does not.
        "/healthz": async (_req, res) => {
          try {
            await orm.em.fork().getConnection().execute("select 1");
          } catch (error) {
            logger.warn({ err: error }, "health check: database unavailable");
            return json(res, 503, { status: "NOT_SERVING", reason: "DATABASE_UNAVAILABLE" }, { "retry-after": "1", "cache-control": "no-store" });
          }
          json(res, 200, { status: "SERVING" }, { "cache-control": "no-store" });
        },
        "/.well-known/jwks.json": (_req, res) => json(res, 200, { keys: keys.jwks() }, { "cache-control": "public, max-age=60" }),
      },
      logger,
    );
    const httpAddr = splitAddr(config.httpAddr);
    http.listen(httpAddr.port, httpAddr.host);
    await once(http, "listening");
    const httpPort = (http.address() as AddressInfo).port;

    const amqp = config.amqpUrl
      ? new RegistrationConsumer(orm, permissions, {
          url: config.amqpUrl,
          queue: config.amqpRegistrationQueue,
          log: logger,
          authenticate,
        })
      : undefined;
    await amqp?.start();

    const rotation = setInterval(() => {
      if (keys.newestKeyAgeSeconds() >= config.keyRotationIntervalSeconds) {
        keys.rotate(orm.em.fork()).catch((err) => logger.warn({ err }, "scheduled key rotation failed"));
      }
    }, 60_000);
    rotation.unref();

    health.setStatus("healthy");
    if (boot.createdAdmin) {
      logger.info({ tenant: "system", username: boot.createdAdmin.username }, "bootstrap administrator created");
      if (boot.createdAdmin.generatedPassword) {
        // Printed once, to the terminal only: structured logs may be shipped elsewhere.
        process.stderr.write(
          `\n  Tessera bootstrap administrator (shown once):\n    tenant:   system\n    username: ${boot.createdAdmin.username}\n    password: ${boot.createdAdmin.generatedPassword}\n  Set TESSERA_ADMIN_PASSWORD to choose it instead.\n\n`,
        );
      }
    }
    logger.info({ grpc: `${grpcAddr.host}:${grpcPort}`, http: `${httpAddr.host}:${httpPort}`, database: embedded ? "pglite" : "postgresql" }, "tessera listening");

    return {
      grpcPort,
      httpPort,
      orm,
      authenticate,
      async close() {
        health.setStatus("unhealthy");
        clearInterval(rotation);
        await amqp?.stop();
        const grace = setTimeout(() => grpc.forceShutdown(), config.shutdownGraceSeconds * 1000);
        await grpc.shutdown();
        clearTimeout(grace);
        http.closeAllConnections();
        await new Promise<void>((resolve) => http.close(() => resolve()));
        await feed.stop();
        await limiterStore.close();
        await orm.close(true);
      },
    };
  } catch (error) {
    await orm.close(true).catch(() => undefined);
    throw error;
  }
}
