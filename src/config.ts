// Configuration is read from the environment once, validated, and passed down.
// Nothing else in the server reads process.env.
import { tracingRequested } from "./observability/tracing.ts";
import { DEFAULT_PASSWORD_MIN_LENGTH, PASSWORD_ABSOLUTE_MIN_LENGTH, PASSWORD_MAX_LENGTH } from "./users/password.ts";
import { USERNAME } from "./shared/validation.ts";
import { parseSelfNames, parseTrustedRegistries, type TrustedRegistry } from "./registry/trust.ts";
import { readFileSync } from "node:fs";
import { BlockList, isIP } from "node:net";
import { resolve } from "node:path";
import { availableParallelism } from "node:os";

export interface TlsConfig {
  certFile: string;
  keyFile: string;
  /** When set, clients must present a certificate signed by this CA (mTLS). */
  clientCaFile?: string;
}

export interface GrpcLimits {
  maxReceiveMessageBytes: number;
  maxConcurrentStreams: number;
  keepaliveTimeMs: number;
  keepaliveTimeoutMs: number;
  /** 0 = unlimited. */
  maxConnectionAgeMs: number;
  maxConnectionAgeGraceMs: number;
  /** 0 = unlimited. */
  maxConnectionIdleMs: number;
}

export interface Config {
  grpcAddr: string;
  httpAddr: string;
  /** Embedded PGlite data directory (ignored when databaseUrl is set). */
  dataDir: string;
  /** postgres:// URL; when set, the real PostgreSQL driver is used. */
  databaseUrl?: string;
  /** Server processes sharing the ports (TESSERA_WORKERS; node:cluster); more than 1 needs databaseUrl. */
  workers: number;
  /** 32-byte key that encrypts private signing keys; generated for the embedded default. */
  masterKey?: Buffer;
  adminUsername: string;
  /** Bootstrap admin password; generated and printed once when absent. */
  adminPassword?: string;
  logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
  /** Allow unauthenticated TenantService.CreateTenant (Jincor POST /tenant). */
  openTenantSignup: boolean;
  issuer: string;
  audience: string;
  accessTokenTtlSeconds: number;
  refreshTokenTtlSeconds: number;
  refreshTokenAbsoluteTtlSeconds: number;
  /** How long after a rotation a re-presentation of the rotated refresh token gets the same successor; 0 = strict rotation. */
  refreshGraceSeconds: number;
  keyRotationIntervalSeconds: number;
  /** How long a new signing key is published before it signs. */
  keyPublishLeadSeconds: number;
  tls?: TlsConfig;
  amqpUrl?: string;
  /** Queue of microservice registrations (OpenMatchmaking's name by default). */
  amqpRegistrationQueue: string;
  /** Failed logins of one account from one caller address before that address is blocked from it. */
  loginFailuresPerAccountAndAddress: number;
  /** Failed logins of one account from all addresses before the account is blocked (a much higher ceiling). */
  loginFailuresPerAccount: number;
  /** Failed logins from one caller address across accounts; 0 = no address limit. */
  loginFailuresPerAddress: number;
  /** The failure-counting window and the length of a block. */
  loginBlockSeconds: number;
  /** Self-registrations per caller address, and per tenant, in `registrationWindowSeconds`; 0 = unlimited. */
  registrationsPerAddress: number;
  registrationsPerTenant: number;
  registrationWindowSeconds: number;
  /** argon2 computations at once (0 = the core count), and how many may wait for one. */
  passwordHashConcurrency: number;
  passwordHashQueue: number;
  passwordMinLength: number;
  /** Keeps throttling counters in Redis instead of the database. */
  redisUrl?: string;
  /**
   * Proxies whose `x-forwarded-for` names the real caller (for throttling and
   * session records); callers elsewhere are taken at their socket address.
   */
  trustedProxies: BlockList;
  /** Seconds SIGTERM waits for in-flight calls before closing them. */
  shutdownGraceSeconds: number;
  /** gRPC server limits (grpc-js channel options). */
  grpc: GrpcLimits;
  /** statement_timeout of every PostgreSQL connection (an RPC's own queries end with its deadline), ms. */
  databaseStatementTimeoutMs: number;
  /** Who may read GET /metrics (addresses and CIDR ranges); others get 404. */
  metricsAllow: BlockList;
  /** Tenants named in metric labels before the rest count as "_other". */
  metricsTenantLabels: number;
  /** Retention: how often one replica purges, and how many rows per statement. */
  retentionIntervalMs: number;
  retentionBatch: number;
  /** How long revocation-log entries are kept (WatchRevocations cursors older than this restart from the oldest kept). */
  revocationLogRetentionSeconds: number;
  /** Live sessions per user before the oldest are revoked; 0 = no cap. */
  maxSessionsPerUser: number;
  /** Signature-verified access tokens kept in memory (oldest out first); 0 = none. */
  verifiedTokenCacheSize: number;
  /** Session states kept in memory for VerifyToken (30 s each at most; oldest out first). */
  sessionCacheSize: number;
  /** OpenTelemetry tracing asked for by the OTEL_ variables (observability/tracing.ts). */
  tracing: boolean;
  /** The session server's `…/session/minecraft` root, whose `hasJoined` the minecraft credential calls. */
  minecraftSessionUrl: string;
  /** Bounds of every call to a remote authentication system. */
  remoteConnectTimeoutMs: number;
  remoteTimeoutMs: number;
  remoteMaxInFlight: number;
  /** How long OpenID Connect discovery documents and key sets are cached. */
  oidcCacheSeconds: number;
  /** Lets tenants trust http:// issuers on loopback hosts (tests and local development only). */
  oidcAllowHttpLoopback: boolean;
  /** After a key-set fetch, an unknown `kid` refetches only once this long has passed. */
  oidcRefetchCooldownMs: number;
  /** Tolerated clock difference with issuers for exp and iat. */
  oidcClockToleranceSeconds: number;
  /** The oldest ID token (by `iat`) a login accepts. */
  oidcMaxTokenAgeSeconds: number;
  /** Names of this server's own registry in assertions' `regionmeta.registry` (resolved from its database). */
  registrySelfNames: string[];
  /** Outside registries trusted for service assertions (the allow-list), with their authority keys. */
  trustedRegistries: TrustedRegistry[];
  /** Cache-Control max-age of /registry.json and the TTL of exported DNS records. */
  registryMaxAgeSeconds: number;
  /** How long outside registries' records are cached, and how often an unknown key may refetch. */
  registryCacheSeconds: number;
  registryRefetchCooldownMs: number;
  /** How often the revocation log is polled (the fallback when a replica's LISTEN connection is down; the embedded database polls after every local commit anyway). */
  revocationPollIntervalMs: number;
  /** On PostgreSQL, how long VerifyToken trusts its cache of session states without a successful read of the revocation log (then it reads the database, and fails UNAVAILABLE while that is gone). */
  revocationStaleLimitMs: number;
  /** DNS servers (host:port) for DNS registries; the system's when empty. */
  registryDnsServers: string[];
  /** PEM CA bundle trusted (instead of the system roots) for HTTPS registries. */
  registryCa?: string;
  /** Longest `exp - iat` of an accepted assertion (bounds the jti record). */
  assertionMaxLifetimeSeconds: number;
  /** Lifetime of access tokens from token exchange. */
  serviceTokenTtlSeconds: number;
  /** Cookie Gate-Keeper reads a token from when there is no Authorization header. */
  gatekeeperCookie: string;
  /** Accept Argus's client-chosen Minecraft server hash (any Minecraft server the player joins learns it). */
  minecraftClientHash: boolean;
  /** How long a Minecraft login challenge is accepted. */
  minecraftChallengeTtlSeconds: number;
  /** Registry changes per tenant, and a user's own key publications per user, per hour; 0 = unlimited. */
  registryWritesPerTenant: number;
  keyPublishesPerUser: number;
}

