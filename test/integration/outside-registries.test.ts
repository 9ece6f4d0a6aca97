// Outside registries (Region System) end to end, between two real Tesseras:
// A publishes regions and capabilities; B verifies service assertions whose
// keys it looks up in A's registry, served three ways — A's signed document
// over a real HTTPS server (a test CA's certificate, trusted through
// TESSERA_REGISTRY_CA_FILE), A's DNS zone from a real dnsmasq
// (TESSERA_REGISTRY_DNS_SERVERS), and the document as a local store (a file,
// an environment variable) — each pinned to A's authority key in B's
// TESSERA_REGISTRIES. B's cache is short (CACHE_TTL_MS) so that tests can
// wait for refetches. DNS parts are skipped when dnsmasq is not installed;
// the second-replica replay test needs PostgreSQL (TEST_DATABASE_URL). The
// last describe holds tests of defects found in src/registry: they fail
// until those are fixed.
import { createPublicKey, generateKeyPairSync, randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpsServer } from "node:https";
import { createServer as createTcpServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Status } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PrincipalKind } from "@tessera/client";
import type { Capability } from "@tessera/client";
import { serviceKey, signAssertion, type AssertionInput, type ServiceKey } from "../support/assertions.ts";
import { dnsmasqPath, startDnsmasq, type TestDnsmasq } from "../support/dnsmasq.ts";
import { expectFailure } from "../support/errors.ts";
import { startTestServer, type TestServer } from "../support/server.ts";
import { createTestCa } from "../support/test-ca.ts";
import { decodePart, signEd25519 } from "../support/tokens.ts";

const DNSMASQ = dnsmasqPath();
const NO_DNS = "skipped: dnsmasq is not installed";

const CAP = "billing-reader";
const AUD = "orders-api";
const ISSUER_B = "https://verifier-b.tessera.test";
const DNS_HOST = "registry-1.tessera.test";
const LOCAL_FILE = "local:partner-file";
const LOCAL_ENV = "local:partner-env";
const CACHE_TTL_MS = 2000;
const COOLDOWN_MS = 300;
const PERM_A = "orders.invoices.read"; // B's partner-a group of the capability's name
const PERM_LOCAL = "orders.invoices.create"; // B's partner-local group of the capability's name

const MAIN = "/reg/registry.json?v=1";
const ROTATION = "/reg/rotation.json";
/** Allow-listed with `source_tenant: "system"`: only A's system tenant's regions. */
const SOURCE_ONLY = "/reg/system-only.json";
const WRONG_PIN = "/reg/wrong-pin.json";
const FORGED = "/forged/registry.json";
const EXPIRING = "/reg/expiring.json";
const UNSERVED = "/reg/unserved.json"; // allow-listed, never served (404)

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const inAnHour = () => new Date(Date.now() + 3600_000);

// ---- a static HTTPS server and a TCP black hole -------------------------------

interface StaticHttps {
  origin: string;
  /** Serves `body` at exactly `pathAndQuery` (anything else: 404). */
  serve(pathAndQuery: string, body: string): void;
  /** How many requests came for exactly `pathAndQuery`. */
  requests(pathAndQuery: string): number;
  stop(): Promise<void>;
}

async function startStaticHttps(tls: { certPem: string; keyPem: string }): Promise<StaticHttps> {
  const bodies = new Map<string, string>();
  const counts = new Map<string, number>();
  const server = createHttpsServer({ cert: tls.certPem, key: tls.keyPem }, (req, res) => {
    const url = req.url ?? "";
    counts.set(url, (counts.get(url) ?? 0) + 1);
    const body = bodies.get(url);
    if (body === undefined) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) }).end(body);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as { port: number };
  let stopped = false;
  return {
    origin: `https://127.0.0.1:${port}`,
    serve: (path, body) => void bodies.set(path, body),
    requests: (path) => counts.get(path) ?? 0,
    async stop() {
      if (stopped) return;
      stopped = true;
      const closed = new Promise((resolve) => server.close(resolve));
      server.closeAllConnections(); // B's keep-alive connections too: the next fetch is refused
      await closed;
    },
  };
}

