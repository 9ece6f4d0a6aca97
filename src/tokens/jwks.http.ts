// GET /.well-known/jwks.json: the published signing keys, for verifiers that
// speak HTTP. Cacheable for half the key publication lead
// (TESSERA_KEY_PUBLISH_LEAD): a key is published that long before it signs,
// so a verifier honouring max-age holds every key before a token names it.
import { json, type HttpRoute } from "../http/server.ts";
import type { KeyStore } from "./keys.ts";

/** The JWKS max-age for a publication lead: half of it, at most an hour. */
export function jwksMaxAgeSeconds(publishLeadSeconds: number): number {
  return Math.max(0, Math.min(3600, Math.floor(publishLeadSeconds / 2)));
}

export function jwksRoute(keys: KeyStore, publishLeadSeconds: number): HttpRoute {
  const maxAge = jwksMaxAgeSeconds(publishLeadSeconds);
  return (_req, res) => json(res, 200, { keys: keys.jwks() }, { "cache-control": `public, max-age=${maxAge}` });
}
