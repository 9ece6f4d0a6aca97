// A hostile client, run as a process of its own (process.execPath
// test/support/abuse-driver.ts) by test/integration/bounded-work.test.ts: for a
// bounded number of rounds, and never past a deadline, it sends every public
// RPC over-limit and near-limit inputs a few calls at a time, and prints one
// JSON line (DriverSummary) with what each case was answered.
//
// Environment:
//   DRIVER_TARGET       host:port of the gRPC listener (required)
//   DRIVER_TOKEN        a valid access token, for VerifyToken's audience cases (required)
//   DRIVER_OPEN_TENANT  a tenant that allows self-registration (required)
//   DRIVER_PASSWORD     the system admin's password, for the admin-login case (required)
//   DRIVER_ROUNDS       rounds of the over-limit cases (default 12)
//   DRIVER_NEAR_EVERY   near-limit cases in every n-th round only (default 8)
//   DRIVER_DEADLINE_MS  no call starts after this (default 20000)
//   DRIVER_CONCURRENCY  calls in flight (default 8)
//   DRIVER_ONLY         "over" or "near" to send only those cases (default: both)
//   DRIVER_DRIVE_MS, DRIVER_REST_MS  alternate driving and resting (nothing in
//                       flight) windows; REST_MS 0 (the default) drives throughout
// It writes "drive" on a line of its own when its channel is ready and the
// first call is about to go, then "rest" and "drive" as the windows change, so
// that the caller can tell which of its own measurements were under load.
import { createChannel, createClientFactory, Status, waitForChannelReady, type TsProtoServiceDefinition } from "nice-grpc";
import { BadRequest, ErrorInfo, errorDetailsClientMiddleware, RichClientError } from "nice-grpc-error-details";
import { IssueServiceDefinition } from "@tessera/client";
import { RefreshServiceDefinition } from "@tessera/client";
import { TenantServiceDefinition } from "@tessera/client";
import { UserServiceDefinition } from "@tessera/client";
import { VerifyServiceDefinition } from "@tessera/client";

export type Rpc = "IssueToken" | "Refresh" | "VerifyToken" | "RegisterUser" | "CreateTenant";

export interface CaseSummary {
  name: string;
  rpc: Rpc;
  kind: "over" | "near";
  /** Bytes of the encoded request. */
  requestBytes: number;
  calls: number;
  /** "<gRPC code> <ErrorInfo reason>" (or "OK") → answers. */
  outcomes: Record<string, number>;
  /** Answers that were INVALID_ARGUMENT without a google.rpc.BadRequest. */
  withoutBadRequest: number;
  minViolations: number;
  maxViolations: number;
  /** Every distinct "field: description" seen, with array indices kept. */
  violations: string[];
  /** Slowest answer, in ms. */
  maxMs: number;
}

export interface DriverSummary {
  rounds: number;
  nearEvery: number;
  roundsCompleted: number;
  deadlineHit: boolean;
  calls: number;
  elapsedMs: number;
  callsPerRpc: Record<string, number>;
  cases: CaseSummary[];
}

