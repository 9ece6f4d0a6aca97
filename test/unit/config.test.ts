import { describe, expect, it } from "vitest";
import { generateKeyPairSync } from "node:crypto";
import { availableParallelism } from "node:os";
import { ConfigError, loadConfig, parseDurationSeconds } from "../../src/config.ts";

describe("loadConfig", () => {
  it("starts with no configuration at all: embedded database, local ports, 5-minute access tokens", () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      grpcAddr: "127.0.0.1:50051",
      httpAddr: "127.0.0.1:8080",
      databaseUrl: undefined,
      accessTokenTtlSeconds: 300,
      refreshTokenTtlSeconds: 30 * 86400,
      openTenantSignup: false,
      adminUsername: "admin",
    });
    expect(config.dataDir).toMatch(/\/data$/);
  });

  it.each([
    ["TESSERA_GRPC_ADDR", "localhost"],
    ["TESSERA_GRPC_ADDR", "127.0.0.1:99999"],
    ["TESSERA_HTTP_ADDR", "nope"],
    ["DATABASE_URL", "mysql://localhost/db"],
    ["DATABASE_URL", "postgres://localhost"],
    ["DATABASE_URL", "::::"],
    ["TESSERA_MASTER_KEY", "too-short"],
    ["TESSERA_ADMIN_PASSWORD", "short"],
    ["TESSERA_ADMIN_USERNAME", "has space"],
    ["TESSERA_LOG_LEVEL", "loud"],
    ["TESSERA_ACCESS_TOKEN_TTL", "5 minutes"],
    ["TESSERA_ACCESS_TOKEN_TTL", "0"],
    ["TESSERA_OPEN_TENANT_SIGNUP", "maybe"],
    ["AMQP_URL", "http://rabbit"],
    ["TESSERA_TLS_CLIENT_CA_FILE", "/tmp/ca.pem"],
    ["TESSERA_LOGIN_FAILURES_PER_ACCOUNT", "0"],
    ["TESSERA_LOGIN_FAILURES_PER_ACCOUNT", "ten"],
    ["TESSERA_LOGIN_FAILURES_PER_ADDRESS", "-1"],
    ["TESSERA_LOGIN_FAILURES_PER_ADDRESS", "1e3"],
    ["TESSERA_LOGIN_FAILURES_PER_ACCOUNT_AND_ADDRESS", "0"],
    ["TESSERA_LOGIN_BLOCK", "forever"],
    ["TESSERA_ADMIN_USERNAME", "admin@example.com"],
    ["TESSERA_ADMIN_PASSWORD", "elevenchars"],
    ["TESSERA_PASSWORD_MIN_LENGTH", "7"],
    ["TESSERA_PASSWORD_MIN_LENGTH", "129"],
    ["TESSERA_REGISTRATIONS_PER_ADDRESS", "many"],
    ["TESSERA_PASSWORD_HASH_QUEUE", "-1"],
    ["TESSERA_REDIS_URL", "http://127.0.0.1:6379"],
    ["TESSERA_TRUSTED_PROXIES", "10.0.0.0/33"],
    ["TESSERA_TRUSTED_PROXIES", "proxy.internal"],
    ["TESSERA_WORKERS", "0"],
    ["TESSERA_WORKERS", "65"],
    ["TESSERA_WORKERS", "two"],
    // More than one worker on the embedded database: it lives inside one process.
    ["TESSERA_WORKERS", "2"],
  ])("stops with a message naming %s when it is %j", (variable, value) => {
    let error: unknown;
    try {
      loadConfig({ [variable]: value });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).variable).toBe(variable);
    expect((error as ConfigError).message).toContain(variable);
  });

  it("reads TESSERA_WORKERS: one process by default, more (or one per core) only with DATABASE_URL", () => {
    const pg = { DATABASE_URL: "postgres://127.0.0.1/tessera", TESSERA_MASTER_KEY: "11".repeat(32) };
    expect(loadConfig({}).workers).toBe(1);
    expect(loadConfig({ TESSERA_WORKERS: "1" }).workers).toBe(1);
    expect(loadConfig({ ...pg, TESSERA_WORKERS: "3" }).workers).toBe(3);
    expect(loadConfig({ ...pg, TESSERA_WORKERS: "auto" }).workers).toBe(Math.min(availableParallelism(), 64));
    // "auto" on the embedded database, where there is more than one core, is refused as "2" is.
    if (availableParallelism() > 1) expect(() => loadConfig({ TESSERA_WORKERS: "auto" })).toThrow(/TESSERA_WORKERS.*DATABASE_URL/);
  });

  it("reads login throttling limits: a block per account and address, a higher ceiling per account, the address limit can be turned off", () => {
    expect(loadConfig({})).toMatchObject({ loginFailuresPerAccountAndAddress: 10, loginFailuresPerAccount: 100, loginFailuresPerAddress: 100, loginBlockSeconds: 900 });
    expect(
      loadConfig({ TESSERA_LOGIN_FAILURES_PER_ACCOUNT_AND_ADDRESS: "5", TESSERA_LOGIN_FAILURES_PER_ACCOUNT: "3", TESSERA_LOGIN_FAILURES_PER_ADDRESS: "0", TESSERA_LOGIN_BLOCK: "1m" }),
    ).toMatchObject({ loginFailuresPerAccountAndAddress: 5, loginFailuresPerAccount: 3, loginFailuresPerAddress: 0, loginBlockSeconds: 60 });
  });

  it("reads the password policy and hashing limits", () => {
    expect(loadConfig({})).toMatchObject({ passwordMinLength: 12, passwordHashConcurrency: 0, passwordHashQueue: 64, registrationsPerAddress: 20, registrationsPerTenant: 600 });
    expect(loadConfig({ TESSERA_PASSWORD_MIN_LENGTH: "15", TESSERA_ADMIN_PASSWORD: "fifteen-chars!!" }).passwordMinLength).toBe(15);
    expect(() => loadConfig({ TESSERA_PASSWORD_MIN_LENGTH: "16", TESSERA_ADMIN_PASSWORD: "fifteen-chars!!" })).toThrow(/TESSERA_ADMIN_PASSWORD/);
  });

  it("reads trusted proxies as addresses and CIDR ranges", () => {
    const { trustedProxies } = loadConfig({ TESSERA_TRUSTED_PROXIES: "10.0.0.0/8, 192.168.1.7,::1" });
    expect(trustedProxies.check("10.20.30.40", "ipv4")).toBe(true);
    expect(trustedProxies.check("192.168.1.7", "ipv4")).toBe(true);
    expect(trustedProxies.check("192.168.1.8", "ipv4")).toBe(false);
    expect(trustedProxies.check("::1", "ipv6")).toBe(true);
    expect(loadConfig({}).trustedProxies.check("127.0.0.1", "ipv4")).toBe(false);
  });

  it("refuses an absolute refresh lifetime shorter than the sliding one", () => {
    expect(() => loadConfig({ TESSERA_REFRESH_TOKEN_TTL: "30d", TESSERA_REFRESH_TOKEN_ABSOLUTE_TTL: "1d" })).toThrow(/TESSERA_REFRESH_TOKEN_ABSOLUTE_TTL/);
  });

  it("requires TESSERA_MASTER_KEY with DATABASE_URL, naming it", () => {
    expect(() => loadConfig({ DATABASE_URL: "postgres://db.internal/tessera" })).toThrow(/TESSERA_MASTER_KEY/);
    expect(loadConfig({ DATABASE_URL: "postgres://db.internal/tessera", TESSERA_MASTER_KEY: "ab".repeat(32) }).databaseUrl).toBe("postgres://db.internal/tessera");
  });

  it("accepts a master key as 64 hex digits or base64 of 32 bytes", () => {
    expect(loadConfig({ TESSERA_MASTER_KEY: "ab".repeat(32) }).masterKey?.length).toBe(32);
    expect(loadConfig({ TESSERA_MASTER_KEY: Buffer.alloc(32, 7).toString("base64") }).masterKey?.equals(Buffer.alloc(32, 7))).toBe(true);
  });
});

