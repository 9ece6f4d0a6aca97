// The one HTTP client Tessera uses to call remote authentication systems (the
// Minecraft session server, OpenID Connect issuers). Every call is bounded:
// a connect timeout, a total timeout, a response-size limit and a number of
// calls in flight; past any bound the caller gets UPSTREAM_UNAVAILABLE with a
// retry delay, never a hang and never unbounded memory.
import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import { BlockList, isIP } from "node:net";
import { Agent, fetch, type Response as UndiciResponse } from "undici";
import { TesseraError } from "../errors.ts";

export interface RemoteHttpSettings {
  connectTimeoutMs: number;
  /** From sending the request to the last byte of the body. */
  totalTimeoutMs: number;
  /** Calls in flight at once; more are refused at once (UPSTREAM_UNAVAILABLE). */
  maxInFlight: number;
  /**
   * Calls in flight at once to one host (default: all of maxInFlight). Where tenants choose the
   * hosts, one slow or hostile host must not take every slot from the others.
   */
  maxInFlightPerHost?: number;
  /** Largest response body read. */
  maxResponseBytes: number;
  /**
   * Refuse to connect to private, loopback, link-local and shared addresses
   * (checked on the addresses a name resolves to, at connect time, so a DNS
   * answer cannot rebind around it), for URLs that tenants choose. With
   * `allowLoopback` loopback addresses are let through (tests, local development).
   */
  publicOnly?: { allowLoopback: boolean };
  /** CA certificates (PEM) trusted instead of the system roots (a private PKI; tests). */
  ca?: string;
}

const NOT_PUBLIC = new BlockList();
for (const [net, bits] of [["0.0.0.0", 8], ["10.0.0.0", 8], ["100.64.0.0", 10], ["169.254.0.0", 16], ["172.16.0.0", 12], ["192.168.0.0", 16], ["192.0.0.0", 24], ["198.18.0.0", 15], ["224.0.0.0", 3]] as const) NOT_PUBLIC.addSubnet(net, bits, "ipv4");
for (const [net, bits] of [["::", 128], ["fc00::", 7], ["fe80::", 10], ["ff00::", 8], ["64:ff9b::", 96]] as const) NOT_PUBLIC.addSubnet(net, bits, "ipv6");
const LOOPBACK = new BlockList();
LOOPBACK.addSubnet("127.0.0.0", 8, "ipv4");
LOOPBACK.addAddress("::1", "ipv6");

/** Whether Tessera may connect to `address` (an IP) for a tenant-chosen URL. */
export function addressAllowed(address: string, allowLoopback: boolean): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  const mapped = family === 6 ? /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1] : undefined;
  const [ip, type] = mapped ? [mapped, "ipv4" as const] : [address, family === 4 ? ("ipv4" as const) : ("ipv6" as const)];
  if (LOOPBACK.check(ip, type)) return allowLoopback;
  return !NOT_PUBLIC.check(ip, type);
}

/** What a remote answered: the status, the headers a caller may need, and the body as text. */
export interface RemoteResponse {
  status: number;
  body: string;
  headers: { get(name: string): string | null };
}

export function upstreamUnavailable(what: string, retryAfterMs: number, cause?: unknown): TesseraError {
  return new TesseraError("UNAVAILABLE", "UPSTREAM_UNAVAILABLE", `${what} is unavailable; retry later`, { retryAfterMs, cause });
}

export class RemoteHttp {
  readonly #agent: Agent;
  readonly #settings: RemoteHttpSettings;
  #inFlight = 0;
  readonly #perHost = new Map<string, number>();

