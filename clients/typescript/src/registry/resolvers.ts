// Reading a Region System registry without Tessera: the HTTPS document
// (GET /registry.json), DNS TXT records, or a local-store document, every
// record checked against the registry's pinned authority keys; and the
// verification of service assertions against such registries (the checks
// Tessera's VerifyToken makes, with an in-memory single-use record).
import { Resolver } from "node:dns/promises";
import { parseJws, readPublicKey, signatureValid, type VerifyKey } from "./jws.ts";
import {
  CAPABILITY_RECORD_TYP,
  capabilityDnsName,
  capabilityKey,
  peekRecord,
  RecordError,
  REGION_RECORD_TYP,
  regionDnsName,
  verifyRecord,
  type CapabilityRecord,
  type RegionRecord,
  type RegistryDocument,
} from "./records.ts";

/** Where a registry's records come from. `name` is what assertions put in `regionmeta.registry`. */
export type RegistrySource =
  /** An HTTPS registry: the document at `url` (exact URL, path and query included). `fetch` may carry a private CA (an undici dispatcher). */
  | { kind: "https"; url: string; fetch?: typeof fetch }
  /** A DNS registry under `host`; `servers` (host:port) instead of the system's resolvers. */
  | { kind: "dns"; host: string; servers?: string[] }
  /** A local store: the document itself (or its JSON text) under a name of your choosing. */
  | { kind: "local"; name: string; document: RegistryDocument | string };

export interface RegistryResolverOptions {
  /** The registry authority's public keys (JWK objects or JSON, or SPKI PEM): records signed by anything else are refused. */
  authorityKeys: (string | Record<string, unknown>)[];
  /**
   * In a Tessera registry, the tenant (name) whose regions are accepted; a
   * Tessera registry holds every tenant's regions, and any tenant may publish
   * a capability of any name. Records of other tenants count as absent.
   */
  tenant?: string;
  /** While the registry cannot be read, the last document keeps answering for at most this long past `cacheMs` (default 10 min); then lookups fail. */
  staleLimitMs?: number;
  /** DNS queries a second to this registry at most (default 50): names not cached past it answer unavailable until the next second. */
  dnsQueriesPerSecond?: number;
  /** How long looked-up records are reused (default 60 s). */
  cacheMs?: number;
  /** A lookup that must be fresh (a key did not verify) refetches at most this often (default 10 s). */
  refetchCooldownMs?: number;
  /** Fetch and DNS timeout (default 5 s). */
  timeoutMs?: number;
}

/** A capability's verified records. */
export interface ResolvedCapability {
  region: RegionRecord;
  capability: CapabilityRecord;
  key: VerifyKey;
}

/** The registry could not be read (unreachable, not a registry document). */
export class RegistryUnavailableError extends Error {
  override readonly name = "RegistryUnavailableError";
}

const MAX_DOCUMENT_BYTES = 16 * 1024 * 1024;
/** Region ids are DNS labels; capability names too (with `_`), as Tessera's registry accepts them. */
const REGION_ID = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const CAPABILITY_NAME = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/;
const MAX_CACHED = 10_000;

/** One registry, read and verified; lookups cached, refetches rate-limited. */
export class RegistryResolver {
  readonly name: string;
  readonly #source: RegistrySource;
  readonly #authorities: VerifyKey[];
  readonly #cacheMs: number;
  readonly #cooldownMs: number;
  readonly #timeoutMs: number;
  readonly #dns?: Resolver;
  readonly #tenant?: string;
  readonly #staleLimitMs: number;
  readonly #dnsPerSecond: number;
  /** Found capabilities, and (apart, so that a flood of unknown names cannot evict them) names found absent. */
  readonly #lookups = new Map<string, { value: ResolvedCapability; at: number }>();
  readonly #absent = new Map<string, number>();
  readonly #pending = new Map<string, Promise<ResolvedCapability | null>>();
  #document?: { regions: Map<string, string>; capabilities: Map<string, string>; at: number };
  #inflight?: Promise<void>;
  #lastRefetch = -Infinity;
  #failedAt = -Infinity;
  #dnsBudget = { second: 0, used: 0 };

