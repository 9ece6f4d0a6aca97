// Looking a capability up in an outside registry (HTTPS document, DNS TXT,
// local store) and checking its records against the registry's pinned
// authority keys. Results are cached for a bounded time; a caller that needs
// a fresh answer (an unknown key) gets one refetch per cooldown, so a flood
// of assertions naming random regions costs at most one fetch per registry
// per cooldown, never one per assertion.
import { Resolver } from "node:dns/promises";
import { TesseraError } from "../errors.ts";
import { upstreamUnavailable, type RemoteHttp } from "../federation/index.ts";
import type { VerifyKey } from "./jws.ts";
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
} from "./records.ts";
import type { TrustedRegistry } from "./trust.ts";

export interface ResolvedCapability {
  region: RegionRecord;
  capability: CapabilityRecord;
  key: VerifyKey;
}

export interface ResolverSettings {
  cacheMs: number;
  refetchCooldownMs: number;
  /** DNS servers (host:port) for DNS registries; the system's when empty. */
  dnsServers: string[];
  dnsTimeoutMs: number;
}

const MAX_CACHED = 10_000;
/**
 * DNS names are per region and capability: assertions naming random regions
 * of an allow-listed DNS registry would each cost a query. At most this many
 * queries a second go to one DNS registry; past it, lookups of names not
 * cached answer UPSTREAM_UNAVAILABLE until the next second.
 */
const DNS_FETCHES_PER_SECOND = 50;
const MAX_DOCUMENT_RECORDS = 100_000;

interface Cached<T> {
  value: T;
  at: number;
}

const badRecord = (registry: string, error: unknown) =>
  new TesseraError("UNAUTHENTICATED", "TOKEN_INVALID", `registry ${registry} served a record that does not verify: ${(error as Error).message}`);

export class RegistryResolvers {
  readonly #http: RemoteHttp;
  readonly #settings: ResolverSettings;
  readonly #dns: Resolver;
  /** Per (registry, region, capability): the verified records, or null (not there). */
  readonly #lookups = new Map<string, Cached<ResolvedCapability | null>>();
  /** HTTPS and local-store documents, per registry. */
  readonly #documents = new Map<string, Cached<IndexedDocument>>();
  /** A registry whose document fetch failed, until when it is not asked again. */
  readonly #failures = new Map<string, { until: number; error: TesseraError }>();
  readonly #inflight = new Map<string, Promise<unknown>>();
  /** Last refetch per registry (the cooldown is per registry, whatever the ids asked for). */
  readonly #lastRefetch = new Map<string, number>();
  readonly #dnsBudget = new Map<string, { second: number; used: number }>();

  constructor(http: RemoteHttp, settings: ResolverSettings) {
    this.#http = http;
    this.#settings = settings;
    this.#dns = new Resolver({ timeout: settings.dnsTimeoutMs, tries: 2 });
    if (settings.dnsServers.length) this.#dns.setServers(settings.dnsServers);
  }

  /**
   * The capability's verified records through `registry`, or null. `fresh`
   * asks for a refetch (an assertion's key did not match the cached one); it
   * is granted once per cooldown per registry.
   */
  async lookup(registry: TrustedRegistry, regionId: string, capability: string, fresh = false): Promise<{ resolved: ResolvedCapability | null; refetched: boolean }> {
    const key = `${registry.name}\u0000${regionId}\u0000${capability}`;
    const now = Date.now();
    const cached = this.#lookups.get(key);
    const expired = !cached || now - cached.at > this.#settings.cacheMs;
    let granted = false;
    if (!expired && fresh) {
      const last = this.#lastRefetch.get(registry.name) ?? 0;
      granted = now - last >= this.#settings.refetchCooldownMs && now - cached!.at >= Math.min(1000, this.#settings.refetchCooldownMs);
      if (granted) this.#lastRefetch.set(registry.name, now);
    }
    if (!expired && !granted) return { resolved: cached!.value, refetched: false };
    // A lookup whose own entry expired reads the registry's cached document (its own TTL); only a
    // granted refetch fetches the document again, so assertions naming random regions cost nothing more.
    const resolved = await this.#single(key, () => this.#fetch(registry, regionId, capability, granted));
    if (this.#lookups.size >= MAX_CACHED) this.#lookups.clear();
    this.#lookups.set(key, { value: resolved, at: Date.now() });
    return { resolved, refetched: true };
  }

  /** Forget everything cached (tests; an operator's reload). */
  clear(): void {
    this.#lookups.clear();
    this.#documents.clear();
    this.#failures.clear();
  }

  async #single<T>(key: string, work: () => Promise<T>): Promise<T> {
    let running = this.#inflight.get(key) as Promise<T> | undefined;
    if (!running) {
      running = work().finally(() => this.#inflight.delete(key));
      this.#inflight.set(key, running);
    }
    return running;
  }

  async #fetch(registry: TrustedRegistry, regionId: string, capability: string, refreshDocument: boolean): Promise<ResolvedCapability | null> {
    let regionJwt: string | undefined;
    let capabilityJwt: string | undefined;
    if (registry.kind === "dns") {
      this.#spendDnsBudget(registry.name);
      const [regionJwts, capabilityJwts] = await Promise.all([
        this.#txt(registry, regionDnsName(registry.name)),
        this.#txt(registry, capabilityDnsName(registry.name, regionId, capability)),
      ]);
      regionJwt = regionJwts.find((jwt) => peekRecord(jwt)?.id === regionId);
      capabilityJwt = capabilityJwts.find((jwt) => {
        const peek = peekRecord(jwt);
        return peek?.region_id === regionId && peek.capability === capability;
      });
    } else {
      const document = await this.#document(registry, refreshDocument);
      regionJwt = document.regions.get(regionId);
      capabilityJwt = document.capabilities.get(`${regionId}\u0000${capability}`);
    }
    if (!regionJwt || !capabilityJwt) return null;
    try {
      const region = verifyRecord<RegionRecord>(regionJwt, REGION_RECORD_TYP, registry.authorities);
      const record = verifyRecord<CapabilityRecord>(capabilityJwt, CAPABILITY_RECORD_TYP, registry.authorities);
      if (region.id !== regionId || record.region_id !== regionId || record.capability !== capability) throw new RecordError("record names another region or capability");
      if (typeof region.active !== "boolean") throw new RecordError("region record is malformed");
      return { region, capability: record, key: capabilityKey(record) };
    } catch (error) {
      if (error instanceof RecordError) throw badRecord(registry.name, error);
      throw error;
    }
  }