const env = (name: string, fallback?: string): string => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is required`);
  return value;
};
const target = env("DRIVER_TARGET");
const validToken = env("DRIVER_TOKEN");
const openTenant = env("DRIVER_OPEN_TENANT");
const adminPassword = env("DRIVER_PASSWORD");
const rounds = Number(env("DRIVER_ROUNDS", "12"));
const deadlineMs = Number(env("DRIVER_DEADLINE_MS", "20000"));
const concurrency = Number(env("DRIVER_CONCURRENCY", "8"));
/** Near-limit cases go in every this many rounds (they cost real work: argon2, database writes). */
const nearEvery = Number(env("DRIVER_NEAR_EVERY", "8"));
/** Drive for this long, then rest (nothing in flight) for restMs; restMs 0 drives throughout. */
const driveMs = Number(env("DRIVER_DRIVE_MS", "500"));
const restMs = Number(env("DRIVER_REST_MS", "0"));
/** "over", "near" or "" (both): which cases to send. */
const only = env("DRIVER_ONLY", "");
/** No call waits longer than this for its answer. */
const CALL_TIMEOUT_MS = 10_000;
const callOptions = () => ({ signal: AbortSignal.timeout(CALL_TIMEOUT_MS) });

/**
 * A ts-proto definition as a nice-grpc one whose request serializer encodes
 * each request object once: the hostile payloads are the same objects every
 * round, and re-encoding a 330 000-entry list each time would only burn the
 * driver's share of the two cores. The server still receives every byte of
 * every call. Request sizes are kept for the summary.
 */
const encodedSize = new WeakMap<object, number>();
function encodeOnce<D extends TsProtoServiceDefinition>(definition: D): D {
  const methods: Record<string, unknown> = {};
  for (const [key, method] of Object.entries(definition.methods)) {
    const cache = new WeakMap<object, Uint8Array>();
    const { requestType, responseType } = method;
    methods[key] = {
      path: `/${definition.fullName}/${method.name}`,
      requestStream: method.requestStream,
      responseStream: method.responseStream,
      requestSerialize(value: object): Uint8Array {
        let bytes = cache.get(value);
        if (!bytes) {
          bytes = requestType.encode(requestType.fromPartial ? requestType.fromPartial(value) : value).finish();
          cache.set(value, bytes);
          encodedSize.set(value, bytes.length);
        }
        return bytes;
      },
      requestDeserialize: (bytes: Uint8Array) => requestType.decode(bytes),
      responseSerialize: (value: unknown) => responseType.encode(value).finish(),
      responseDeserialize: (bytes: Uint8Array) => responseType.decode(bytes),
      options: method.options,
    };
  }
  // At run time a plain nice-grpc definition; the ts-proto type keeps the client typed.
  return methods as unknown as D;
}

const channel = createChannel(target);
const factory = createClientFactory().use(errorDetailsClientMiddleware);
const issue = factory.create(encodeOnce(IssueServiceDefinition), channel);
const refresh = factory.create(encodeOnce(RefreshServiceDefinition), channel);
const verify = factory.create(encodeOnce(VerifyServiceDefinition), channel);
const users = factory.create(encodeOnce(UserServiceDefinition), channel);
const tenants = factory.create(encodeOnce(TenantServiceDefinition), channel);

// ------------------------------------------------------------------ payloads
// The gRPC receive limit is 1 MiB; the big payloads stay just under it so that
// they reach Tessera's decoder instead of grpc-js's RESOURCE_EXHAUSTED.

/** U+FDFA is 3 bytes of UTF-8 and NFKC-expands to 18 characters. */
const FDFA = "\uFDFA";
const hugeFolding = FDFA.repeat(340_000); // 1 020 000 bytes, 6.1 M characters once folded
const hugeAscii = "a".repeat(1_000_000);
/** 330 000 one-character entries: 3 bytes each on the wire, ~990 kB. */
const hugeList = Array.from({ length: 330_000 }, () => "x");
const a = (n: number) => "a".repeat(n);
/** A valid permission pattern of exactly `n` characters, distinct per `i`. */
const pattern = (i: number, n: number) => `p${i}`.padEnd(n - 4, "a") + ".r.x";
const patterns = (count: number, chars: number) => Array.from({ length: count }, (_, i) => pattern(i, chars));
/** 201-character entries: each over the 200 limit, so 100 of them would be 100 violations. */
const tooLongPatterns = patterns(100, 201);
const atLimitPatterns = patterns(100, 200);
/** A valid e-mail address of exactly 254 characters (64-character local part). */
const email254 = (tag: string) => `${tag}`.padEnd(64, "e") + "@" + "d".repeat(185) + ".com";
/** A valid hostname of exactly 253 characters (HOSTNAME's maximum; the field allows 260). */
const hostname253 = (tag: string) => {
  const first = `${tag}`.padEnd(63, "h");
  return [first, "h".repeat(63), "h".repeat(63), "h".repeat(61)].join(".");
};
/** A password the policy accepts, of exactly 128 characters (the policy's maximum). */
const goodPassword = (tag: string) => `Tr0ub4dor&3-${tag}-`.padEnd(128, "xyzzy-plugh-");
const password = (tenant: string, username: string, pw: string) => ({ $case: "password" as const, value: { tenant, username, password: pw } });

interface Case {
  name: string;
  rpc: Rpc;
  kind: "over" | "near";
  /** The request of call `n` (a new one only where it must be unique: new users and tenants). */
  request(n: number): object;
  call(request: object): Promise<unknown>;
}

const cases: Case[] = [];
function add<R extends object>(rpc: Rpc, kind: Case["kind"], name: string, request: R | ((n: number) => R), call: (request: R) => Promise<unknown>): void {
  cases.push({ rpc, kind, name, request: typeof request === "function" ? request : () => request, call: call as Case["call"] });
}
type IssueRequest = Parameters<typeof issue.issueToken>[0];
type RefreshRequest = Parameters<typeof refresh.refresh>[0];
type VerifyRequest = Parameters<typeof verify.verifyToken>[0];
type RegisterRequest = Parameters<typeof users.registerUser>[0];
type CreateTenantRequest = Parameters<typeof tenants.createTenant>[0];
const issueCase = (kind: Case["kind"], name: string, r: IssueRequest) => add("IssueToken", kind, name, r, (x) => issue.issueToken(x, callOptions()));
const refreshCase = (kind: Case["kind"], name: string, r: RefreshRequest) => add("Refresh", kind, name, r, (x) => refresh.refresh(x, callOptions()));
const verifyCase = (kind: Case["kind"], name: string, r: VerifyRequest) => add("VerifyToken", kind, name, r, (x) => verify.verifyToken(x, callOptions()));
const registerCase = (kind: Case["kind"], name: string, r: RegisterRequest | ((n: number) => RegisterRequest)) => add("RegisterUser", kind, name, r, (x) => users.registerUser(x, callOptions()));
const tenantCase = (kind: Case["kind"], name: string, r: CreateTenantRequest | ((n: number) => CreateTenantRequest)) => add("CreateTenant", kind, name, r, (x) => tenants.createTenant(x, callOptions()));

// IssueToken: password.tenant ≤ 63, .username ≤ 254, .password ≤ 1024 characters;
// requested_permissions ≤ 100 entries of ≤ 200; audience ≤ 255.
const wrong = "whatever-password";
issueCase("over", "tenant: 1 MB of U+FDFA", { credential: password(hugeFolding, "admin", wrong) });
issueCase("over", "tenant: 4 × U+FDFA (72 characters once folded)", { credential: password(FDFA.repeat(4), "admin", wrong) });
issueCase("over", "username: 255 characters", { credential: password("system", a(255), wrong) });
issueCase("over", "password: 1025 characters", { credential: password("system", "admin", a(1025)) });
issueCase("over", "requested_permissions: 330 000 entries in 1 MB", { credential: password("system", "admin", wrong), requestedPermissions: hugeList });
issueCase("over", "requested_permissions: 101 entries", { credential: password("system", "admin", wrong), requestedPermissions: patterns(101, 20) });
issueCase("over", "requested_permissions: 100 entries of 201 characters", { credential: password("system", "admin", wrong), requestedPermissions: tooLongPatterns });
issueCase("over", "audience: 1 MB", { credential: password("system", "admin", wrong), audience: hugeAscii });
issueCase("over", "every field over", { credential: password(a(64), a(255), a(1025)), requestedPermissions: tooLongPatterns, audience: a(256) });
issueCase("near", "every field at its limit", { credential: password(a(63), a(254), a(1024)), requestedPermissions: atLimitPatterns, audience: a(255) });
issueCase("near", "tenant: 3 × U+FDFA (54 characters once folded)", { credential: password(FDFA.repeat(3), "admin", adminPassword) });
issueCase("near", "admin login electing 100 permissions of 200 characters", { credential: password("system", "admin", adminPassword), requestedPermissions: atLimitPatterns });

// Refresh: refresh_token ≤ 128; requested_permissions ≤ 100 entries of ≤ 200.
refreshCase("over", "refresh_token: 1 MB", { refreshToken: hugeAscii });
refreshCase("over", "refresh_token: 129 characters", { refreshToken: `tsr_${a(125)}` });
refreshCase("over", "requested_permissions: 330 000 entries in 1 MB", { refreshToken: `tsr_${a(43)}`, requestedPermissions: hugeList });
refreshCase("over", "requested_permissions: 100 entries of 201 characters", { refreshToken: `tsr_${a(43)}`, requestedPermissions: tooLongPatterns });
refreshCase("near", "every field at its limit", { refreshToken: `tsr_${a(124)}`, requestedPermissions: atLimitPatterns });

// VerifyToken: token ≤ 8192; audience ≤ 255.
verifyCase("over", "token: 1 MB", { token: hugeAscii });
verifyCase("over", "token: 8193 characters", { token: a(8193) });
verifyCase("over", "audience: 1 MB of U+FDFA", { token: validToken, audience: hugeFolding });
verifyCase("near", "token: 8192 characters", { token: a(8192) });
verifyCase("near", "valid token, audience: 255 characters", { token: validToken, audience: a(255) });

// RegisterUser: tenant ≤ 63, username ≤ 64, email ≤ 254, password and password_confirmation ≤ 1024.
const registration = { tenant: openTenant, username: "someone", email: "", password: "a-good-long-passphrase", passwordConfirmation: "a-good-long-passphrase" };
const longPassword = goodPassword("p").padEnd(1024, "0123456789");
registerCase("over", "tenant: 1 MB of U+FDFA", { ...registration, tenant: hugeFolding });
registerCase("over", "username: 65 characters", { ...registration, username: a(65) });
registerCase("over", "email: 1 MB", { ...registration, email: hugeAscii });
registerCase("over", "password and confirmation: 1025 characters", { ...registration, password: a(1025), passwordConfirmation: a(1025) });
registerCase("over", "every field over", { tenant: a(64), username: a(65), email: a(255), password: a(1025), passwordConfirmation: a(1025) });
registerCase("near", "every field at its limit (tenant unknown)", { tenant: a(63), username: a(64), email: email254("n1"), password: a(1024), passwordConfirmation: a(1024) });
registerCase("near", "username 64 and email 254 characters, joining the open tenant", (n) => {
  const tag = `r${process.pid}-${n}`;
  return { tenant: openTenant, username: tag.padEnd(64, "u"), email: email254(tag), password: goodPassword(tag), passwordConfirmation: goodPassword(tag) };
});
registerCase("near", "password and confirmation at the field limit of 1024 (the policy allows 128)", { ...registration, username: "long-password", password: longPassword, passwordConfirmation: longPassword });

// CreateTenant (anonymous, open signup): tenant.name ≤ 63, .display_name ≤ 200,
// .domains ≤ 100 entries of ≤ 260; admin.username ≤ 64, .email ≤ 254, .password ≤ 1024.
const tenant = { name: "abuse", displayName: "", domains: [] as string[], disabled: false, selfRegistrationEnabled: false };
const longDomains = Array.from({ length: 100 }, (_, i) => `d${i}.`.padEnd(261, "h"));
tenantCase("over", "tenant.name: 1 MB of U+FDFA", { tenant: { ...tenant, name: hugeFolding } });
tenantCase("over", "tenant.display_name: 201 characters", { tenant: { ...tenant, displayName: a(201) } });
tenantCase("over", "tenant.domains: 330 000 entries in 1 MB", { tenant: { ...tenant, domains: hugeList } });
tenantCase("over", "tenant.domains: 100 entries of 261 characters", { tenant: { ...tenant, domains: longDomains } });
tenantCase("over", "admin.password: 1 MB", { tenant, admin: { username: "root", email: "", password: hugeAscii } });
tenantCase("over", "every field over", {
  tenant: { ...tenant, id: a(37), name: a(64), displayName: a(201), domains: longDomains },
  admin: { username: a(65), email: a(255), password: a(1025) },
});
tenantCase("near", "every field at its limit (domains at the hostname maximum of 253), with an admin", (n) => {
  const tag = `t${process.pid}-${n}`;
  return {
    tenant: { ...tenant, name: tag.padEnd(63, "t"), displayName: a(200), domains: Array.from({ length: 100 }, (_, i) => hostname253(`${tag}-${i}`)) },
    admin: { username: a(64), email: email254(tag), password: goodPassword(tag) },
  };
});
tenantCase("near", "admin.password at the field limit of 1024 (the policy allows 128)", { tenant, admin: { username: "root", email: "", password: longPassword } });

// --------------------------------------------------------------------- loop

const summaries = new Map<Case, CaseSummary>();
for (const c of cases) {
  summaries.set(c, { name: c.name, rpc: c.rpc, kind: c.kind, requestBytes: 0, calls: 0, outcomes: {}, withoutBadRequest: 0, minViolations: Infinity, maxViolations: 0, violations: [], maxMs: 0 });
}

function record(c: Case, error: unknown, ms: number): void {
  const s = summaries.get(c)!;
  s.calls++;
  s.maxMs = Math.max(s.maxMs, Math.round(ms));
  let key = "OK";
  let count = 0;
  if (error instanceof RichClientError) {
    const info = error.extra.find((d): d is ErrorInfo => d.$type === ErrorInfo.$type);
    const bad = error.extra.find((d): d is BadRequest => d.$type === BadRequest.$type);
    key = `${Status[error.code]} ${info?.reason ?? "-"}`;
    count = bad?.fieldViolations.length ?? 0;
    if (error.code === Status.INVALID_ARGUMENT && !bad) s.withoutBadRequest++;
    for (const v of bad?.fieldViolations ?? []) {
      const text = `${v.field}: ${v.description}`;
      if (!s.violations.includes(text) && s.violations.length < 200) s.violations.push(text);
    }
  } else if (error) {
    const code = (error as { code?: number }).code;
    key = `${code === undefined ? "NO_STATUS" : Status[code]} ${(error as Error).message ?? ""}`.slice(0, 200);
  }
  s.outcomes[key] = (s.outcomes[key] ?? 0) + 1;
  s.minViolations = Math.min(s.minViolations, count);
  s.maxViolations = Math.max(s.maxViolations, count);
}

const jobs: { c: Case; n: number }[] = [];
for (let round = 0; round < rounds; round++) {
  for (const c of cases) {
    if (only && c.kind !== only) continue;
    if (c.kind === "near" && round % nearEvery !== 0) continue;
    jobs.push({ c, n: round });
  }
}

await waitForChannelReady(channel, new Date(Date.now() + 10_000));
const started = performance.now();
let next = 0;
let inFlight = 0;
let deadlineHit = false;
let lastRound = -1;
/** While resting, workers wait on this; it resolves when driving resumes. */
let resting: Promise<void> | undefined;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const done = () => next >= jobs.length || deadlineHit;

async function worker(): Promise<void> {
  while (true) {
    while (resting) await resting;
    if (next >= jobs.length) return;
    if (performance.now() - started > deadlineMs) {
      deadlineHit = true;
      return;
    }
    const job = jobs[next++]!;
    const request = job.c.request(job.n);
    inFlight++;
    const t0 = performance.now();
    const error = await job.c.call(request).then(
      () => undefined,
      (e: unknown) => e ?? new Error("rejected without a reason"),
    );
    inFlight--;
    record(job.c, error, performance.now() - t0);
    summaries.get(job.c)!.requestBytes = encodedSize.get(request) ?? 0;
    lastRound = Math.max(lastRound, job.n);
  }
}

/**
 * Alternates driving for driveMs with resting for restMs (no call in flight:
 * the rest starts once every answer is in), announcing each on stdout as
 * "drive" or "rest", so that the caller can compare a probe's latency under
 * load with its latency in the same minutes without it.
 */
async function pace(): Promise<void> {
  process.stdout.write("drive\n");
  if (!restMs) return;
  while (!done()) {
    const until = performance.now() + driveMs;
    while (!done() && performance.now() < until) await sleep(5);
    if (done()) return;
    let resume!: () => void;
    resting = new Promise<void>((r) => (resume = r));
    while (inFlight > 0) await sleep(1);
    process.stdout.write("rest\n");
    await sleep(restMs);
    process.stdout.write("drive\n");
    resting = undefined;
    resume();
  }
}

await Promise.all([pace(), ...Array.from({ length: concurrency }, worker)]);
const elapsedMs = Math.round(performance.now() - started);
channel.close();

const callsPerRpc: Record<string, number> = {};
for (const s of summaries.values()) callsPerRpc[s.rpc] = (callsPerRpc[s.rpc] ?? 0) + s.calls;
const summary: DriverSummary = {
  rounds,
  nearEvery,
  roundsCompleted: deadlineHit ? lastRound : rounds,
  deadlineHit,
  calls: [...summaries.values()].reduce((sum, s) => sum + s.calls, 0),
  elapsedMs,
  callsPerRpc,
  cases: [...cases].map((c) => {
    const s = summaries.get(c)!;
    return { ...s, minViolations: s.calls ? s.minViolations : 0 };
  }),
};
process.stdout.write(`${JSON.stringify(summary)}\n`);