export class ConfigError extends Error {
  readonly variable: string;
  constructor(variable: string, problem: string) {
    super(`invalid configuration: ${variable} ${problem}`);
    this.name = "ConfigError";
    this.variable = variable;
  }
}

type Env = Record<string, string | undefined>;

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
const DURATION_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** Parses "300", "300s", "5m", "12h", "30d" into seconds. */
export function parseDurationSeconds(raw: string): number | undefined {
  const match = /^(\d+)([smhd]?)$/.exec(raw.trim());
  if (!match) return undefined;
  const value = Number(match[1]) * DURATION_UNITS[match[2] || "s"]!;
  return Number.isSafeInteger(value) && value > 0 ? value : undefined;
}

function readAddr(env: Env, name: string, fallback: string): string {
  const value = env[name] ?? fallback;
  const match = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
  if (!match || Number(match[2]) > 65535) {
    throw new ConfigError(name, `must be host:port (e.g. ${fallback}), got "${value}"`);
  }
  return value;
}

function readDuration(env: Env, name: string, fallback: string): number {
  const raw = env[name] ?? fallback;
  const seconds = parseDurationSeconds(raw);
  if (seconds === undefined) {
    throw new ConfigError(name, `must be a positive duration like 300s, 5m, 12h or 30d, got "${raw}"`);
  }
  return seconds;
}