  #spendDnsBudget(name: string): void {
    const second = Math.floor(Date.now() / 1000);
    let budget = this.#dnsBudget.get(name);
    if (!budget || budget.second !== second) this.#dnsBudget.set(name, (budget = { second, used: 0 }));
    if (++budget.used > DNS_FETCHES_PER_SECOND) throw upstreamUnavailable(`the DNS registry ${name} (lookup rate limit)`, 1000);
  }

  async #txt(registry: TrustedRegistry, name: string): Promise<string[]> {
    try {
      return (await this.#dns.resolveTxt(name)).map((strings) => strings.join(""));
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === "ENOTFOUND" || code === "ENODATA" || code === "NXDOMAIN") return [];
      throw upstreamUnavailable(`the DNS registry ${registry.name}`, 1000, error);
    }
  }

  async #document(registry: TrustedRegistry, refresh: boolean): Promise<IndexedDocument> {
    const cached = this.#documents.get(registry.name);
    if (cached && !refresh && Date.now() - cached.at <= this.#settings.cacheMs) return cached.value;
    // A registry that just failed is not asked again until the cooldown has passed: a flood of
    // assertions costs one fetch per cooldown, not one each (a stale document is better than none).
    const failed = this.#failures.get(registry.name);
    if (failed && Date.now() < failed.until) {
      if (cached) return cached.value;
      throw failed.error;
    }
    try {
      const document = await this.#single(`document\u0000${registry.name}`, async () => {
        let text: string;
        if (registry.kind === "local") {
          text = registry.readDocument!();
        } else {
          const response = await this.#http.get(registry.name, `the registry ${registry.name}`);
          if (response.status !== 200) throw upstreamUnavailable(`the registry ${registry.name} (HTTP ${response.status})`, 1000);
          text = response.body;
        }
        return parseDocument(registry.name, text);
      });
      this.#documents.set(registry.name, { value: document, at: Date.now() });
      this.#failures.delete(registry.name);
      return document;
    } catch (error) {
      const retry = Math.max(this.#settings.refetchCooldownMs, 1000);
      const unavailable = error instanceof TesseraError ? error : upstreamUnavailable(`the registry ${registry.name}`, retry, error);
      this.#failures.set(registry.name, { until: Date.now() + retry, error: unavailable });
      throw unavailable;
    }
  }
}

/** A registry document indexed once when fetched: lookups by id, never a scan per assertion. */
interface IndexedDocument {
  regions: Map<string, string>;
  /** By `<region id>\0<capability>`. */
  capabilities: Map<string, string>;
}

function parseDocument(name: string, text: string): IndexedDocument {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw upstreamUnavailable(`the registry ${name} (not a JSON document)`, 5000);
  }
  const doc = value as { regions?: unknown; capabilities?: unknown } | null;
  const list = (v: unknown) => (Array.isArray(v) && v.length <= MAX_DOCUMENT_RECORDS && v.every((x) => typeof x === "string") ? (v as string[]) : undefined);
  const regions = list(doc?.regions);
  const capabilities = list(doc?.capabilities);
  if (!regions || !capabilities) throw upstreamUnavailable(`the registry ${name} (not a registry document)`, 5000);
  // The first record of an id wins; what a record says is checked (its signature) only when it is used.
  const indexed: IndexedDocument = { regions: new Map(), capabilities: new Map() };
  for (const jwt of regions) {
    const id = peekRecord(jwt)?.id;
    if (typeof id === "string" && !indexed.regions.has(id)) indexed.regions.set(id, jwt);
  }
  for (const jwt of capabilities) {
    const peek = peekRecord(jwt);
    if (typeof peek?.region_id !== "string" || typeof peek.capability !== "string") continue;
    const key = `${peek.region_id}\u0000${peek.capability}`;
    if (!indexed.capabilities.has(key)) indexed.capabilities.set(key, jwt);
  }
  return indexed;
}