  constructor(source: RegistrySource, options: RegistryResolverOptions) {
    this.#source = source;
    this.name = source.kind === "https" ? source.url : source.kind === "dns" ? source.host : source.name;
    this.#authorities = options.authorityKeys.map((input) => {
      const read = readPublicKey(input);
      if ("problem" in read) throw new TypeError(`authority key of ${this.name} ${read.problem}`);
      return read.key;
    });
    if (this.#authorities.length === 0) throw new TypeError(`registry ${this.name} needs at least one authority key`);
    this.#cacheMs = options.cacheMs ?? 60_000;
    this.#cooldownMs = options.refetchCooldownMs ?? 10_000;
    this.#timeoutMs = options.timeoutMs ?? 5_000;
    this.#tenant = options.tenant;
    this.#staleLimitMs = options.staleLimitMs ?? 600_000;
    this.#dnsPerSecond = options.dnsQueriesPerSecond ?? 50;
    if (source.kind === "https") {
      let url: URL;
      try {
        url = new URL(source.url);
      } catch {
        throw new TypeError(`registry ${source.url} is not a URL`);
      }
      const loopback = url.hostname === "127.0.0.1" || url.hostname === "localhost" || url.hostname === "[::1]";
      if (url.protocol !== "https:" && !(url.protocol === "http:" && loopback)) throw new TypeError(`registry ${source.url} must be an https:// URL (plain http only on loopback)`);
      if (url.username || url.password) throw new TypeError(`registry ${source.url} must not carry credentials`);
    }
    if (source.kind === "dns") {
      this.#dns = new Resolver({ timeout: this.#timeoutMs, tries: 2 });
      if (source.servers?.length) this.#dns.setServers(source.servers);
    }
  }

  /**
   * The verified records of `capability` of region `regionId`, or null when
   * the registry has none. `fresh` asks for a refetch (granted once per cooldown).
   */
  async lookup(regionId: string, capability: string, options: { fresh?: boolean } = {}): Promise<ResolvedCapability | null> {
    // Names no registry can hold are not looked up (nor put in DNS queries).
    if (!REGION_ID.test(regionId) || !CAPABILITY_NAME.test(capability)) return null;
    const id = `${regionId}\u0000${capability}`;
    const now = Date.now();
    let refetch = false;
    if (options.fresh && now - this.#lastRefetch >= this.#cooldownMs) {
      this.#lastRefetch = now;
      refetch = true;
    }
    if (!refetch) {
      const found = this.#lookups.get(id);
      if (found && now - found.at < this.#cacheMs) return found.value;
      const absentAt = this.#absent.get(id);
      if (absentAt !== undefined && now - absentAt < this.#cacheMs) return null;
    }
    // One lookup of a name at a time, however many assertions name it.
    let pending = this.#pending.get(id);
    if (!pending) {
      pending = this.#fetch(regionId, capability, refetch).finally(() => this.#pending.delete(id));
      this.#pending.set(id, pending);
    }
    const value = await pending;
    const at = Date.now();
    if (value) {
      if (this.#lookups.size >= MAX_CACHED) this.#lookups.delete(this.#lookups.keys().next().value!);
      this.#lookups.set(id, { value, at });
      this.#absent.delete(id);
    } else {
      if (this.#absent.size >= MAX_CACHED) this.#absent.delete(this.#absent.keys().next().value!);
      this.#absent.set(id, at);
      this.#lookups.delete(id);
    }
    return value;
  }

  async #fetch(regionId: string, capability: string, refresh: boolean): Promise<ResolvedCapability | null> {
    let regionJwts: string[];
    let capabilityJwts: string[];
    if (this.#source.kind === "dns") {
      const host = this.#source.host;
      [regionJwts, capabilityJwts] = await Promise.all([this.#txt(regionDnsName(host)), this.#txt(capabilityDnsName(host, regionId, capability))]);
    } else {
      const document = await this.#indexed(refresh);
      regionJwts = [document.regions.get(regionId)].filter((x): x is string => x !== undefined);
      capabilityJwts = [document.capabilities.get(`${regionId}\u0000${capability}`)].filter((x): x is string => x !== undefined);
    }
    const region = regionJwts.filter((jwt) => peekRecord(jwt)?.id === regionId).map((jwt) => verifyRecord<RegionRecord>(jwt, REGION_RECORD_TYP, this.#authorities))[0];
    if (region && (typeof region.active !== "boolean" || region.id !== regionId)) throw new RecordError("region record is malformed");
    // Another tenant's region, in a registry shared by tenants: not there for this caller.
    if (region && this.#tenant !== undefined && region.tenant !== this.#tenant) return null;
    const capabilityJwt = capabilityJwts.find((jwt) => {
      const peek = peekRecord(jwt);
      return peek?.region_id === regionId && peek.capability === capability;
    });
    if (!region || !capabilityJwt) return null;
    const record = verifyRecord<CapabilityRecord>(capabilityJwt, CAPABILITY_RECORD_TYP, this.#authorities);
    if (record.region_id !== regionId || record.capability !== capability) throw new RecordError("capability record names another capability");
    return { region, capability: record, key: capabilityKey(record) };
  }

  async #txt(name: string): Promise<string[]> {
    const second = Math.floor(Date.now() / 1000);
    if (this.#dnsBudget.second !== second) this.#dnsBudget = { second, used: 0 };
    if (++this.#dnsBudget.used > this.#dnsPerSecond) throw new RegistryUnavailableError(`DNS registry ${this.name}: too many queries this second`);
    try {
      return (await this.#dns!.resolveTxt(name)).map((strings) => strings.join(""));
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === "ENOTFOUND" || code === "ENODATA") return [];
      throw new RegistryUnavailableError(`DNS registry ${this.name}: ${code ?? (error as Error).message}`);
    }
  }

  async #indexed(refresh: boolean): Promise<{ regions: Map<string, string>; capabilities: Map<string, string> }> {
    const now = Date.now();
    const usable = (d: { at: number }) => now - d.at < this.#cacheMs + this.#staleLimitMs;
    if (this.#document && !refresh && now - this.#document.at < this.#cacheMs) return this.#document;
    // A read failed moments ago: the stale document (within its limit) answers, without asking again.
    if (now - this.#failedAt < this.#cooldownMs) {
      if (this.#document && usable(this.#document)) return this.#document;
      throw new RegistryUnavailableError(`registry ${this.name} cannot be read (retrying after a cooldown)`);
    }
    this.#inflight ??= (async () => {
      const document = await this.#read();
      const regions = new Map<string, string>();
      const capabilities = new Map<string, string>();
      for (const jwt of document.regions) {
        const id = peekRecord(jwt)?.id;
        if (typeof id === "string") regions.set(id, jwt);
      }
      for (const jwt of document.capabilities) {
        const peek = peekRecord(jwt);
        if (typeof peek?.region_id === "string" && typeof peek.capability === "string") capabilities.set(`${peek.region_id}\u0000${peek.capability}`, jwt);
      }
      this.#document = { regions, capabilities, at: Date.now() };
    })().finally(() => (this.#inflight = undefined));
    try {
      await this.#inflight;
    } catch (error) {
      this.#failedAt = Date.now();
      // A stale document is better than none while the registry is down, up to its limit.
      if (this.#document && usable(this.#document)) return this.#document;
      throw error;
    }
    return this.#document!;
  }

  async #read(): Promise<RegistryDocument> {
    const source = this.#source;
    let text: string | RegistryDocument;
    if (source.kind === "local") {
      text = source.document;
    } else if (source.kind === "https") {
      let response: Response;
      try {
        response = await (source.fetch ?? fetch)(source.url, { signal: AbortSignal.timeout(this.#timeoutMs), redirect: "error", headers: { accept: "application/json" } });
      } catch (error) {
        throw new RegistryUnavailableError(`registry ${this.name}: ${(error as Error).message}`);
      }
      if (!response.ok) throw new RegistryUnavailableError(`registry ${this.name} answered HTTP ${response.status}`);
      text = await readCapped(response, MAX_DOCUMENT_BYTES, this.name);
    } else {
      throw new TypeError("DNS registries have no document");
    }
    let document: unknown;
    try {
      document = typeof text === "string" ? JSON.parse(text) : text;
    } catch {
      throw new RegistryUnavailableError(`registry ${this.name}: not a JSON document`);
    }
    const d = document as Partial<RegistryDocument> | null;
    if (!d || !Array.isArray(d.regions) || !Array.isArray(d.capabilities)) throw new RegistryUnavailableError(`registry ${this.name}: not a registry document`);
    return { regions: d.regions.filter((x): x is string => typeof x === "string"), capabilities: d.capabilities.filter((x): x is string => typeof x === "string") };
  }
}

/** The body as text, refusing more than `max` bytes before reading them all. */
async function readCapped(response: Response, max: number, name: string): Promise<string> {
  const declared = Number(response.headers.get("content-length") ?? NaN);
  if (declared > max) throw new RegistryUnavailableError(`registry ${name}: document too large`);
  const reader = response.body?.getReader();
  if (!reader) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel();
      throw new RegistryUnavailableError(`registry ${name}: document too large`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** Why an assertion was refused (reasons as Tessera's VerifyToken names them). */
export class AssertionError extends Error {
  override readonly name = "AssertionError";
  readonly reason: "TOKEN_INVALID" | "TOKEN_EXPIRED" | "SESSION_REVOKED" | "INVALID_CREDENTIALS" | "REGISTRY_NOT_ALLOWED" | "ASSERTION_REPLAYED" | "UPSTREAM_UNAVAILABLE";
  constructor(reason: AssertionError["reason"], message: string) {
    super(message);
    this.reason = reason;
  }
}

/** A verified service assertion. */
export interface VerifiedAssertion {
  region: string;
  capability: string;
  registry: string;
  /** The tenant (name) of the region, in a Tessera registry. */
  tenant: string | undefined;
  data: unknown;
  expiresAt: Date;
  claims: Readonly<Record<string, unknown>>;
}

export interface AssertionVerifierOptions {
  /** The allow-list: only assertions naming one of these registries (by `name`) are considered. */
  registries: RegistryResolver[];
  /** This service's name: the assertion's `aud` must contain it. */
  audience: string | string[];
  /** Longest accepted `exp - iat`, seconds (default 300). */
  maxLifetimeSeconds?: number;
  clockToleranceSeconds?: number;
  /** jti values remembered for replay detection (default 100 000; each until its assertion expires). */
  maxRemembered?: number;
}

const MAX_ASSERTION_CHARS = 8192;

/**
 * Verifies service assertions against allow-listed registries without
 * Tessera: shape, registry allow-list, times, audience, records (active,
 * exp, regionmeta.expires), signature with the capability's key (one
 * refetch per cooldown when it does not match the cached key), then the
 * `jti` is used up in this process (run one verifier per process; Tessera's
 * own VerifyToken records it across replicas in its database).
 */
export class AssertionVerifier {
  readonly #registries: Map<string, RegistryResolver>;
  readonly #audiences: Set<string>;
  readonly #maxLifetime: number;
  readonly #tolerance: number;
  readonly #maxRemembered: number;
  readonly #seen = new Map<string, number>();

  constructor(options: AssertionVerifierOptions) {
    this.#registries = new Map(options.registries.map((r) => [r.name, r]));
    this.#audiences = new Set(Array.isArray(options.audience) ? options.audience : [options.audience]);
    this.#maxLifetime = options.maxLifetimeSeconds ?? 300;
    this.#tolerance = options.clockToleranceSeconds ?? 5;
    this.#maxRemembered = options.maxRemembered ?? 100_000;
  }

  async verify(token: string): Promise<VerifiedAssertion> {
    const invalid = (message: string) => new AssertionError("TOKEN_INVALID", message);
    const parsed = parseJws(token, MAX_ASSERTION_CHARS, "assertion", invalid);
    if (parsed.header.typ === "at+jwt") throw invalid("an access token is not a service assertion");
    const claims = parsed.payload;
    const meta = claims.regionmeta as Record<string, unknown> | undefined;
    if (!meta || typeof meta !== "object" || typeof meta.id !== "string" || typeof meta.capability !== "string" || typeof meta.registry !== "string" || typeof meta.expires !== "number") {
      throw invalid("regionmeta {id, capability, registry, expires} is missing");
    }
    const resolver = this.#registries.get(meta.registry);
    if (!resolver) throw new AssertionError("REGISTRY_NOT_ALLOWED", `registry ${meta.registry} is not on the allow-list`);
    const now = Date.now() / 1000;
    const { exp, iat, jti } = claims as { exp?: unknown; iat?: unknown; jti?: unknown };
    if (typeof exp !== "number" || typeof iat !== "number" || typeof jti !== "string" || jti.length < 8 || jti.length > 128) throw invalid("exp, iat and jti are required");
    if (exp - iat > this.#maxLifetime) throw invalid(`assertions may live at most ${this.#maxLifetime} s`);
    if (iat - this.#tolerance > now) throw invalid("assertion issued in the future");
    if (exp + this.#tolerance <= now) throw new AssertionError("TOKEN_EXPIRED", "assertion expired");
    if ((meta.expires as number) + this.#tolerance <= now) throw new AssertionError("TOKEN_EXPIRED", "the registry entry the assertion names has expired");
    const aud = typeof claims.aud === "string" ? [claims.aud] : Array.isArray(claims.aud) ? claims.aud : [];
    if (!aud.some((a) => typeof a === "string" && this.#audiences.has(a))) throw invalid("assertion audience is not this service");
    const resolve = async (fresh: boolean) => {
      try {
        return await resolver.lookup(meta.id as string, meta.capability as string, { fresh });
      } catch (error) {
        if (error instanceof RecordError) throw invalid(`registry ${resolver.name} served a record that does not verify: ${error.message}`);
        throw new AssertionError("UPSTREAM_UNAVAILABLE", (error as Error).message);
      }
    };
    let resolved = await resolve(false);
    if (!resolved || !signatureValid(parsed, resolved.key)) {
      // The key may have been published or rotated since the lookup was cached: one refetch per cooldown.
      resolved = await resolve(true);
      if (!resolved) throw new AssertionError("INVALID_CREDENTIALS", `no capability ${meta.capability} of region ${meta.id} in ${resolver.name}`);
      if (!signatureValid(parsed, resolved.key)) throw invalid("bad signature");
    }
    const { region, capability } = resolved;
    if (region.user) throw invalid("a user's key is not a service");
    if (region.active !== true) throw new AssertionError("SESSION_REVOKED", "the region is inactive");
    if (capability.active !== true) throw new AssertionError("SESSION_REVOKED", "the capability was revoked");
    if (capability.exp + this.#tolerance <= now) throw new AssertionError("TOKEN_EXPIRED", "the capability has expired");
    this.#useUp(`${resolver.name}\u0000${meta.id}\u0000${meta.capability}\u0000${jti}`, exp);
    return {
      region: meta.id,
      capability: meta.capability,
      registry: resolver.name,
      tenant: region.tenant,
      data: claims.data,
      expiresAt: new Date(exp * 1000),
      claims: Object.freeze(claims),
    };
  }

  #useUp(key: string, exp: number): void {
    const now = Date.now() / 1000;
    const seen = this.#seen.get(key);
    if (seen !== undefined && seen + this.#tolerance > now) throw new AssertionError("ASSERTION_REPLAYED", "assertion already used");
    if (this.#seen.size >= this.#maxRemembered) {
      for (const [k, until] of this.#seen) if (until + this.#tolerance <= now) this.#seen.delete(k);
      // Still full of live entries: refusing new assertions beats forgetting used ones.
      if (this.#seen.size >= this.#maxRemembered) throw new AssertionError("UPSTREAM_UNAVAILABLE", "too many live assertions remembered; try again");
    }
    this.#seen.set(key, exp);
  }
}