/** readMillis, where "0" means unlimited (returned as 0). */
function readMillisOrOff(env: Env, name: string, fallback: string): number {
  return env[name]?.trim() === "0" ? 0 : readMillis(env, name, fallback);
}

/** A size in bytes: "1048576", "64KiB", "4MiB"; between min and max. */
function readBytes(env: Env, name: string, fallback: string, min: number, max: number): number {
  const raw = env[name] || fallback;
  const match = /^(\d{1,10})(KiB|MiB)?$/.exec(raw.trim());
  const value = match ? Number(match[1]) * (match[2] === "MiB" ? 1 << 20 : match[2] === "KiB" ? 1 << 10 : 1) : NaN;
  if (!(value >= min && value <= max)) throw new ConfigError(name, `must be a size from ${min} bytes to ${max >> 20}MiB (e.g. 1MiB, 64KiB), got "${raw}"`);
  return value;
}

function readGrpcLimits(env: Env): GrpcLimits {
  const limits = {
    maxReceiveMessageBytes: readBytes(env, "TESSERA_GRPC_MAX_RECEIVE_MESSAGE_SIZE", "1MiB", 16 << 10, 64 << 20),
    maxConcurrentStreams: readCount(env, "TESSERA_GRPC_MAX_CONCURRENT_STREAMS", 100, 1),
    keepaliveTimeMs: readMillis(env, "TESSERA_GRPC_KEEPALIVE_TIME", "1m"),
    keepaliveTimeoutMs: readMillis(env, "TESSERA_GRPC_KEEPALIVE_TIMEOUT", "20s"),
    maxConnectionAgeMs: readMillisOrOff(env, "TESSERA_GRPC_MAX_CONNECTION_AGE", "30m"),
    maxConnectionAgeGraceMs: readMillis(env, "TESSERA_GRPC_MAX_CONNECTION_AGE_GRACE", "1m"),
    maxConnectionIdleMs: readMillisOrOff(env, "TESSERA_GRPC_MAX_CONNECTION_IDLE", "10m"),
  };
  if (limits.keepaliveTimeMs < 10_000) throw new ConfigError("TESSERA_GRPC_KEEPALIVE_TIME", "must be at least 10s (clients treat faster pings as abuse)");
  return limits;
}

/** "500ms", or a duration as readDuration takes it; in milliseconds. */
function readMillis(env: Env, name: string, fallback: string): number {
  const raw = env[name] || fallback;
  const ms = /^(\d{1,7})ms$/.exec(raw.trim());
  const value = ms ? Number(ms[1]) : (parseDurationSeconds(raw) ?? NaN) * 1000;
  if (!(value > 0)) throw new ConfigError(name, `must be a positive duration like 500ms, 5s or 1m, got "${raw}"`);
  return value;
}

function readHttpUrl(env: Env, name: string, fallback: string): string {
  const raw = env[name] || fallback;
  let url: URL | undefined;
  try {
    url = new URL(raw);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== "https:" && url.protocol !== "http:") || url.search || url.hash || url.username) {
    throw new ConfigError(name, `must be an http(s) URL without query or credentials, got "${raw}"`);
  }
  return raw;
}

function readCount(env: Env, name: string, fallback: number, min: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = /^\d{1,9}$/.test(raw) ? Number(raw) : NaN;
  if (!(value >= min)) throw new ConfigError(name, `must be a whole number of at least ${min}, got "${raw}"`);
  return value;
}

/** The most TESSERA_WORKERS takes: each worker holds its own pool of database connections. */
export const MAX_WORKERS = 64;

