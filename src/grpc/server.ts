// Builds the gRPC server: middleware composed once, every service registered,
// plus standard health and server reflection (v1 and v1alpha) so that
// `buf curl` and grpcurl work without a local schema.
import { readFileSync } from "node:fs";
import type { BlockList } from "node:net";
import { createServer, ServerError, Status, type CallContext, type Server, type ServerMiddleware } from "nice-grpc";
import { openTelemetryServerMiddleware } from "nice-grpc-opentelemetry";
import { API_SERVICES } from "./api.ts";
import { errorDetailsServerMiddleware } from "nice-grpc-error-details";
import { HealthDefinition, HealthServiceImpl, type HealthState } from "nice-grpc-server-health";
import { ServerReflection, ServerReflectionService } from "nice-grpc-server-reflection";
import type { Logger } from "pino";
import { withCallSignal } from "../db/call-deadline.ts";
import type { Database } from "../db/orm.ts";
import type { GrpcLimits } from "../config.ts";
import type { TesseraMetrics } from "../observability/metrics.ts";
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
  /** RPC metrics (first in the chain, so that every call is counted with its final status). */
  metrics: TesseraMetrics;
  grpcLimits: GrpcLimits;
  /** A span per RPC (OpenTelemetry, when the OTEL_ variables ask for it). */
  tracing: boolean;
}

const passThrough: ServerMiddleware = (call, context) => call.next(call.request, context);

export function buildGrpcServer(options: GrpcServerOptions): Server {
  const limits = options.grpcLimits;
  const server = createServer({
    "grpc.max_receive_message_length": limits.maxReceiveMessageBytes,
    "grpc.max_concurrent_streams": limits.maxConcurrentStreams,
    "grpc.keepalive_time_ms": limits.keepaliveTimeMs,
    "grpc.keepalive_timeout_ms": limits.keepaliveTimeoutMs,
    "grpc.keepalive_permit_without_calls": 1,
    // grpc-js takes a missing option as unlimited; 0 here means the same.
    ...(limits.maxConnectionAgeMs > 0 ? { "grpc.max_connection_age_ms": limits.maxConnectionAgeMs, "grpc.max_connection_age_grace_ms": limits.maxConnectionAgeGraceMs } : {}),
    ...(limits.maxConnectionIdleMs > 0 ? { "grpc.max_connection_idle_ms": limits.maxConnectionIdleMs } : {}),
  })
    .use(options.metrics.grpcMiddleware())
    .use(options.tracing ? openTelemetryServerMiddleware() : passThrough)
    .use(loggingMiddleware(options.logger, options.trustedProxies))
    .use(errorDetailsServerMiddleware)
    .use(errorMappingMiddleware())
    .use(requestLimitsMiddleware())
    .use(ormContextMiddleware(options.orm, options.feed))
    .use(authMiddleware(options.authenticate, options.access));

  for (const { definition, implementation } of options.services) {
    server.add(options.limits.guard(definition as (typeof API_SERVICES)[number]) as never, boundToCallSignal(implementation) as never);
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

/**
 * The implementation with each unary handler run under its call's signal, so
 * that the database work it starts ends with the call (db/call-deadline.ts).
 * Streaming handlers (async generators) read in pages and end with their stream.
 */
function boundToCallSignal(implementation: object): object {
  const bound: Record<string, unknown> = {};
  for (const [name, handler] of Object.entries(implementation)) {
    const isGenerator = typeof handler === "function" && handler.constructor?.name === "AsyncGeneratorFunction";
    bound[name] =
      typeof handler !== "function" || isGenerator
        ? handler
        : (request: unknown, context: CallContext) => withCallSignal(context.signal, () => (handler as (r: unknown, c: CallContext) => unknown).call(implementation, request, context));
  }
  return bound;
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