/** Accepts TCP connections and never answers (not even the TLS handshake). */
async function startBlackHole(): Promise<{ port: number; stop(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createTcpServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    port: (server.address() as { port: number }).port,
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

// ---- the servers ------------------------------------------------------------------

let a: TestServer;
let aAdmin: TestServer["clients"];
let b: TestServer;
let bAdmin: TestServer["clients"];
let envB: Record<string, string>;
let https: StaticHttps;
let outage: StaticHttps;
let blackHole: Awaited<ReturnType<typeof startBlackHole>>;
let dns: TestDnsmasq | undefined;
let dir: string;
let documentFile: string;
let authorityJwk: Record<string, string>;
let outageWarmup: string | undefined;
let outageWarmedAt = 0;
let adminUserIdOnA: string;

const url = (path: string) => `${https.origin}${path}`;
let OUTAGE_URL: string;
let BLACK_HOLE_URL: string;

/** Keys of the capabilities published on A in beforeAll, and what A answered. */
const keys = { ed: serviceKey("Ed25519"), p521: serviceKey("P-521"), revoke: serviceKey("Ed25519"), inactive: serviceKey("P-256") };
const published: Record<string, Capability> = {};

async function documentOfA(): Promise<string> {
  const doc = await a.clients.registry.getRegistryDocument({});
  return JSON.stringify({ regions: doc.regions, capabilities: doc.capabilities });
}

/**
 * A's exported zone, as dnsmasq's records: read from the zone-file text itself (dnsmasq reads no
 * master files), so what a DNS server is given is exactly what ExportDnsZone printed; the structured
 * records must say the same.
 */
async function zoneOfA(): Promise<{ name: string; values: string[] }[]> {
  const zone = await aAdmin.registry.exportDnsZone({ host: DNS_HOST });
  const fromFile = zone.zoneFile
    .split("\n")
    .filter((line) => line && !line.startsWith("$"))
    .map((line) => {
      const m = /^(\S+)\.\s+\d+\s+IN\s+TXT\s+(.*)$/.exec(line);
      if (!m) throw new Error(`not a TXT record line: ${line}`);
      return { name: m[1]!, values: [...m[2]!.matchAll(/"([^"]*)"/g)].map((q) => q[1]!) };
    });
  expect(fromFile).toEqual(zone.records.map((r) => ({ name: r.name, values: r.values })));
  expect(zone.zoneFile.startsWith(`$ORIGIN ${DNS_HOST}.\n`)).toBe(true);
  return fromFile;
}

/** Serves A's current registry on every channel B reads (HTTPS main route, DNS, the local-store file). */
async function republishA(): Promise<void> {
  const doc = await documentOfA();
  https.serve(MAIN, doc);
  writeFileSync(documentFile, doc);
  if (dns) {
    const records = await zoneOfA();
    const port = dns.port;
    await dns.stop();
    dns = await startDnsmasq(records, { port });
  }
}

async function createRegionOnA(id: string, alias: string): Promise<void> {
  await aAdmin.registry.createRegion({ region: { id, alias, active: true } });
}

async function publishOnA(regionId: string, key: ServiceKey, expireTime = inAnHour(), asPem = false): Promise<Capability> {
  const res = await aAdmin.registry.publishCapability({ regionId, capability: CAP, publicKey: asPem ? key.publicPem : key.publicJwk, expireTime });
  return res.capability!;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "tessera-outside-registries-"));
  const ca = createTestCa(["127.0.0.1", "localhost"]);
  writeFileSync(join(dir, "ca.pem"), ca.caPem);
  [a, https, outage, blackHole] = await Promise.all([startTestServer(), startStaticHttps(ca), startStaticHttps(ca), startBlackHole()]);
  OUTAGE_URL = `${outage.origin}/registry.json`;
  BLACK_HOLE_URL = `https://127.0.0.1:${blackHole.port}/registry.json`;
  aAdmin = a.as(a.adminToken);

  // A: regions, a group (A's own: its permissions mean nothing to B), capabilities of several key kinds.
  await aAdmin.permissions.registerMicroservice({ name: "ledger", version: "1.0.0", permissions: [{ codename: "ledger.entries.read", description: "" }] });
  await aAdmin.permissions.createGroup({ group: { name: CAP, permissions: ["ledger.entries.read"], description: "" } });
  await createRegionOnA("svc-billing-1", "Billing service");
  await createRegionOnA("svc-report-2", "Report service");
  await createRegionOnA("svc-revoke-3", "");
  await createRegionOnA("svc-inactive-4", "");
  published.ed = await publishOnA("svc-billing-1", keys.ed);
  published.p521 = await publishOnA("svc-report-2", keys.p521, inAnHour(), true);
  published.revoke = await publishOnA("svc-revoke-3", keys.revoke);
  published.inactive = await publishOnA("svc-inactive-4", keys.inactive);
  expect(published.p521.algorithm).toBe("ES512");
  // What B must not take from A: a capability B's allow-list does not map, a user's own key (A's admin,
  // for A's administrators group), and a region of another of A's tenants.
  await aAdmin.registry.publishCapability({ regionId: "svc-billing-1", capability: "unmapped-cap", publicKey: keys.ed.publicJwk, expireTime: inAnHour() });
  adminUserIdOnA = (await aAdmin.users.getMe({})).user!.id;
  await aAdmin.registry.publishCapability({ regionId: "", capability: "administrators", publicKey: keys.ed.publicJwk, expireTime: inAnHour() });
  const other = await aAdmin.tenants.createTenant({ tenant: { name: "other-a" } });
  await aAdmin.registry.createRegion({ tenantId: other.tenant!.id, region: { id: "svc-other-5", alias: "", active: true } });
  await aAdmin.registry.publishCapability({ tenantId: other.tenant!.id, regionId: "svc-other-5", capability: CAP, publicKey: keys.ed.publicJwk, expireTime: inAnHour() });

  const document = await a.clients.registry.getRegistryDocument({});
  authorityJwk = JSON.parse(document.authorityPublicKeyJwk) as Record<string, string>;
  const doc = JSON.stringify({ regions: document.regions, capabilities: document.capabilities });
  documentFile = join(dir, "partner-registry.json");
  writeFileSync(documentFile, doc);
  for (const path of [MAIN, ROTATION, WRONG_PIN, SOURCE_ONLY]) https.serve(path, doc);
  outage.serve("/registry.json", doc);
  if (DNSMASQ) dns = await startDnsmasq(await zoneOfA());

  const otherAuthority = generateKeyPairSync("ed25519").publicKey.export({ format: "jwk" });
  const authorityPem = createPublicKey({ key: authorityJwk, format: "jwk" }).export({ type: "spki", format: "pem" }).toString();
  // Permissions only through the explicit capability → group map (a registry is shared by many publishers).
  const entry = (registry: string, more: Record<string, unknown> = {}) => ({ registry, authority_keys: [authorityJwk], tenant: "partner-a", capabilities: { [CAP]: CAP }, ...more });
  envB = {
    TESSERA_ISSUER: ISSUER_B,
    TESSERA_REGISTRIES: JSON.stringify([
      entry(url(MAIN)),
      entry(url(ROTATION)),
      entry(url(SOURCE_ONLY), { source_tenant: "system" }),
      entry(url(FORGED)),
      entry(url(EXPIRING)),
      entry(url(UNSERVED)),
      entry(url(WRONG_PIN), { authority_keys: [otherAuthority] }),
      entry(OUTAGE_URL),
      entry(BLACK_HOLE_URL),
      // Two pinned keys (as before an authority rotation): either verifies.
      entry(DNS_HOST, { authority_keys: [otherAuthority, authorityJwk] }),
      entry(LOCAL_FILE, { tenant: "partner-local", document_file: documentFile, authority_keys: [authorityPem] }),
      entry(LOCAL_ENV, { tenant: "partner-local", document_env: "PARTNER_REGISTRY_DOCUMENT" }),
      entry("local:partner-missing", { tenant: "partner-missing", document_env: "PARTNER_REGISTRY_DOCUMENT" }),
      entry("local:partner-disabled", { tenant: "partner-disabled", document_env: "PARTNER_REGISTRY_DOCUMENT" }),
    ]),
    PARTNER_REGISTRY_DOCUMENT: doc,
    TESSERA_REGISTRY_CA_FILE: join(dir, "ca.pem"),
    ...(dns ? { TESSERA_REGISTRY_DNS_SERVERS: dns.server } : {}),
    TESSERA_REGISTRY_CACHE_TTL: `${CACHE_TTL_MS / 1000}s`,
    TESSERA_REGISTRY_REFETCH_COOLDOWN: `${COOLDOWN_MS}ms`,
    TESSERA_REMOTE_CONNECT_TIMEOUT: "1s",
    TESSERA_REMOTE_TIMEOUT: "2s",
  };
  b = await startTestServer(envB);
  bAdmin = b.as(b.adminToken);

  // B: the tenants the registries' services belong to, each with a group named after the capability.
  await bAdmin.permissions.registerMicroservice({ name: "orders", version: "1.0.0", permissions: [{ codename: PERM_A, description: "" }, { codename: PERM_LOCAL, description: "" }] });
  for (const [name, permission] of [["partner-a", PERM_A], ["partner-local", PERM_LOCAL]] as const) {
    const { tenant } = await bAdmin.tenants.createTenant({ tenant: { name } });
    await bAdmin.permissions.createGroup({ tenantId: tenant!.id, group: { name: CAP, permissions: [permission], description: "" } });
  }
  await bAdmin.tenants.createTenant({ tenant: { name: "partner-disabled", disabled: true } });

  // The outage test's registry, verified once now: by the time that test stops it, B's cache of it is over.
  outageWarmup = await verify(assertion(keys.ed, "svc-billing-1", OUTAGE_URL)).then((res) => res.principal?.subject, (error: unknown) => String(error));
  outageWarmedAt = Date.now();
}, 60_000);

