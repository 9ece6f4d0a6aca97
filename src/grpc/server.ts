// Builds the gRPC server: middleware composed once, every service registered,
// plus standard health and server reflection (v1 and v1alpha) so that
// `buf curl` and grpcurl work without a local schema.
import { readFileSync } from "node:fs";
import type { BlockList } from "node:net";
import { createServer, ServerError, Status, type CallContext, type Server } from "nice-grpc";
import { API_SERVICES } from "./api.ts";
import { errorDetailsServerMiddleware } from "nice-grpc-error-details";
import { HealthDefinition, HealthServiceImpl, type HealthState } from "nice-grpc-server-health";
import { ServerReflection, ServerReflectionService } from "nice-grpc-server-reflection";
import type { Logger } from "pino";
import type { Database } from "../db/orm.ts";
import type { DeclaredAccess } from "./access.ts";
import { authMiddleware, type Authenticator } from "./auth.middleware.ts";
import { errorMappingMiddleware, loggingMiddleware, ormContextMiddleware } from "./middleware.ts";
import { DESCRIPTOR_SET, requestLimitsMiddleware, type RequestLimits } from "./request-limits.ts";
import type { RevocationFeed } from "../events/index.ts";
import type { TesseraContext } from "./context.ts";

// The v1alpha reflection service is wire-identical to v1; older clients (and
// some grpcurl builds) only speak v1alpha, so serve the same handler there.
const ServerReflectionV1AlphaService = {
  serverReflectionInfo: {
    ...ServerReflectionService.serverReflectionInfo,
    path: "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
  },
} as unknown as typeof ServerReflectionService;

/** A service definition and its implementation, as server.add() takes them. */
export interface ServiceRegistration {
  definition: { fullName: string } & object;
  implementation: object;
}

export interface GrpcServerOptions {
  orm: Database;
  logger: Logger;
  authenticate: Authenticator;
  services: ServiceRegistration[];
  health: HealthState;
  feed: RevocationFeed;
  /** Declared limits of every request field, checked before any other work. */
  limits: RequestLimits;
  /** Each method's declared access (access.ts). */
  access: ReadonlyMap<string, DeclaredAccess>;
  /** Proxies whose x-forwarded-for is believed. */
  trustedProxies: BlockList;
}

export function buildGrpcServer(options: GrpcServerOptions): Server {
  const server = createServer({
    "grpc.max_receive_message_length": 1024 * 1024,
    "grpc.keepalive_permit_without_calls": 1,
  })
    .use(loggingMiddleware(options.logger, options.trustedProxies))
    .use(errorDetailsServerMiddleware)
    .use(errorMappingMiddleware())
    .use(requestLimitsMiddleware())
    .use(ormContextMiddleware(options.orm, options.feed))
    .use(authMiddleware(options.authenticate, options.access));

  for (const { definition, implementation } of options.services) {
    server.add(options.limits.guard(definition as (typeof API_SERVICES)[number]) as never, implementation as never);
  }
  // Services of the contract that have no implementation yet still pass through
  // authentication (deny by default) and then answer UNIMPLEMENTED.
  const implemented = new Set(options.services.map((s) => s.definition.fullName));
  for (const definition of API_SERVICES) {
    if (!implemented.has(definition.fullName)) server.add(options.limits.guard(definition) as never, unimplemented(definition) as never);
  }
  // Reflection lists every service on the port, health and reflection itself
  // included, so `buf curl` can call them with no local schema;
  // gen/descriptor-set.binpb holds their protos (scripts/descriptor-set.ts).
  const serviceNames = [
    ...API_SERVICES.map((s) => s.fullName),
    HealthDefinition.fullName,
    serviceNameOf(ServerReflectionService),
    serviceNameOf(ServerReflectionV1AlphaService),
  ];
  const reflection = ServerReflection(readFileSync(DESCRIPTOR_SET), serviceNames);
  server.add(ServerReflectionService, reflection);
  server.add(ServerReflectionV1AlphaService, reflection);
  server.add(HealthDefinition, healthService(options.health));
  return server;
}

/** The full name of a grpc-js style definition, from its methods' `/package.Service/Method` paths. */
function serviceNameOf(definition: typeof ServerReflectionService): string {
  return definition.serverReflectionInfo.path.split("/")[1]!;
}

/**
 * The standard health service. nice-grpc-server-health decodes an empty
 * request (what grpc_health_probe and h2load send) with `service` undefined
 * rather than the proto3 default "", and then reports the server as unknown;
 * normalize the request first.
 */
function healthService(state: HealthState) {
  const impl = HealthServiceImpl(state);
  return {
    check: (request: { service?: string }, context: CallContext) => impl.check({ service: request.service ?? "" }, context),
    watch: (request: { service?: string }, context: CallContext) => impl.watch({ service: request.service ?? "" }, context),
  };
}

function unimplemented(definition: (typeof API_SERVICES)[number]): Record<string, () => never> {
  const methods: Record<string, () => never> = {};
  for (const name of Object.keys(definition.methods)) {
    methods[name] = () => {
      throw new ServerError(Status.UNIMPLEMENTED, `${definition.fullName} is not implemented yet`);
    };
  }
  return methods;
}

export type { TesseraContext };
