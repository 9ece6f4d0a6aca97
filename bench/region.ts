// The Region System set-up shared by bench/exchange.ts and
// bench/assertion-verify.ts, over the public API as a service's operator
// would do it (test/integration/registry.test.ts does the same): the server
// runs with its own registry (TESSERA_REGISTRY_SELF) and an issuer; the
// system admin registers a microservice, creates a group named like the
// capability, creates a region and publishes the service's Ed25519 public key
// as that capability. The service then signs its own assertions
// (test/support/assertions.ts), each with a fresh jti: the server remembers
// every jti (src/throttling/replay-store.ts, table REPLAY_TABLE), so each
// assertion is sent once.
import { execFile } from "node:child_process";
import { createRequire } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { createTesseraClient, errorReason } from "@tessera/client";
import { IssueTokenRequest } from "@tessera/client";
import { VerifyTokenRequest } from "@tessera/client";
import { serviceKey, signAssertion, type ServiceKey } from "../test/support/assertions.ts";
import { ADMIN_PASSWORD } from "./server.ts";

export const REGISTRY_SELF = "https://id.bench.test/registry.json";
export const ISSUER = "https://id.bench.test";
/**
 * The receiver bare assertions are signed for: VerifyToken of an assertion must name it
 * (VerifyTokenRequest.audience; there is no default, and never this server's issuer, which is
 * token exchange's).
 */
export const AUDIENCE = "bench-receiver";
export const REGION = "bench-svc";
export const CAPABILITY = "bench-reader";
export const PERMISSION = "benchsvc.items.retrieve";
/** The longest assertion lifetime the server accepts by default (TESSERA_ASSERTION_MAX_LIFETIME 5m): the pre-signed list must outlive its load. */
export const ASSERTION_LIFETIME_SECONDS = 300;

/** The single-use record of the replay store (src/throttling/replay-record.entity.ts): one row per verified assertion. */
export const REPLAY_TABLE = "replay_records";

/** Environment for bench/server.ts startServer: the server's own registry and an issuer (exchanged assertions' audience). */
export const regionEnv = { TESSERA_REGISTRY_SELF: REGISTRY_SELF, TESSERA_ISSUER: ISSUER };

/** Publishes a fresh Ed25519 service key as capability CAPABILITY of region REGION (system tenant); returns the key. */
export async function publishServiceKey(grpcPort: number): Promise<ServiceKey> {
  const anonymous = createTesseraClient({ address: `127.0.0.1:${grpcPort}` });
  try {
    const login = await anonymous.issue.issueToken({ credential: { $case: "password", value: { tenant: "system", username: "admin", password: ADMIN_PASSWORD } } });
    const admin = anonymous.withToken(login.accessToken);
    await admin.permissions.registerMicroservice({ name: "benchsvc", version: "1.0.0", permissions: [{ codename: PERMISSION, description: "" }] });
    await admin.permissions.createGroup({ group: { name: CAPABILITY, permissions: [PERMISSION], default: false, autoGrantPatterns: [], description: "" } });
    await admin.registry.createRegion({ region: { id: REGION, alias: "Benchmark service", active: true } });
    const key = serviceKey("Ed25519");
    await admin.registry.publishCapability({ regionId: REGION, capability: CAPABILITY, publicKey: key.publicJwk, expireTime: new Date(Date.now() + 3600_000) });
    return key;
  } finally {
    anonymous.channel.close();
  }
}

/** `n` distinct assertions (fresh jti each) for `aud`, and how long signing them took. */
export function signAssertions(key: ServiceKey, n: number, aud: string): { assertions: string[]; signSeconds: number } {
  const started = performance.now();
  const assertions = new Array<string>(n);
  for (let i = 0; i < n; i++) {
    assertions[i] = signAssertion(key, { region: REGION, capability: CAPABILITY, registry: REGISTRY_SELF, aud, lifetimeSeconds: ASSERTION_LIFETIME_SECONDS });
  }
  return { assertions, signSeconds: (performance.now() - started) / 1000 };
}

/** IssueTokenRequest { service_assertion { assertion } } as protobuf, base64 (the generator's payload encoding). */
export const exchangeRequest = (assertion: string): string =>
  Buffer.from(IssueTokenRequest.encode({ credential: { $case: "serviceAssertion", value: { assertion } }, requestedPermissions: [], audience: "" }).finish()).toString("base64");

/**
 * Committed transactions of a throwaway database so far (pg_stat_database; a
 * backend reports its counts when idle, at most a second late, so wait first).
 * Around a load of single-use assertions, rows remembered / commits is the
 * replay store's batch size: its INSERTs are single statements, autocommitted.
 */
export async function commitCount(db: { query(sql: string): Promise<{ rows: { n: string }[] }> }): Promise<number> {
  await new Promise((r) => setTimeout(r, 1500));
  return Number((await db.query("select xact_commit::text as n from pg_stat_database where datname = current_database()")).rows[0]!.n);
}

/** VerifyTokenRequest { token, audience: AUDIENCE } as protobuf, base64. */
export const verifyRequest = (token: string): string => Buffer.from(VerifyTokenRequest.encode({ token, audience: AUDIENCE }).finish()).toString("base64");

/**
 * Rows of REPLAY_TABLE in a stopped server's embedded database (its data
 * dir): every assertion that verified, counted by the server. Opened in a
 * short-lived child process, so that PGlite's memory is not the bench's.
 */
export async function embeddedReplayCount(dataDir: string): Promise<number> {
  const script = `
const [url, dir, table] = process.argv.slice(1);
const m = await import(url);
const PGlite = m.PGlite ?? m.default.PGlite;
const db = await PGlite.create(dir);
const r = await db.query("select count(*)::int as n from " + table);
console.log(r.rows[0].n);
await db.close();`;
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ["--input-type=module", "-e", script, pathToFileURL(createRequire(import.meta.url).resolve("@electric-sql/pglite")).href, join(dataDir, "pg"), REPLAY_TABLE],
    { timeout: 120_000 },
  );
  return Number(stdout.trim());
}

/** Resolves with the ErrorInfo reason of the call's failure; throws if the call succeeded. */
export async function failureReason(call: Promise<unknown>): Promise<string> {
  try {
    await call;
  } catch (error) {
    return errorReason(error) ?? String(error);
  }
  throw new Error("the call succeeded but should have been refused");
}
