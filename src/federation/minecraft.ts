// The Minecraft session server's `hasJoined` (Argus's Mojang path): after a
// client called `join` with its Mojang access token and a one-time server
// hash, `hasJoined?username=…&serverId=…` answers 200 with the player's
// profile (`id`, `name`) or 204 when that player has not joined.
import { TesseraError, unauthenticated } from "../errors.ts";
import { upstreamUnavailable, type RemoteHttp } from "./remote-http.ts";

/** Minecraft profile names: 1-16 letters, digits and '_' (Mojang allows 3-16 today; older accounts are shorter). */
export const MINECRAFT_NAME = /^[A-Za-z0-9_]{1,16}$/;
/** The server hash: Minecraft's signed hexadecimal SHA-1 digest (at most 40 digits and a sign). */
export const MINECRAFT_SERVER_HASH = /^-?[0-9a-f]{1,40}$/;

export interface MinecraftProfile {
  /** The player's UUID in its canonical dashed form (stable across name changes). */
  id: string;
  /** The current profile name, as the session server spells it. */
  name: string;
}

const WHAT = "the Minecraft session server";

export class MinecraftSessionServer {
  readonly #baseUrl: string;
  readonly #http: RemoteHttp;

  /** `baseUrl` is the session server's `…/session/minecraft` endpoint root (TESSERA_MINECRAFT_SESSION_URL). */
  constructor(baseUrl: string, http: RemoteHttp) {
    this.#baseUrl = baseUrl.replace(/\/+$/, "");
    this.#http = http;
  }

  /**
   * The profile when `username` has joined with `serverHash`; null when the
   * session server says it has not, or answers something that does not name
   * this player (both are failed logins). Throws UPSTREAM_UNAVAILABLE when it
   * cannot be asked.
   */
  async hasJoined(username: string, serverHash: string): Promise<MinecraftProfile | null> {
    const url = new URL(`${this.#baseUrl}/hasJoined`);
    url.searchParams.set("username", username);
    url.searchParams.set("serverId", serverHash);
    const response = await this.#http.get(url, WHAT);
    if (response.status === 204 || response.status === 404) return null;
    if (response.status === 429 || response.status >= 500) {
      throw upstreamUnavailable(WHAT, retryAfterMs(response.headers.get("retry-after")));
    }
    // Anything else (a proxy's 403, a 400 …) says nothing about the player: unavailable, not a failed login.
    if (response.status !== 200) throw upstreamUnavailable(WHAT, 1000);
    return parseProfile(response.body, username);
  }
}

function parseProfile(body: string, username: string): MinecraftProfile | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return null;
  }
  if (typeof parsed !== "object" || parsed === null) return null;
  const { id, name } = parsed as { id?: unknown; name?: unknown };
  if (typeof id !== "string" || typeof name !== "string") return null;
  const hex = id.replaceAll("-", "").toLowerCase();
  if (!/^[0-9a-f]{32}$/.test(hex) || !MINECRAFT_NAME.test(name)) return null;
  // Names are unique case-insensitively; an answer about another player is no answer.
  if (name.toLowerCase() !== username.toLowerCase()) return null;
  return { id: `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`, name };
}

function retryAfterMs(header: string | null): number {
  const seconds = header && /^\d{1,5}$/.test(header) ? Number(header) : 1;
  return Math.min(Math.max(seconds, 1), 60) * 1000;
}

/** The failed-login error of a remote credential (as a wrong password). */
export function remoteLoginFailed(message: string): TesseraError {
  return unauthenticated("INVALID_CREDENTIALS", message);
}