function readWorkers(env: Env, databaseUrl: string | undefined): number {
  const raw = env.TESSERA_WORKERS;
  if (raw === undefined || raw === "") return 1;
  const workers = raw === "auto" ? Math.min(availableParallelism(), MAX_WORKERS) : /^\d{1,3}$/.test(raw) ? Number(raw) : NaN;
  if (!(workers >= 1 && workers <= MAX_WORKERS)) throw new ConfigError("TESSERA_WORKERS", `must be "auto" or a whole number from 1 to ${MAX_WORKERS}, got "${raw}"`);
  if (workers > 1 && databaseUrl === undefined) {
    throw new ConfigError("TESSERA_WORKERS", "more than one worker needs DATABASE_URL: the embedded database lives inside one process");
  }
  return workers;
}

function readBoolean(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  if (/^(1|true|yes|on)$/i.test(raw)) return true;
  if (/^(0|false|no|off)$/i.test(raw)) return false;
  throw new ConfigError(name, `must be true or false, got "${raw}"`);
}

function readMasterKey(env: Env): Buffer | undefined {
  const raw = env.TESSERA_MASTER_KEY;
  if (raw === undefined || raw === "") return undefined;
  const key = /^[0-9a-fA-F]{64}$/.test(raw) ? Buffer.from(raw, "hex") : Buffer.from(raw, "base64");
  if (key.length !== 32) {
    throw new ConfigError("TESSERA_MASTER_KEY", "must be 32 bytes, as 64 hex digits or base64");
  }
  return key;
}

function readDatabaseUrl(env: Env): string | undefined {
  const raw = env.DATABASE_URL;
  if (raw === undefined || raw === "") return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError("DATABASE_URL", "is not a valid URL");
  }
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
    throw new ConfigError("DATABASE_URL", `must start with postgres:// (got ${url.protocol}//)`);
  }
  if (url.pathname.length <= 1) throw new ConfigError("DATABASE_URL", "must name a database");
  return raw;
}

function readTls(env: Env): TlsConfig | undefined {
  const certFile = env.TESSERA_TLS_CERT_FILE;
  const keyFile = env.TESSERA_TLS_KEY_FILE;
  const clientCaFile = env.TESSERA_TLS_CLIENT_CA_FILE || undefined;
  if (!certFile && !keyFile) {
    if (clientCaFile) throw new ConfigError("TESSERA_TLS_CLIENT_CA_FILE", "needs TESSERA_TLS_CERT_FILE and TESSERA_TLS_KEY_FILE");
    return undefined;
  }
  if (!certFile) throw new ConfigError("TESSERA_TLS_CERT_FILE", "is required when TESSERA_TLS_KEY_FILE is set");
  if (!keyFile) throw new ConfigError("TESSERA_TLS_KEY_FILE", "is required when TESSERA_TLS_CERT_FILE is set");
  return { certFile, keyFile, clientCaFile };
}

function readRedisUrl(env: Env): string | undefined {
  const raw = env.TESSERA_REDIS_URL;
  if (raw === undefined || raw === "") return undefined;
  if (!/^rediss?:\/\/[^\s]+$/.test(raw)) throw new ConfigError("TESSERA_REDIS_URL", "must start with redis:// or rediss://");
  return raw;
}

/** Comma-separated IP addresses and CIDR ranges (IPv4 or IPv6). */
function readTrustedProxies(env: Env): BlockList {
  return readAddressList(env, "TESSERA_TRUSTED_PROXIES", "");
}

/** Loopback and the private ranges: where a Prometheus scraper usually is. */
const PRIVATE_RANGES = "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7";

function readAddressList(env: Env, name: string, fallback: string): BlockList {
  const list = new BlockList();
  const raw = env[name] ?? fallback;
  for (const entry of raw.split(",").map((s) => s.trim()).filter(Boolean)) {
    const [address, bits, extra] = entry.split("/");
    const family = isIP(address ?? "");
    const prefix = bits === undefined ? undefined : /^\d{1,3}$/.test(bits) ? Number(bits) : NaN;
    if (!family || extra !== undefined || (prefix !== undefined && !(prefix >= 0 && prefix <= (family === 4 ? 32 : 128)))) {
      throw new ConfigError(name, `must be comma-separated IP addresses or CIDR ranges, got "${entry}"`);
    }
    const type = family === 4 ? "ipv4" : "ipv6";
    if (prefix === undefined) list.addAddress(address!, type);
    else list.addSubnet(address!, prefix, type);
  }
  return list;
}

