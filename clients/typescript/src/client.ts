// createTesseraClient: typed clients of all seven services over one channel,
// with default deadlines, retries of read-only calls on UNAVAILABLE, bearer
// tokens and typed errors.
import { ChannelCredentials, composeClientMiddleware, createChannel, createClientFactory, Metadata, Status, type Channel, type ChannelOptions, type ClientMiddleware } from "nice-grpc";
import { deadlineMiddleware, type DeadlineOptions } from "nice-grpc-client-middleware-deadline";
import { retryMiddleware, type RetryOptions } from "nice-grpc-client-middleware-retry";
import { errorDetailsClientMiddleware } from "nice-grpc-error-details";
import { IssueServiceDefinition } from "./gen/tessera/identity/v1/issue_service.ts";
import { PermissionServiceDefinition } from "./gen/tessera/identity/v1/permission_service.ts";
import { RefreshServiceDefinition } from "./gen/tessera/identity/v1/refresh_service.ts";
import { RegistryServiceDefinition } from "./gen/tessera/identity/v1/registry_service.ts";
import { TenantServiceDefinition } from "./gen/tessera/identity/v1/tenant_service.ts";
import { UserServiceDefinition } from "./gen/tessera/identity/v1/user_service.ts";
import { VerifyServiceDefinition } from "./gen/tessera/identity/v1/verify_service.ts";
import { tesseraErrorsMiddleware } from "./errors.ts";

/** A static token, or a function returning the current one (e.g. from a refreshing session). */
export type TokenSource = string | (() => string | Promise<string>);

/** Client middleware that sends `authorization: Bearer <token>` on every call. */
export function bearerAuth(token: TokenSource): ClientMiddleware {
  return async function* authorization(call, options) {
    const value = typeof token === "string" ? token : await token();
    const metadata = Metadata(options.metadata).set("authorization", `Bearer ${value}`);
    return yield* call.next(call.request, { ...options, metadata });
  };
}

/** TLS for the channel: the CA to trust (system roots when omitted) and, for mTLS, this client's certificate and key (PEM). */
export interface TlsOptions {
  ca?: string | Uint8Array;
  cert?: string | Uint8Array;
  key?: string | Uint8Array;
}

/** Retries of read-only calls (Get*, List*, Lookup*, Check*, Export*, VerifyToken, GetJwks) on UNAVAILABLE. */
export interface RetryPolicy {
  /** Retries after the first attempt (default 2). */
  maxRetries?: number;
  /** First backoff (default 100 ms), doubled per retry with jitter. */
  baseDelayMs?: number;
  /** Backoff cap (default 2 s). */
  maxDelayMs?: number;
}

export interface TesseraClientOptions {
  /** host:port of Tessera's gRPC endpoint (or pass it as the first argument). */
  address?: string;
  /** TLS, or mTLS with `cert` and `key`; plaintext when omitted (loopback and trusted networks only). */
  tls?: boolean | TlsOptions;
  /** Ready-made channel credentials; overrides `tls`. */
  credentials?: ChannelCredentials;
  /** grpc-js channel options (keepalive, message sizes). */
  channelOptions?: ChannelOptions;
  /** Bearer token sent on every call. */
  token?: TokenSource;
  /** Reuse an existing channel instead of opening one (close() then leaves it open). */
  channel?: Channel;
  /** Deadline of every unary call unless the call passes its own `deadline` (default 10 s; 0 = none). Streams have none. */
  defaultDeadlineMs?: number;
  /** Retry policy of read-only calls, or false for none. */
  retry?: RetryPolicy | false;
  /** Extra client middleware (tracing, metrics), run outside retries and deadlines: the first one listed runs outermost. */
  middleware?: ClientMiddleware[];
}

/** Per-call options every client accepts: nice-grpc's, plus `deadline` (Date or ms from now) and the retry options. */
export type TesseraCallOptions = DeadlineOptions & RetryOptions;

const READ_ONLY = /^(Get|List|Lookup|Check|Export)[A-Z]|^VerifyToken$/;

type Definition = { name: string; fullName: string; methods: Record<string, { name: string; responseStream: boolean; options: object }> };

/**
 * The same definition with read-only methods marked NO_SIDE_EFFECTS, so that
 * the retry middleware retries them and nothing else (the protos declare no
 * idempotency levels; writes, logins and Refresh are never retried on their own).
 */
function withIdempotency<D extends Definition>(definition: D): D {
  const methods = Object.fromEntries(
    Object.entries(definition.methods).map(([key, method]) => [
      key,
      READ_ONLY.test(method.name) && !method.responseStream ? { ...method, options: { ...method.options, idempotencyLevel: "NO_SIDE_EFFECTS" as const } } : method,
    ]),
  );
  return { ...definition, methods } as D;
}

const DEFINITIONS = {
  tenants: withIdempotency(TenantServiceDefinition),
  users: withIdempotency(UserServiceDefinition),
  permissions: withIdempotency(PermissionServiceDefinition),
  issue: withIdempotency(IssueServiceDefinition),
  refresh: withIdempotency(RefreshServiceDefinition),
  verify: withIdempotency(VerifyServiceDefinition),
  registry: withIdempotency(RegistryServiceDefinition),
};

/** Whether createTesseraClient retries `method` (e.g. "GetUser") on UNAVAILABLE. */
export function isRetriedMethod(method: string): boolean {
  return READ_ONLY.test(method);
}

