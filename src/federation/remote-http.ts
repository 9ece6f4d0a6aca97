// The one HTTP client Tessera uses to call remote authentication systems (the
// Minecraft session server, OpenID Connect issuers). Every call is bounded:
// a connect timeout, a total timeout, a response-size limit and a number of
// calls in flight; past any bound the caller gets UPSTREAM_UNAVAILABLE with a
// retry delay, never a hang and never unbounded memory.
import { Agent, fetch, type Response as UndiciResponse } from "undici";
import { TesseraError } from "../errors.ts";

export interface RemoteHttpSettings {
  connectTimeoutMs: number;
  /** From sending the request to the last byte of the body. */
  totalTimeoutMs: number;
  /** Calls in flight at once; more are refused at once (UPSTREAM_UNAVAILABLE). */
  maxInFlight: number;
  /** Largest response body read. */
  maxResponseBytes: number;
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

  constructor(settings: RemoteHttpSettings) {
    this.#settings = settings;
    this.#agent = new Agent({
      connect: { timeout: settings.connectTimeoutMs },
      headersTimeout: settings.totalTimeoutMs,
      bodyTimeout: settings.totalTimeoutMs,
      maxResponseSize: settings.maxResponseBytes,
      connections: settings.maxInFlight,
    });
  }

  /** GETs `url`; `what` names the remote in errors ("the Minecraft session server"). */
  async get(url: string | URL, what: string, headers: Record<string, string> = {}): Promise<RemoteResponse> {
    if (this.#inFlight >= this.#settings.maxInFlight) throw upstreamUnavailable(`${what} (too many calls in flight)`, 1000);
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