/** 0 (strict rotation) up to a minute: a stolen token presented within the window gets the successor too. */
function readRefreshGrace(env: Env): number {
  if (env.TESSERA_REFRESH_GRACE?.trim() === "0") return 0;
  const seconds = readDuration(env, "TESSERA_REFRESH_GRACE", "10s");
  if (seconds > 60) throw new ConfigError("TESSERA_REFRESH_GRACE", "must be at most 60s (0 = strict rotation)");
  return seconds;
}

function readRegistry(env: Env) {
  const wrap = <T>(name: string, read: () => T): T => {
    try {
      return read();
    } catch (error) {
      if (error instanceof ConfigError) throw error;
      throw new ConfigError(name, (error as Error).message);
    }
  };
  const registrySelfNames = wrap("TESSERA_REGISTRY_SELF", () => parseSelfNames(env.TESSERA_REGISTRY_SELF));
  const trustedRegistries = wrap("TESSERA_REGISTRIES", () => parseTrustedRegistries(env.TESSERA_REGISTRIES, env));
  for (const t of trustedRegistries) {
    if (registrySelfNames.includes(t.name)) throw new ConfigError("TESSERA_REGISTRIES", `"${t.name}" is also in TESSERA_REGISTRY_SELF`);
  }
  const registryDnsServers = (env.TESSERA_REGISTRY_DNS_SERVERS ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  for (const server of registryDnsServers) {
    const m = /^(\[[0-9a-f:]+\]|[0-9.]+)(?::(\d{1,5}))?$/i.exec(server);
    if (!m || !isIP(m[1]!.replace(/^\[|\]$/g, "")) || (m[2] !== undefined && !(Number(m[2]) >= 1 && Number(m[2]) <= 65535))) {
      throw new ConfigError("TESSERA_REGISTRY_DNS_SERVERS", `must be comma-separated IP[:port] (e.g. 127.0.0.1:5353), got "${server}"`);
    }
  }
  const caFile = env.TESSERA_REGISTRY_CA_FILE || undefined;
  const registryCa = caFile ? wrap("TESSERA_REGISTRY_CA_FILE", () => readFileSync(caFile, "utf8")) : undefined;
  const assertionMaxLifetimeSeconds = readDuration(env, "TESSERA_ASSERTION_MAX_LIFETIME", "5m");
  if (assertionMaxLifetimeSeconds > 3600) throw new ConfigError("TESSERA_ASSERTION_MAX_LIFETIME", "must be at most 1h (assertions are single-use proofs)");
  return {
    registrySelfNames,
    trustedRegistries,
    registryMaxAgeSeconds: readDuration(env, "TESSERA_REGISTRY_MAX_AGE", "30s"),
    registryCacheSeconds: readDuration(env, "TESSERA_REGISTRY_CACHE_TTL", "1m"),
    registryRefetchCooldownMs: readMillis(env, "TESSERA_REGISTRY_REFETCH_COOLDOWN", "10s"),
    revocationPollIntervalMs: readMillis(env, "TESSERA_REVOCATION_POLL_INTERVAL", "500ms"),
    revocationStaleLimitMs: readMillis(env, "TESSERA_REVOCATION_STALE_LIMIT", "5s"),
    registryDnsServers,
    registryCa,
    assertionMaxLifetimeSeconds,
  };
}

function readMinecraftChallengeTtl(env: Env): number {
  const seconds = readDuration(env, "TESSERA_MINECRAFT_CHALLENGE_TTL", "2m");
  if (seconds > 600) throw new ConfigError("TESSERA_MINECRAFT_CHALLENGE_TTL", "must be at most 10m (a challenge is a bearer secret until used)");
  return seconds;
}

function readCookieName(env: Env): string {
  const name = env.TESSERA_GATEKEEPER_COOKIE || "tessera_token";
  if (!/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/.test(name)) throw new ConfigError("TESSERA_GATEKEEPER_COOKIE", "must be a cookie name (RFC 6265 token)");
  return name;
}

export function loadConfig(env: Env = process.env): Config {
  const logLevel = (env.TESSERA_LOG_LEVEL ?? "info") as Config["logLevel"];
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError("TESSERA_LOG_LEVEL", `must be one of ${LOG_LEVELS.join(", ")}`);
  }
  const passwordMinLength = readCount(env, "TESSERA_PASSWORD_MIN_LENGTH", DEFAULT_PASSWORD_MIN_LENGTH, PASSWORD_ABSOLUTE_MIN_LENGTH);
  if (passwordMinLength > PASSWORD_MAX_LENGTH) throw new ConfigError("TESSERA_PASSWORD_MIN_LENGTH", `must be at most ${PASSWORD_MAX_LENGTH}`);
  const adminPassword = env.TESSERA_ADMIN_PASSWORD || undefined;
  if (adminPassword !== undefined && ([...adminPassword].length < passwordMinLength || [...adminPassword].length > PASSWORD_MAX_LENGTH)) {
    throw new ConfigError("TESSERA_ADMIN_PASSWORD", `must be ${passwordMinLength}-${PASSWORD_MAX_LENGTH} characters (TESSERA_PASSWORD_MIN_LENGTH)`);
  }
  const adminUsername = env.TESSERA_ADMIN_USERNAME || "admin";
  if (!USERNAME.test(adminUsername)) {
    throw new ConfigError("TESSERA_ADMIN_USERNAME", "must be 1-64 characters of letters, digits and ._- (no @: that is for e-mail addresses)");
  }
  const amqpUrl = env.AMQP_URL || undefined;
  if (amqpUrl !== undefined && !/^amqps?:\/\//.test(amqpUrl)) {
    throw new ConfigError("AMQP_URL", "must start with amqp:// or amqps://");
  }
  const accessTokenTtlSeconds = readDuration(env, "TESSERA_ACCESS_TOKEN_TTL", "5m");
  const refreshTokenTtlSeconds = readDuration(env, "TESSERA_REFRESH_TOKEN_TTL", "30d");
  const refreshTokenAbsoluteTtlSeconds = readDuration(env, "TESSERA_REFRESH_TOKEN_ABSOLUTE_TTL", "90d");
  if (refreshTokenAbsoluteTtlSeconds < refreshTokenTtlSeconds) {
    throw new ConfigError("TESSERA_REFRESH_TOKEN_ABSOLUTE_TTL", "must not be shorter than TESSERA_REFRESH_TOKEN_TTL");
  }
  const databaseUrl = readDatabaseUrl(env);
  const masterKey = readMasterKey(env);
  // The embedded database keeps a generated key beside it; a shared database's replicas must be given theirs.
  if (databaseUrl !== undefined && masterKey === undefined) {
    throw new ConfigError("TESSERA_MASTER_KEY", "is required with DATABASE_URL (32 bytes, as 64 hex digits or base64; e.g. openssl rand -hex 32)");
  }
  const config: Config = {
    grpcAddr: readAddr(env, "TESSERA_GRPC_ADDR", "127.0.0.1:50051"),
    httpAddr: readAddr(env, "TESSERA_HTTP_ADDR", "127.0.0.1:8080"),
    dataDir: resolve(env.TESSERA_DATA_DIR || "./data"),
    databaseUrl,
    workers: readWorkers(env, databaseUrl),
    masterKey,
    adminUsername,
    adminPassword,
    logLevel,
    openTenantSignup: readBoolean(env, "TESSERA_OPEN_TENANT_SIGNUP", false),
    issuer: env.TESSERA_ISSUER || "tessera",
    audience: env.TESSERA_AUDIENCE || "tessera",
    accessTokenTtlSeconds,
    refreshTokenTtlSeconds,
    refreshTokenAbsoluteTtlSeconds,
    refreshGraceSeconds: readRefreshGrace(env),
    keyRotationIntervalSeconds: readDuration(env, "TESSERA_KEY_ROTATION_INTERVAL", "30d"),
    keyPublishLeadSeconds: readDuration(env, "TESSERA_KEY_PUBLISH_LEAD", "1m"),
    tls: readTls(env),
    amqpUrl,
    amqpRegistrationQueue: env.TESSERA_AMQP_REGISTRATION_QUEUE || "auth.microservices.register",
    shutdownGraceSeconds: readDuration(env, "TESSERA_SHUTDOWN_GRACE", "10s"),
    grpc: readGrpcLimits(env),
    databaseStatementTimeoutMs: readMillis(env, "TESSERA_DATABASE_STATEMENT_TIMEOUT", "30s"),
    metricsAllow: readAddressList(env, "TESSERA_METRICS_ALLOW", PRIVATE_RANGES),
    metricsTenantLabels: readCount(env, "TESSERA_METRICS_TENANT_LABELS", 100, 0),
    retentionIntervalMs: readMillis(env, "TESSERA_RETENTION_INTERVAL", "1m"),
    retentionBatch: readCount(env, "TESSERA_RETENTION_BATCH", 1000, 1),
    revocationLogRetentionSeconds: readDuration(env, "TESSERA_REVOCATION_LOG_RETENTION", "7d"),
    maxSessionsPerUser: readCount(env, "TESSERA_MAX_SESSIONS_PER_USER", 100, 0),
    verifiedTokenCacheSize: readCount(env, "TESSERA_VERIFIED_TOKEN_CACHE", 2000, 0),
    sessionCacheSize: readCount(env, "TESSERA_SESSION_CACHE", 20000, 0),
    tracing: tracingRequested(env),
    loginFailuresPerAccountAndAddress: readCount(env, "TESSERA_LOGIN_FAILURES_PER_ACCOUNT_AND_ADDRESS", 10, 1),
    loginFailuresPerAccount: readCount(env, "TESSERA_LOGIN_FAILURES_PER_ACCOUNT", 100, 1),
    loginFailuresPerAddress: readCount(env, "TESSERA_LOGIN_FAILURES_PER_ADDRESS", 100, 0),
    loginBlockSeconds: readDuration(env, "TESSERA_LOGIN_BLOCK", "15m"),
    registrationsPerAddress: readCount(env, "TESSERA_REGISTRATIONS_PER_ADDRESS", 20, 0),
    registrationsPerTenant: readCount(env, "TESSERA_REGISTRATIONS_PER_TENANT", 600, 0),
    registrationWindowSeconds: readDuration(env, "TESSERA_REGISTRATION_WINDOW", "1h"),
    passwordHashConcurrency: readCount(env, "TESSERA_PASSWORD_HASH_CONCURRENCY", 0, 0),
    passwordHashQueue: readCount(env, "TESSERA_PASSWORD_HASH_QUEUE", 64, 0),
    passwordMinLength,
    redisUrl: readRedisUrl(env),
    trustedProxies: readTrustedProxies(env),
    minecraftSessionUrl: readHttpUrl(env, "TESSERA_MINECRAFT_SESSION_URL", "https://sessionserver.mojang.com/session/minecraft"),
    remoteConnectTimeoutMs: readMillis(env, "TESSERA_REMOTE_CONNECT_TIMEOUT", "2s"),
    remoteTimeoutMs: readMillis(env, "TESSERA_REMOTE_TIMEOUT", "5s"),
    remoteMaxInFlight: readCount(env, "TESSERA_REMOTE_MAX_IN_FLIGHT", 64, 1),
    oidcCacheSeconds: readDuration(env, "TESSERA_OIDC_CACHE_TTL", "10m"),
    oidcAllowHttpLoopback: readBoolean(env, "TESSERA_OIDC_ALLOW_HTTP_LOOPBACK", false),
    oidcRefetchCooldownMs: readMillis(env, "TESSERA_OIDC_REFETCH_COOLDOWN", "30s"),
    oidcClockToleranceSeconds: readDuration(env, "TESSERA_OIDC_CLOCK_TOLERANCE", "30s"),
    oidcMaxTokenAgeSeconds: readDuration(env, "TESSERA_OIDC_MAX_TOKEN_AGE", "10m"),
    ...readRegistry(env),
    serviceTokenTtlSeconds: readDuration(env, "TESSERA_SERVICE_TOKEN_TTL", "5m"),
    gatekeeperCookie: readCookieName(env),
    minecraftClientHash: readBoolean(env, "TESSERA_MINECRAFT_CLIENT_HASH", false),
    minecraftChallengeTtlSeconds: readMinecraftChallengeTtl(env),
    registryWritesPerTenant: readCount(env, "TESSERA_REGISTRY_WRITES_PER_TENANT", 600, 0),
    keyPublishesPerUser: readCount(env, "TESSERA_KEY_PUBLISHES_PER_USER", 20, 0),
  };
  // A revocation matters while tokens issued before it live; the log must outlast them.
  const longestToken = Math.max(config.accessTokenTtlSeconds, config.serviceTokenTtlSeconds);
  if (config.revocationLogRetentionSeconds < 2 * longestToken) {
    throw new ConfigError("TESSERA_REVOCATION_LOG_RETENTION", `must be at least twice the longest access-token lifetime (${2 * longestToken}s)`);
  }
  return config;
}