describe("parseDurationSeconds", () => {
  it.each([
    ["300", 300],
    ["45s", 45],
    ["5m", 300],
    ["12h", 43200],
    ["30d", 2592000],
  ])("reads %s as %d seconds", (raw, seconds) => {
    expect(parseDurationSeconds(raw)).toBe(seconds);
  });
  it.each(["", "-5s", "5x", "1.5h", "0s"])("rejects %j", (raw) => {
    expect(parseDurationSeconds(raw)).toBeUndefined();
  });
});

describe("registry settings", () => {
  const authority = JSON.stringify(generateKeyPairSync("ed25519").publicKey.export({ format: "jwk" }));
  const entry = (over: Record<string, unknown> = {}) => JSON.stringify([{ registry: "https://id.example.com/registry.json?v=1", authority_keys: [JSON.parse(authority)], tenant: "acme", ...over }]);

  it("reads the allow-list: exact URL, hyphenated DNS host, local store from an environment variable", () => {
    const config = loadConfig({
      TESSERA_REGISTRY_SELF: "https://self.example.com/registry.json",
      TESSERA_REGISTRIES: JSON.stringify([
        { registry: "https://id.example.com/registry.json?v=1", authority_keys: [JSON.parse(authority)], tenant: "acme" },
        { registry: "reg-1.svc-east.example.com", authority_key: authority, tenant: "acme" },
        { registry: "local:partners", authority_keys: [JSON.parse(authority)], tenant: "acme", document_env: "PARTNERS" },
      ]),
      PARTNERS: '{"regions": [], "capabilities": []}',
      TESSERA_REGISTRY_DNS_SERVERS: "127.0.0.1:5353,[::1]:53",
    });
    expect(config.registrySelfNames).toEqual(["https://self.example.com/registry.json"]);
    expect(config.trustedRegistries.map((t) => [t.name, t.kind])).toEqual([
      ["https://id.example.com/registry.json?v=1", "https"],
      ["reg-1.svc-east.example.com", "dns"],
      ["local:partners", "local"],
    ]);
    expect(config.trustedRegistries[2]!.readDocument!()).toContain("regions");
    expect(config.registryDnsServers).toEqual(["127.0.0.1:5353", "[::1]:53"]);
  });

  it.each([
    ["TESSERA_REGISTRIES", "not json"],
    ["TESSERA_REGISTRIES", "{}"],
    ["TESSERA_REGISTRIES", entry({ registry: "http://id.example.com/registry.json" })],
    ["TESSERA_REGISTRIES", entry({ registry: "Upper.Example.com" })],
    ["TESSERA_REGISTRIES", entry({ authority_keys: [] })],
    ["TESSERA_REGISTRIES", entry({ authority_keys: ["-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----"] })],
    ["TESSERA_REGISTRIES", entry({ authority_keys: [{ kty: "RSA", n: "x", e: "AQAB" }] })],
    ["TESSERA_REGISTRIES", entry({ tenant: undefined })],
    ["TESSERA_REGISTRIES", entry({ registry: "local:x" })],
    ["TESSERA_REGISTRIES", entry({ registry: "local:x", document_env: "UNSET_VARIABLE" })],
    ["TESSERA_REGISTRY_SELF", "http://plain.example.com/"],
    ["TESSERA_REGISTRY_DNS_SERVERS", "dns.example.com"],
    ["TESSERA_ASSERTION_MAX_LIFETIME", "2h"],
    ["TESSERA_GATEKEEPER_COOKIE", "bad cookie"],
    ["TESSERA_MINECRAFT_CHALLENGE_TTL", "1h"],
  ])("refuses %s=%s, naming the variable", (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(new RegExp(`invalid configuration: ${name} `));
  });

  it("refuses a registry both trusted from outside and named as this server's own", () => {
    expect(() => loadConfig({ TESSERA_REGISTRIES: entry(), TESSERA_REGISTRY_SELF: "https://id.example.com/registry.json?v=1" })).toThrow(/TESSERA_REGISTRIES/);
  });
});