  constructor(settings: RemoteHttpSettings) {
    this.#settings = settings;
    const guard = settings.publicOnly;
    this.#agent = new Agent({
      connect: {
        timeout: settings.connectTimeoutMs,
        ...(settings.ca ? { ca: settings.ca } : {}),
        ...(guard ? { lookup: publicLookup(guard.allowLoopback) } : {}),
      },
      headersTimeout: settings.totalTimeoutMs,
      bodyTimeout: settings.totalTimeoutMs,
      maxResponseSize: settings.maxResponseBytes,
      connections: settings.maxInFlight,
    });
  }

  /** GETs `url`; `what` names the remote in errors ("the Minecraft session server"). */
  async get(url: string | URL, what: string, headers: Record<string, string> = {}): Promise<RemoteResponse> {
    if (this.#inFlight >= this.#settings.maxInFlight) throw upstreamUnavailable(`${what} (too many calls in flight)`, 1000);
    const guard = this.#settings.publicOnly;
    const host = new URL(url).hostname.replace(/^\[|\]$/g, "");
    // An address literal is connected to without a lookup: check it here.
    if (guard && isIP(host) && !addressAllowed(host, guard.allowLoopback)) throw upstreamUnavailable(`${what} (a private address)`, 60_000);
    const origin = new URL(url).host;
    const hostLimit = this.#settings.maxInFlightPerHost ?? this.#settings.maxInFlight;
    const atHost = this.#perHost.get(origin) ?? 0;
    if (atHost >= hostLimit) throw upstreamUnavailable(`${what} (too many calls in flight to this host)`, 1000);
    this.#perHost.set(origin, atHost + 1);
    this.#inFlight++;
    try {
      const response = await fetch(url, {
        dispatcher: this.#agent,
        // No compression: a small compressed body could decode to gigabytes past the size limit.
        headers: { accept: "application/json", ...headers, "accept-encoding": "identity" },
        redirect: "error",
        signal: AbortSignal.timeout(this.#settings.totalTimeoutMs),
      });
      return { status: response.status, body: await readBounded(response, this.#settings.maxResponseBytes), headers: response.headers };
    } catch (error) {
      if (error instanceof TesseraError) throw error;
      throw upstreamUnavailable(what, 1000, error);
    } finally {
      this.#inFlight--;
      const left = (this.#perHost.get(origin) ?? 1) - 1;
      if (left <= 0) this.#perHost.delete(origin);
      else this.#perHost.set(origin, left);
    }
  }

  /** A fetch for jose's createRemoteJWKSet ([customFetch]) with the same bounds. */
  readonly fetchForJose = async (url: string, options: { headers: Headers; method: string; redirect: "manual"; signal: AbortSignal }): Promise<globalThis.Response> => {
    const response = await this.get(url, "the OpenID Connect issuer's JWKS", Object.fromEntries(options.headers.entries()));
    // An issuer that cannot answer now is unavailable, not a reason to fail (and count) the login.
    if (response.status !== 200) throw upstreamUnavailable("the OpenID Connect issuer's JWKS", 1000);
    return new Response(response.body, { status: response.status, headers: { "content-type": response.headers.get("content-type") ?? "application/json" } });
  };

  async close(): Promise<void> {
    await this.#agent.close();
  }
}

/** The body as text, counted as it streams (after any decoding): past `maxBytes` the call fails. */
/** dns.lookup that fails for any address Tessera may not connect to. */
function publicLookup(allowLoopback: boolean) {
  return (hostname: string, options: object, callback: (error: Error | null, address: string | LookupAddress[], family?: number) => void): void => {
    dnsLookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error) return callback(error, "");
      const refused = addresses.find((a) => !addressAllowed(a.address, allowLoopback));
      if (refused) return callback(Object.assign(new Error(`${hostname} resolves to a private address`), { code: "EPRIVATE" }), "");
      if ((options as { all?: boolean }).all) return callback(null, addresses);
      return callback(null, addresses[0]!.address, addresses[0]!.family);
    });
  };
}

async function readBounded(response: UndiciResponse, maxBytes: number): Promise<string> {
  const encoding = response.headers.get("content-encoding");
  const length = Number(response.headers.get("content-length") ?? "0");
  if ((encoding && encoding.toLowerCase() !== "identity") || length > maxBytes) {
    await response.body?.cancel();
    throw new Error(encoding ? `response is ${encoding}-encoded though identity was asked for` : `response of ${length} bytes is over the ${maxBytes}-byte limit`);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of response.body ?? []) {
    size += chunk.byteLength;
    if (size > maxBytes) throw new Error(`response is over the ${maxBytes}-byte limit`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}