afterAll(async () => {
  await Promise.all([b?.close(), a?.close(), https?.stop(), outage?.stop(), blackHole?.stop(), dns?.stop()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// ---- helpers ----------------------------------------------------------------------

const assertion = (key: ServiceKey, region: string, registry: string, overrides: Partial<AssertionInput> = {}) =>
  signAssertion(key, { region, capability: CAP, registry, aud: AUD, ...overrides });
const verify = (token: string, audience = AUD) => b.clients.verify.verifyToken({ token, audience });
const exchange = (token: string, server = b) =>
  server.clients.issue.issueToken({ credential: { $case: "serviceAssertion", value: { assertion: token } }, requestedPermissions: [], audience: "" });
const lookup = (registry: string, regionId: string, capability = CAP) =>
  bAdmin.registry.lookupCapability({
    registry: {
      kind: registry.startsWith("https://")
        ? { $case: "httpsUrl", value: registry }
        : registry.startsWith("local:")
          ? { $case: "localStore", value: registry.slice("local:".length) }
          : { $case: "dnsHost", value: registry },
    },
    regionId,
    capability,
  });
const refused = (reason: string, code = Status.UNAUTHENTICATED) => ({ code, reason });

interface Via {
  name: string;
  registry: () => string;
  tenant: string;
  permission: string;
  dns?: boolean;
}
const VIAS: Via[] = [
  { name: "HTTPS", registry: () => url(MAIN), tenant: "partner-a", permission: PERM_A },
  { name: "DNS", registry: () => DNS_HOST, tenant: "partner-a", permission: PERM_A, dns: true },
  { name: "local store (file)", registry: () => LOCAL_FILE, tenant: "partner-local", permission: PERM_LOCAL },
  { name: "local store (environment variable)", registry: () => LOCAL_ENV, tenant: "partner-local", permission: PERM_LOCAL },
];
const KEYS = [
  { kind: "Ed25519 (EdDSA)", region: "svc-billing-1", key: () => keys.ed },
  { kind: "P-521 (ES512)", region: "svc-report-2", key: () => keys.p521 },
];

// ---- tests ------------------------------------------------------------------------

describe("service assertions verified through an outside registry", () => {
  describe.each(VIAS)("through $name", (via) => {
    it.skipIf(via.dns && !DNSMASQ).each(KEYS)(`$kind: VerifyToken, then IssueToken and VerifyToken of the exchanged token${via.dns && !DNSMASQ ? ` (${NO_DNS})` : ""}`, async ({ region, key }) => {
      const registry = via.registry();
      const { principal } = await verify(assertion(key(), region, registry));
      expect(principal).toMatchObject({
        kind: PrincipalKind.PRINCIPAL_KIND_SERVICE,
        subject: region,
        tenantName: via.tenant,
        sessionId: "",
        username: "",
        upn: `${region}@${via.tenant}`,
        permissions: [via.permission], // B's group, not A's ledger.entries.read
        audience: [AUD],
      });
      expect(principal?.region).toMatchObject({ id: region, capability: CAP, registry });

      const issued = await exchange(assertion(key(), region, registry, { aud: ISSUER_B }));
      expect(issued).toMatchObject({ refreshToken: "", principalKind: PrincipalKind.PRINCIPAL_KIND_SERVICE, grantedPermissions: [via.permission] });
      expect(issued.sessionId).toMatch(/^[0-9a-f-]{36}$/);
      expect(decodePart(issued.accessToken, 1)).toMatchObject({ sub: region, knd: "service", regionmeta: { id: region, capability: CAP, registry } });
      const exchanged = (await b.clients.verify.verifyToken({ token: issued.accessToken, audience: "" })).principal;
      expect(exchanged).toMatchObject({ kind: PrincipalKind.PRINCIPAL_KIND_SERVICE, subject: region, tenantName: via.tenant, sessionId: issued.sessionId, permissions: [via.permission] });
      expect(exchanged?.region).toMatchObject({ id: region, capability: CAP, registry });

      if (via.dns) expect(dns!.log()).toContain(`query[TXT] ${CAP}.capability.${region}.${DNS_HOST}`);
      if (registry === url(MAIN)) expect(https.requests(MAIN)).toBeGreaterThan(0);
    });
  });

  it("an exchanged token's audience must be B's issuer", async () => {
    await expectFailure(exchange(assertion(keys.ed, "svc-billing-1", url(MAIN))), refused("TOKEN_INVALID"));
  });
});

describe("the allow-list", () => {
  it("refuses registries not on it, by exact name (an extra query parameter, another spelling of the URL or host), before fetching anything", async () => {
    const names = [
      url(`${MAIN}&x=1`),
      url("/reg/registry.json?v=2"),
      url("/reg/registry.json"),
      url(MAIN).replace("127.0.0.1", "localhost"),
      `${url(MAIN)}#top`,
      "https://registry.evil.test/registry.json",
      DNS_HOST.toUpperCase(),
      `${DNS_HOST}.`,
      "registry-2.tessera.test",
      "local:partner-other",
    ];
    for (const registry of names) {
      await expectFailure(verify(assertion(keys.ed, "svc-billing-1", registry)), refused("REGISTRY_NOT_ALLOWED"));
      await expectFailure(exchange(assertion(keys.ed, "svc-billing-1", registry, { aud: ISSUER_B })), refused("REGISTRY_NOT_ALLOWED"));
    }
    await expectFailure(lookup(url(`${MAIN}&x=1`), "svc-billing-1"), refused("REGISTRY_NOT_ALLOWED"));
    await expectFailure(lookup("local:partner-other", "svc-billing-1"), refused("REGISTRY_NOT_ALLOWED"));
    expect(https.requests(`${MAIN}&x=1`)).toBe(0);
    expect(https.requests("/reg/registry.json?v=2")).toBe(0);
    expect(https.requests("/reg/registry.json")).toBe(0);
  });
});

describe("the tenant a registry's services belong to", () => {
  it("must exist (TENANT_NOT_FOUND) and be enabled (TENANT_DISABLED); the jti is not used up", async () => {
    const missing = assertion(keys.ed, "svc-billing-1", "local:partner-missing");
    await expectFailure(verify(missing), refused("TENANT_NOT_FOUND"));
    const disabled = assertion(keys.ed, "svc-billing-1", "local:partner-disabled");
    await expectFailure(verify(disabled), refused("TENANT_DISABLED"));
    await expectFailure(exchange(assertion(keys.ed, "svc-billing-1", "local:partner-disabled", { aud: ISSUER_B })), refused("TENANT_DISABLED"));
    const { tenant } = await bAdmin.tenants.getTenant({ name: "partner-disabled" });
    await bAdmin.tenants.updateTenant({ tenant: { id: tenant!.id, disabled: false }, updateMask: ["disabled"] });
    try {
      expect((await verify(disabled)).principal).toMatchObject({ subject: "svc-billing-1", tenantName: "partner-disabled", permissions: [] }); // no group of that name there
    } finally {
      await bAdmin.tenants.updateTenant({ tenant: { id: tenant!.id, disabled: true }, updateMask: ["disabled"] });
    }
  });
});

describe("the registry authority's signature", () => {
  it("refuses records of a registry pinned to another authority key", async () => {
    await expectFailure(verify(assertion(keys.ed, "svc-billing-1", url(WRONG_PIN))), refused("TOKEN_INVALID"));
    await expectFailure(exchange(assertion(keys.ed, "svc-billing-1", url(WRONG_PIN), { aud: ISSUER_B })), refused("TOKEN_INVALID"));
    await expectFailure(lookup(url(WRONG_PIN), "svc-billing-1"), refused("TOKEN_INVALID"));
    expect(https.requests(WRONG_PIN)).toBeGreaterThan(0); // fetched, and refused for its signature
  });

  it("refuses a document re-signed by another authority (with an attacker's key), and remembers neither its records nor the refused jti", async () => {
    const genuine = JSON.parse(await documentOfA()) as { regions: string[]; capabilities: string[] };
    const forger = generateKeyPairSync("ed25519").privateKey;
    const attacker = serviceKey("Ed25519");
    const resign = (jwt: string, change: (claims: Record<string, unknown>) => Record<string, unknown> = (c) => c) =>
      signEd25519(decodePart(jwt, 0), change(decodePart(jwt, 1)), forger);
    https.serve(
      FORGED,
      JSON.stringify({
        regions: genuine.regions.map((jwt) => resign(jwt)),
        capabilities: genuine.capabilities.map((jwt) =>
          resign(jwt, (c) => (c.region_id === "svc-billing-1" && c.capability === CAP ? { ...c, publickey: JSON.parse(attacker.publicJwk) } : c)),
        ),
      }),
    );
    const attackers = assertion(attacker, "svc-billing-1", url(FORGED));
    const honest = assertion(keys.ed, "svc-billing-1", url(FORGED));
    await expectFailure(verify(attackers), refused("TOKEN_INVALID"));
    await expectFailure(verify(honest), refused("TOKEN_INVALID"));
    await expectFailure(lookup(url(FORGED), "svc-billing-1"), refused("TOKEN_INVALID"));

    // The genuine document at the same URL, once B's cache of the forged one is over.
    https.serve(FORGED, JSON.stringify(genuine));
    await sleep(CACHE_TTL_MS + 300);
    const { principal } = await verify(honest); // the same jti: it was not remembered when refused
    expect(principal).toMatchObject({ subject: "svc-billing-1", tenantName: "partner-a" });
    await expectFailure(verify(honest), refused("ASSERTION_REPLAYED"));
    await expectFailure(verify(assertion(attacker, "svc-billing-1", url(FORGED))), refused("TOKEN_INVALID"));
  });
});

describe("assertions themselves", () => {
  it("refuses an expired regionmeta.expires or exp, a tampered assertion, a wrong audience or key, an unknown capability; nothing refused is remembered", async () => {
    const now = Math.floor(Date.now() / 1000);
    const registry = url(MAIN);
    const good = assertion(keys.ed, "svc-billing-1", registry, { data: { role: "reader" } });
    await expectFailure(verify(assertion(keys.ed, "svc-billing-1", registry, { expires: now - 1 })), refused("TOKEN_EXPIRED"));
    await expectFailure(exchange(assertion(keys.ed, "svc-billing-1", registry, { expires: now - 1, aud: ISSUER_B })), refused("TOKEN_EXPIRED"));
    await expectFailure(verify(assertion(keys.ed, "svc-billing-1", registry, { iat: now - 120, lifetimeSeconds: 60 })), refused("TOKEN_EXPIRED"));
    await expectFailure(verify(assertion(keys.ed, "svc-billing-1", registry, { lifetimeSeconds: 3600 })), refused("TOKEN_INVALID"));
    await expectFailure(verify(assertion(keys.ed, "svc-billing-1", registry, { iat: now + 120 })), refused("TOKEN_INVALID"));
    await expectFailure(verify(good, "someone-else"), refused("TOKEN_INVALID"));
    await expectFailure(verify(assertion(keys.ed, "svc-billing-1", registry, { aud: "someone-else" })), refused("TOKEN_INVALID"));
    // Another key than the published one (also one published for another region).
    await expectFailure(verify(assertion(serviceKey("Ed25519"), "svc-billing-1", registry)), refused("TOKEN_INVALID"));
    await expectFailure(verify(assertion(keys.p521, "svc-billing-1", registry)), refused("TOKEN_INVALID"));
    // Tampered: claims changed under the same signature; the signature altered; the algorithm header changed.
    const [h, p, s] = good.split(".") as [string, string, string];
    const claims = decodePart(good, 1);
    const b64 = (v: object) => Buffer.from(JSON.stringify(v)).toString("base64url");
    await expectFailure(verify(`${h}.${b64({ ...claims, data: { role: "admin" } })}.${s}`), refused("TOKEN_INVALID"));
    await expectFailure(verify(`${h}.${b64({ ...claims, regionmeta: { ...(claims.regionmeta as object), id: "svc-report-2" } })}.${s}`), refused("TOKEN_INVALID"));
    await expectFailure(verify(`${h}.${p}.${s.slice(0, -4)}${s.slice(-4) === "AAAA" ? "BBBB" : "AAAA"}`), refused("TOKEN_INVALID"));
    await expectFailure(verify(`${b64({ alg: "ES512", typ: "JWT" })}.${p}.${s}`), refused("TOKEN_INVALID"));
    await expectFailure(verify(`${b64({ alg: "none", typ: "JWT" })}.${p}.`), refused("TOKEN_INVALID"));
    // Not in the registry: a capability it does not have, a region it does not have.
    await expectFailure(verify(assertion(keys.ed, "svc-billing-1", registry, { capability: "billing-writer" })), refused("INVALID_CREDENTIALS"));
    await expectFailure(verify(assertion(keys.ed, "svc-unknown-9", registry)), refused("INVALID_CREDENTIALS"));
    if (DNSMASQ) await expectFailure(verify(assertion(keys.ed, "svc-unknown-9", DNS_HOST)), refused("INVALID_CREDENTIALS"));
    // The untampered assertion still verifies, once.
    expect((await verify(good)).principal?.subject).toBe("svc-billing-1");
    await expectFailure(verify(good), refused("ASSERTION_REPLAYED"));
  });

  for (const via of [
    { name: "HTTPS", registry: () => url(MAIN), dns: false },
    { name: "DNS", registry: () => DNS_HOST, dns: true },
    { name: "a local store", registry: () => LOCAL_FILE, dns: false },
  ]) {
    it.skipIf(via.dns && !DNSMASQ)(`refuses a replayed jti through ${via.name}: VerifyToken or IssueToken, then either again${via.dns && !DNSMASQ ? ` (${NO_DNS})` : ""}`, async () => {
      // One jti, signed once for a receiver and once for exchange: used once, whichever comes first.
      const pair = () => {
        const jti = randomBytes(12).toString("base64url");
        return [assertion(keys.p521, "svc-report-2", via.registry(), { jti }), assertion(keys.p521, "svc-report-2", via.registry(), { jti, aud: ISSUER_B })] as const;
      };
      const [forReceiver, forExchange] = pair();
      await verify(forReceiver);
      await expectFailure(verify(forReceiver), refused("ASSERTION_REPLAYED"));
      await expectFailure(exchange(forExchange), refused("ASSERTION_REPLAYED"));
      const [laterReceiver, laterExchange] = pair();
      await exchange(laterExchange);
      await expectFailure(exchange(laterExchange), refused("ASSERTION_REPLAYED"));
      await expectFailure(verify(laterReceiver), refused("ASSERTION_REPLAYED"));
    });
  }
});

describe.skipIf(!process.env.TEST_DATABASE_URL)("a second replica sharing B's database (needs PostgreSQL: set TEST_DATABASE_URL)", () => {
  let b2: TestServer;
  beforeAll(async () => {
    b2 = await startTestServer(envB, { replicaOf: b });
  }, 60_000);
  afterAll(async () => {
    await b2?.close(); // before B, whose database it is
  });

  it("refuses on either replica a jti the other one used (VerifyToken and IssueToken)", async () => {
    expect(b2.config.databaseUrl).toBe(b.config.databaseUrl);
    const verifyOn = (server: TestServer, token: string) => server.clients.verify.verifyToken({ token, audience: AUD });
    const jti1 = randomBytes(12).toString("base64url");
    const first = assertion(keys.ed, "svc-billing-1", url(MAIN), { jti: jti1 });
    expect((await verifyOn(b, first)).principal?.subject).toBe("svc-billing-1");
    await expectFailure(verifyOn(b2, first), refused("ASSERTION_REPLAYED"));
    await expectFailure(exchange(assertion(keys.ed, "svc-billing-1", url(MAIN), { jti: jti1, aud: ISSUER_B }), b2), refused("ASSERTION_REPLAYED"));

    const jti2 = randomBytes(12).toString("base64url");
    const second = assertion(keys.p521, "svc-report-2", DNSMASQ ? DNS_HOST : LOCAL_FILE, { jti: jti2, aud: ISSUER_B });
    const issued = await exchange(second, b2);
    expect(issued.principalKind).toBe(PrincipalKind.PRINCIPAL_KIND_SERVICE);
    await expectFailure(verifyOn(b, assertion(keys.p521, "svc-report-2", DNSMASQ ? DNS_HOST : LOCAL_FILE, { jti: jti2 })), refused("ASSERTION_REPLAYED"));
    await expectFailure(exchange(second, b), refused("ASSERTION_REPLAYED"));
    // The token B2 exchanged verifies on B (its session is in the shared database).
    expect((await b.clients.verify.verifyToken({ token: issued.accessToken, audience: "" })).principal?.sessionId).toBe(issued.sessionId);
  });
});

describe("changes at the registry reach B after its cache", () => {
  it(`a revoked capability and a deactivated region are refused (SESSION_REVOKED) through HTTPS, ${DNSMASQ ? "DNS" : `DNS (${NO_DNS})`} and a local store`, async () => {
    const registries = [url(MAIN), ...(DNSMASQ ? [DNS_HOST] : []), LOCAL_FILE];
    const cases = [
      { region: "svc-revoke-3", key: keys.revoke },
      { region: "svc-inactive-4", key: keys.inactive },
    ];
    for (const registry of registries) for (const c of cases) await verify(assertion(c.key, c.region, registry));

    await aAdmin.registry.revokeCapability({ regionId: "svc-revoke-3", capability: CAP });
    await aAdmin.registry.updateRegion({ region: { id: "svc-inactive-4", active: false }, updateMask: ["active"] });
    await republishA();
    await sleep(CACHE_TTL_MS + 300);

    for (const registry of registries) {
      for (const c of cases) {
        await expectFailure(verify(assertion(c.key, c.region, registry)), refused("SESSION_REVOKED"));
        await expectFailure(exchange(assertion(c.key, c.region, registry, { aud: ISSUER_B })), refused("SESSION_REVOKED"));
      }
      const revoked = await lookup(registry, "svc-revoke-3");
      expect(revoked.capability).toMatchObject({ active: false, regionId: "svc-revoke-3" });
      expect(revoked.region?.active).toBe(true);
      expect((await lookup(registry, "svc-inactive-4")).region?.active).toBe(false);
    }
    // The rest of the registry still verifies.
    await verify(assertion(keys.ed, "svc-billing-1", url(MAIN)));
  });

  it("a capability whose expiry passed is refused (TOKEN_EXPIRED), and so is the token exchanged for it", async () => {
    const key = serviceKey("P-521");
    await createRegionOnA("svc-expiring-5", "");
    const expireTime = new Date(Date.now() + 3000);
    await publishOnA("svc-expiring-5", key, expireTime);
    https.serve(EXPIRING, await documentOfA());
    const registry = url(EXPIRING);
    await verify(assertion(key, "svc-expiring-5", registry));
    const issued = await exchange(assertion(key, "svc-expiring-5", registry, { aud: ISSUER_B }));
    const expiresAt = Math.floor(expireTime.getTime() / 1000) * 1000;
    expect(issued.expireTime!.getTime()).toBeLessThanOrEqual(expiresAt); // never past the capability
    await b.clients.verify.verifyToken({ token: issued.accessToken, audience: "" });

    await sleep(expiresAt - Date.now() + 200);
    await expectFailure(verify(assertion(key, "svc-expiring-5", registry)), refused("TOKEN_EXPIRED"));
    await expectFailure(exchange(assertion(key, "svc-expiring-5", registry, { aud: ISSUER_B })), refused("TOKEN_EXPIRED"));
    await expectFailure(b.clients.verify.verifyToken({ token: issued.accessToken, audience: "" }), refused("TOKEN_EXPIRED"));
  });

  it("a rotated key verifies after one refetch while B's cache is still warm (the unknown-key path); the old key is refused after it", async () => {
    const oldKey = serviceKey("Ed25519");
    const newKey = serviceKey("P-384");
    await createRegionOnA("svc-rotate-6", "");
    await publishOnA("svc-rotate-6", oldKey);
    https.serve(ROTATION, await documentOfA());
    const registry = url(ROTATION);

    const warmAt = Date.now();
    await verify(assertion(oldKey, "svc-rotate-6", registry));
    const fetched = https.requests(ROTATION);
    expect(fetched).toBe(1);
    const rotated = await publishOnA("svc-rotate-6", newKey);
    expect(rotated.algorithm).toBe("ES384");
    https.serve(ROTATION, await documentOfA());
    // B's cache is warm: the old key still verifies there, without a fetch.
    await verify(assertion(oldKey, "svc-rotate-6", registry));
    expect(https.requests(ROTATION)).toBe(fetched);

    await sleep(Math.max(0, warmAt + COOLDOWN_MS + 100 - Date.now()));
    const { principal } = await verify(assertion(newKey, "svc-rotate-6", registry));
    expect(Date.now() - warmAt, "the new key must verify before B's cache expires, through the unknown-key refetch").toBeLessThan(CACHE_TTL_MS);
    expect(principal).toMatchObject({ subject: "svc-rotate-6", permissions: [PERM_A] });
    expect(https.requests(ROTATION)).toBe(fetched + 1);
    await expectFailure(verify(assertion(oldKey, "svc-rotate-6", registry)), refused("TOKEN_INVALID"));
    await exchange(assertion(newKey, "svc-rotate-6", registry, { aud: ISSUER_B }));
    const looked = await lookup(registry, "svc-rotate-6");
    expect(looked.capability).toMatchObject({ keyId: rotated.keyId, algorithm: "ES384" });
  });
});

describe("LookupCapability", () => {
  for (const via of [
    { name: "HTTPS", registry: () => url(MAIN), dns: false },
    { name: "DNS", registry: () => DNS_HOST, dns: true },
    { name: "a local store", registry: () => LOCAL_ENV, dns: false },
  ]) it.skipIf(via.dns && !DNSMASQ)(`returns the verified capability and region through ${via.name}${via.dns && !DNSMASQ ? ` (${NO_DNS})` : ""}`, async () => {
    const registry = via.registry;
    const res = await lookup(registry(), "svc-report-2");
    expect(res.region).toMatchObject({ id: "svc-report-2", alias: "Report service", active: true, userId: "" });
    expect(res.capability).toMatchObject({
      id: "", // an outside registry's: no capability id on B
      regionId: "svc-report-2",
      capability: CAP,
      keyId: published.p521!.keyId,
      algorithm: "ES512",
      active: true,
    });
    expect(res.capability?.expireTime?.getTime()).toBe(Math.floor(published.p521!.expireTime!.getTime() / 1000) * 1000);
    const jwk = JSON.parse(res.capability!.publicKeyJwk) as Record<string, string>;
    const own = JSON.parse(keys.p521.publicJwk) as Record<string, string>;
    expect(jwk).toMatchObject({ kty: "EC", crv: "P-521", x: own.x, y: own.y, kid: published.p521!.keyId });
    await expectFailure(lookup(registry(), "svc-report-2", "billing-writer"), refused("CAPABILITY_NOT_FOUND", Status.NOT_FOUND));
    await expectFailure(lookup(registry(), "svc-unknown-9"), refused("CAPABILITY_NOT_FOUND", Status.NOT_FOUND));
  });
});

describe("an unreachable HTTPS registry", () => {
  it("answers UNAVAILABLE (UPSTREAM_UNAVAILABLE) once the cache is over, quickly: a stopped server, and one that never answers", async () => {
    expect(outageWarmup, "verified through it while it was up (beforeAll)").toBe("svc-billing-1");
    await outage.stop();
    await sleep(Math.max(0, outageWarmedAt + CACHE_TTL_MS + 300 - Date.now()));
    for (const registry of [OUTAGE_URL, BLACK_HOLE_URL]) {
      const started = Date.now();
      // At once, as callers would: each is bounded by TESSERA_REMOTE_CONNECT_TIMEOUT (1 s) and TESSERA_REMOTE_TIMEOUT (2 s).
      await Promise.all([
        expectFailure(verify(assertion(keys.ed, "svc-billing-1", registry)), refused("UPSTREAM_UNAVAILABLE", Status.UNAVAILABLE)),
        expectFailure(exchange(assertion(keys.ed, "svc-billing-1", registry, { aud: ISSUER_B })), refused("UPSTREAM_UNAVAILABLE", Status.UNAVAILABLE)),
        expectFailure(lookup(registry, "svc-report-2"), refused("UPSTREAM_UNAVAILABLE", Status.UNAVAILABLE)),
      ]);
      expect(Date.now() - started, registry).toBeLessThan(4000);
    }
  });
});

describe("audiences", () => {
  it("VerifyToken of an assertion needs the receiver's audience, and never verifies one meant for token exchange", async () => {
    await expectFailure(verify(assertion(keys.ed, "svc-billing-1", url(MAIN)), ""), { code: Status.INVALID_ARGUMENT, reason: "INVALID_INPUT" });
    await expectFailure(verify(assertion(keys.ed, "svc-billing-1", url(MAIN), { aud: [AUD, ISSUER_B] })), refused("TOKEN_INVALID"));
    await expectFailure(verify(assertion(keys.ed, "svc-billing-1", url(MAIN), { aud: ISSUER_B }), ISSUER_B), refused("TOKEN_INVALID"));
  });
});

describe("what an outside registry cannot grant", () => {
  it("permissions only through the allow-list's capability map: an unmapped capability proves identity, nothing more", async () => {
    const mapped = await verify(assertion(keys.ed, "svc-billing-1", url(MAIN)));
    expect(mapped.principal?.permissions).toEqual([PERM_A]);
    const unmapped = await verify(assertion(keys.ed, "svc-billing-1", url(MAIN), { capability: "unmapped-cap" }));
    expect(unmapped.principal).toMatchObject({ subject: "svc-billing-1", permissions: [] });
  });

  it("refuses a user's own key of the registry (A's admin's, for A's administrators group)", async () => {
    const token = signAssertion(keys.ed, { region: adminUserIdOnA, capability: "administrators", registry: url(MAIN), aud: AUD });
    await expectFailure(verify(token), refused("INVALID_CREDENTIALS"));
    await expectFailure(exchange(signAssertion(keys.ed, { region: adminUserIdOnA, capability: "administrators", registry: url(MAIN), aud: ISSUER_B })), refused("INVALID_CREDENTIALS"));
  });

  it("with source_tenant, refuses regions of the registry's other tenants", async () => {
    await expectFailure(verify(assertion(keys.ed, "svc-other-5", url(SOURCE_ONLY))), refused("INVALID_CREDENTIALS"));
    expect((await verify(assertion(keys.ed, "svc-other-5", url(MAIN)))).principal?.subject).toBe("svc-other-5");
    expect((await verify(assertion(keys.ed, "svc-billing-1", url(SOURCE_ONLY)))).principal?.subject).toBe("svc-billing-1");
  });
});

describe("fixed defects of src/registry", () => {
  it("resolvers.ts: while an HTTPS registry fails, a flood of assertions naming random regions costs one fetch each, not one per cooldown", async () => {
    // RegistryResolvers promises "a flood of assertions naming random regions
    // costs at most one fetch per registry per cooldown, never one per
    // assertion"; a failed document fetch is not remembered, so every
    // assertion (VerifyToken is anonymous) makes B fetch the failing registry again.
    const started = Date.now();
    for (let i = 0; i < 20; i++) {
      await expectFailure(verify(assertion(keys.ed, `svc-random-${i}`, url(UNSERVED))), refused("UPSTREAM_UNAVAILABLE", Status.UNAVAILABLE));
    }
    const allowed = Math.ceil((Date.now() - started) / COOLDOWN_MS) + 1;
    expect(https.requests(UNSERVED), `fetches of a failing registry for 20 assertions in ${Date.now() - started} ms`).toBeLessThanOrEqual(allowed);
  });

  it("registry.grpc.ts: LookupCapability refuses a registry reference of the wrong kind (a URL as dns_host, a store as https_url)", async () => {
    const refusedKind = async (kind: { $case: "dnsHost" | "httpsUrl"; value: string }) => {
      const outcome = await bAdmin.registry.lookupCapability({ registry: { kind }, regionId: "svc-billing-1", capability: CAP }).then(
        (res) => `resolved region ${res.region?.id}`,
        (error: unknown) => (error as { code?: Status }).code,
      );
      expect(outcome, `${kind.$case} = ${kind.value}`).toSatisfy((o) => o === Status.INVALID_ARGUMENT || o === Status.UNAUTHENTICATED);
    };
    await refusedKind({ $case: "dnsHost", value: url(MAIN) });
    await refusedKind({ $case: "httpsUrl", value: LOCAL_FILE });
    await refusedKind({ $case: "httpsUrl", value: DNS_HOST });
  });
});