describe("operations settings", () => {
  it("have sane defaults: gRPC limits, statement timeout, metrics for private addresses, retention", () => {
    const config = loadConfig({});
    expect(config.grpc).toEqual({
      maxReceiveMessageBytes: 1 << 20,
      maxConcurrentStreams: 100,
      keepaliveTimeMs: 60_000,
      keepaliveTimeoutMs: 20_000,
      maxConnectionAgeMs: 30 * 60_000,
      maxConnectionAgeGraceMs: 60_000,
      maxConnectionIdleMs: 10 * 60_000,
    });
    expect(config.databaseStatementTimeoutMs).toBe(30_000);
    expect(config.metricsAllow.check("127.0.0.1", "ipv4")).toBe(true);
    expect(config.metricsAllow.check("10.1.2.3", "ipv4")).toBe(true);
    expect(config.metricsAllow.check("8.8.8.8", "ipv4")).toBe(false);
    expect(config.metricsTenantLabels).toBe(100);
    expect(config.revocationLogRetentionSeconds).toBe(7 * 86400);
    expect(config.maxSessionsPerUser).toBe(100);
    expect(config.verifiedTokenCacheSize).toBe(2000);
    expect(config.sessionCacheSize).toBe(20_000);
  });

  it("reads sizes and durations, 0 turning connection age and idle limits off", () => {
    const config = loadConfig({
      TESSERA_GRPC_MAX_RECEIVE_MESSAGE_SIZE: "64KiB",
      TESSERA_GRPC_MAX_CONNECTION_AGE: "0",
      TESSERA_GRPC_MAX_CONNECTION_IDLE: "0",
      TESSERA_GRPC_KEEPALIVE_TIME: "5m",
      TESSERA_METRICS_ALLOW: "203.0.113.7",
    });
    expect(config.grpc).toMatchObject({ maxReceiveMessageBytes: 65536, maxConnectionAgeMs: 0, maxConnectionIdleMs: 0, keepaliveTimeMs: 300_000 });
    expect(config.metricsAllow.check("203.0.113.7", "ipv4")).toBe(true);
    expect(config.metricsAllow.check("127.0.0.1", "ipv4")).toBe(false);
  });

  it.each([
    ["TESSERA_GRPC_MAX_RECEIVE_MESSAGE_SIZE", "1GiB"],
    ["TESSERA_GRPC_MAX_RECEIVE_MESSAGE_SIZE", "100"],
    ["TESSERA_GRPC_MAX_CONCURRENT_STREAMS", "0"],
    ["TESSERA_GRPC_KEEPALIVE_TIME", "1s"],
    ["TESSERA_DATABASE_STATEMENT_TIMEOUT", "never"],
    ["TESSERA_METRICS_ALLOW", "everyone"],
    ["TESSERA_METRICS_TENANT_LABELS", "-1"],
    ["TESSERA_RETENTION_BATCH", "0"],
    ["TESSERA_REVOCATION_LOG_RETENTION", "1m"],
    ["TESSERA_MAX_SESSIONS_PER_USER", "many"],
  ])("refuses %s=%s, naming the variable", (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(new RegExp(`invalid configuration: ${name} `));
  });
});