function credentialsOf(options: TesseraClientOptions): ChannelCredentials | undefined {
  if (options.credentials) return options.credentials;
  if (!options.tls) return undefined;
  const tls = options.tls === true ? {} : options.tls;
  const buffer = (value: string | Uint8Array | undefined) => (value === undefined ? null : Buffer.from(value));
  if ((tls.cert === undefined) !== (tls.key === undefined)) throw new TypeError("tls.cert and tls.key go together (mTLS)");
  return ChannelCredentials.createSsl(buffer(tls.ca), buffer(tls.key), buffer(tls.cert));
}

const passThrough: ClientMiddleware = (call, options) => call.next(call.request, options);

function buildClients(channel: Channel, options: TesseraClientOptions, token?: TokenSource, auth?: ClientMiddleware) {
  const credentials: ClientMiddleware = auth ?? (token !== undefined ? bearerAuth(token) : passThrough);
  const extra = [...(options.middleware ?? [])].reverse().reduce<ClientMiddleware>((inner, outer) => composeClientMiddleware(inner, outer), passThrough);
  // Innermost first: rich error details, credentials (per attempt), retries, the deadline over all attempts, the caller's middleware, typed errors.
  const f = createClientFactory()
    .use(errorDetailsClientMiddleware)
    .use(credentials)
    .use(retryMiddleware)
    .use(deadlineMiddleware)
    .use(extra)
    .use(tesseraErrorsMiddleware);
  const deadline = options.defaultDeadlineMs ?? 10_000;
  const retry = options.retry === false ? { retry: false } : {
    retryMaxAttempts: options.retry?.maxRetries ?? 2,
    retryBaseDelayMs: options.retry?.baseDelayMs ?? 100,
    retryMaxDelayMs: options.retry?.maxDelayMs ?? 2_000,
    retryableStatuses: [Status.UNAVAILABLE],
  };
  const defaults = <D extends Definition>(definition: D) => {
    const perMethod: Record<string, TesseraCallOptions> = {};
    for (const [key, method] of Object.entries(definition.methods)) {
      perMethod[key] = { ...retry, ...(deadline > 0 && !method.responseStream ? { deadline } : {}) };
    }
    return perMethod;
  };
  return {
    tenants: f.create(DEFINITIONS.tenants, channel, defaults(DEFINITIONS.tenants)),
    users: f.create(DEFINITIONS.users, channel, defaults(DEFINITIONS.users)),
    permissions: f.create(DEFINITIONS.permissions, channel, defaults(DEFINITIONS.permissions)),
    issue: f.create(DEFINITIONS.issue, channel, defaults(DEFINITIONS.issue)),
    refresh: f.create(DEFINITIONS.refresh, channel, defaults(DEFINITIONS.refresh)),
    verify: f.create(DEFINITIONS.verify, channel, defaults(DEFINITIONS.verify)),
    registry: f.create(DEFINITIONS.registry, channel, defaults(DEFINITIONS.registry)),
  };
}

/** Typed clients of Tessera's seven services, sharing one channel. */
export type TesseraServiceClients = ReturnType<typeof buildClients>;

export interface TesseraClient extends TesseraServiceClients {
  readonly channel: Channel;
  /** The options the client was made with (a session builds its clients from them). */
  readonly options: Readonly<TesseraClientOptions>;
  /** The same clients on the same channel, sending `token`. */
  withToken(token: TokenSource): TesseraClient;
  /** The same clients on the same channel, with `auth` attaching credentials (used by sessions). */
  withAuth(auth: ClientMiddleware): TesseraClient;
  /** Closes the channel (unless it was passed in). */
  close(): void;
}

/**
 * Opens a channel to Tessera and returns typed clients of all its services.
 *
 *   const tessera = createTesseraClient("127.0.0.1:50051");
 *   const tls = createTesseraClient("id.example.com:443", { tls: { ca } });
 */
export function createTesseraClient(address: string, options?: TesseraClientOptions): TesseraClient;
export function createTesseraClient(options: TesseraClientOptions & { address: string }): TesseraClient;
export function createTesseraClient(first: string | TesseraClientOptions, second: TesseraClientOptions = {}): TesseraClient {
  const options: TesseraClientOptions = typeof first === "string" ? { ...second, address: first } : first;
  const owned = options.channel === undefined;
  if (owned && !options.address) throw new TypeError("createTesseraClient needs an address (host:port) or a channel");
  // grpc-js waits 1 s (growing to 2 min) before reconnecting a refused channel, and fails calls at once meanwhile:
  // reconnect about as fast as the retries back off, so that a retried call can ride out a short outage.
  const retry = options.retry === false ? undefined : options.retry;
  const reconnect = {
    "grpc.initial_reconnect_backoff_ms": Math.max(20, Math.floor((retry?.baseDelayMs ?? 100) / 2)),
    "grpc.max_reconnect_backoff_ms": Math.max(1_000, retry?.maxDelayMs ?? 2_000),
  };
  const channel = options.channel ?? createChannel(options.address!, credentialsOf(options), { ...reconnect, ...options.channelOptions });
  const make = (token?: TokenSource, auth?: ClientMiddleware): TesseraClient => ({
    ...buildClients(channel, options, token, auth),
    channel,
    options,
    withToken: (next) => make(next),
    withAuth: (next) => make(undefined, next),
    close: () => {
      if (owned) channel.close();
    },
  });
  return make(options.token);
}
