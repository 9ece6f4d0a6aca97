// The peer of the benchmarks, run as its own process by bench/peer.ts:
// node oidc-provider (devDependency) in production mode (NODE_ENV=production,
// no devInteractions, own keys, own findAccount), its bundled in-memory
// adapter, one confidential client allowed client_credentials, refresh_token
// and authorization_code, introspection on, refresh-token rotation on, and
// EdDSA-signed JWT access tokens for resource urn:bench:jwt (RFC 9068, via
// resource indicators) or opaque ones for urn:bench:opaque.
//
// Refresh tokens need an authorization_code grant; instead of scripting a
// browser login per session, the parent asks over IPC ({ seed: n }) and this
// process mints them with the provider's own models, exactly the records the
// authorization_code grant would store: a Grant (offline_access, api:read on
// urn:bench:jwt) saved through the adapter, and a RefreshToken bound to it
// (gty authorization_code). The refresh_token grant then runs its normal
// path: find, validate grant and account, consume, rotate, sign the JWT.
import { generateKeyPairSync, randomBytes } from "node:crypto";

export const PEER_CLIENT_ID = "bench-client";
export const PEER_CLIENT_SECRET = "bench-client-secret-0123456789abcdef";
export const RESOURCE_JWT = "urn:bench:jwt";
export const RESOURCE_OPAQUE = "urn:bench:opaque";
export const PEER_SCOPE = "api:read";

interface Model {
  save(): Promise<string>;
  addOIDCScope(scope: string): void;
  addResourceScope(resource: string, scope: string): void;
}
interface ProviderLike {
  listen(port: number, host: string, cb: () => void): unknown;
  Grant: new (fields: Record<string, unknown>) => Model;
  RefreshToken: new (fields: Record<string, unknown>) => Model;
  Client: { find(id: string): Promise<unknown> };
}

if (process.argv[2] === "--serve") {
  process.env.NODE_ENV = "production";
  const port = Number(process.argv[3]);
  // Non-literal specifiers: oidc-provider ships no type declarations.
  const { default: Provider } = (await import("oidc-provider" as string)) as { default: new (issuer: string, config: object) => ProviderLike };
  const { default: MemoryAdapter } = (await import("oidc-provider/lib/adapters/memory_adapter.js" as string)) as {
    default: new (model: string, store: unknown) => unknown;
  };
  const { default: LRU } = (await import("oidc-provider/lib/helpers/lru.js" as string)) as { default: new (o: { maxSize: number }) => unknown };
  // The bundled memory adapter, with its LRU sized so that nothing is evicted during a run (its
  // default, 1000 entries, would forget spent refresh tokens and most opaque tokens under load).
  const store = new LRU({ maxSize: 2_000_000 });
  const jwk = { ...generateKeyPairSync("ed25519").privateKey.export({ format: "jwk" }), kid: "bench-ed25519", alg: "EdDSA", use: "sig" };
  const provider = new Provider(`http://127.0.0.1:${port}`, {
    adapter: (model: string) => new MemoryAdapter(model, store),
    clients: [
      {
        client_id: PEER_CLIENT_ID,
        client_secret: PEER_CLIENT_SECRET,
        grant_types: ["client_credentials", "refresh_token", "authorization_code"],
        response_types: ["code"],
        redirect_uris: ["https://client.example/cb"],
        token_endpoint_auth_method: "client_secret_basic",
        id_token_signed_response_alg: "EdDSA",
        scope: `openid offline_access ${PEER_SCOPE}`,
      },
    ],
    clientDefaults: { id_token_signed_response_alg: "EdDSA" },
    jwks: { keys: [jwk] },
    cookies: { keys: [randomBytes(32).toString("base64url")] },
    scopes: ["openid", "offline_access", PEER_SCOPE],
    findAccount: async (_ctx: unknown, sub: string) => ({ accountId: sub, claims: async () => ({ sub }) }),
    rotateRefreshToken: true,
    ttl: { AccessToken: 300, ClientCredentials: 300, RefreshToken: 30 * 24 * 3600, Grant: 90 * 24 * 3600 },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => RESOURCE_JWT,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx: unknown, resource: string) => {
          if (resource !== RESOURCE_JWT && resource !== RESOURCE_OPAQUE) throw new Error(`unknown resource ${resource}`);
          return {
            scope: PEER_SCOPE,
            audience: resource,
            accessTokenTTL: 300,
            accessTokenFormat: resource === RESOURCE_JWT ? "jwt" : "opaque",
            jwt: { sign: { alg: "EdDSA" } },
          };
        },
      },
    },
  });
  process.on("message", async (message: { seed: number }) => {
    const client = await provider.Client.find(PEER_CLIENT_ID);
    const tokens: string[] = [];
    for (let i = 0; i < message.seed; i++) {
      const accountId = `user-${i}`;
      const grant = new provider.Grant({ accountId, clientId: PEER_CLIENT_ID });
      grant.addOIDCScope("offline_access");
      grant.addResourceScope(RESOURCE_JWT, PEER_SCOPE);
      const grantId = await grant.save();
      const refreshToken = new provider.RefreshToken({
        client,
        accountId,
        grantId,
        gty: "authorization_code",
        scope: `offline_access ${PEER_SCOPE}`,
        resource: RESOURCE_JWT,
        authTime: Math.floor(Date.now() / 1000),
        expiresWithSession: false,
      });
      tokens.push(await refreshToken.save());
    }
    process.send!({ tokens });
  });
  provider.listen(port, "127.0.0.1", () => process.send!({ listening: port }));
}
