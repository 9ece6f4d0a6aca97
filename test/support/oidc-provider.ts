// A real OpenID Connect provider (node oidc-provider) on a loopback port, and
// a scripted user agent that goes through its authorization code flow (login
// and consent interactions, code exchange) to obtain real ID tokens. The
// provider behind the port can be replaced (key rotation) while the issuer
// URL stays the same.
import { createHash, randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, type JWK } from "jose";
import Provider, { type ClientMetadata } from "oidc-provider";

export const REDIRECT_URI = "http://127.0.0.1/callback";
export const CLIENT_SECRET = "a client secret long enough for HS256 signing of id tokens";

export interface TestOidcProvider {
  issuer: string;
  /** The ID token a login of `accountId` at `clientId` yields, through the provider's own flow. */
  idToken(options: { clientId?: string; accountId: string; nonce?: string }): Promise<string>;
  /** Replaces the provider's signing key (a new provider instance behind the same issuer). */
  rotateKey(): Promise<void>;
  /** The ID token lifetime of tokens issued from now on. */
  setIdTokenTtl(seconds: number): void;
  /** The claims an account shows (preferred_username, …). */
  accounts: Map<string, Record<string, unknown>>;
  close(): Promise<void>;
}

async function signingKey(alg: "ES256" | "RS256"): Promise<JWK> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  return { ...(await exportJWK(privateKey)), alg, use: "sig", kid: randomBytes(6).toString("hex") };
}

export async function startOidcProvider(): Promise<TestOidcProvider> {
  const accounts = new Map<string, Record<string, unknown>>();
  let idTokenTtl = 3600;
  let current: Provider | undefined;
  const http: Server = createServer((req, res) => {
    if (!current) {
      res.writeHead(503);
      res.end();
      return;
    }
    void current.callback()(req, res);
  });
  http.listen(0, "127.0.0.1");
  await new Promise((resolve) => http.once("listening", resolve));
  const issuer = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;

  const client = (client_id: string, extra: Partial<ClientMetadata> = {}): ClientMetadata => ({
    client_id,
    client_secret: CLIENT_SECRET,
    redirect_uris: [REDIRECT_URI],
    response_types: ["code"],
    grant_types: ["authorization_code"],
    token_endpoint_auth_method: "client_secret_post",
    ...extra,
  });
  const build = (keys: JWK[]) =>
    new Provider(issuer, {
      clients: [
        client("tessera-app", { id_token_signed_response_alg: "ES256" }),
        client("other-app", { id_token_signed_response_alg: "ES256" }),
        client("hmac-app", { id_token_signed_response_alg: "HS256" }),
      ],
      jwks: { keys: keys as never },
      cookies: { keys: ["a test cookie signing key"] },
      claims: { openid: ["sub"], profile: ["preferred_username", "name"], email: ["email"] },
      conformIdTokenClaims: false,
      enabledJWA: { idTokenSigningAlgValues: ["ES256", "RS256", "HS256"] },
      ttl: { IdToken: () => idTokenTtl },
      async findAccount(_ctx, id) {
        return { accountId: id, claims: () => ({ sub: id, ...(accounts.get(id) ?? {}) }) };
      },
    });
  current = build([await signingKey("ES256")]);

  async function idToken({ clientId = "tessera-app", accountId, nonce }: { clientId?: string; accountId: string; nonce?: string }): Promise<string> {
    const cookies = new Map<string, string>();
    const send = async (url: string, init: RequestInit = {}) => {
      const response = await fetch(new URL(url, issuer), {
        ...init,
        redirect: "manual",
        headers: { ...(init.headers as Record<string, string>), cookie: [...cookies].map(([k, v]) => `${k}=${v}`).join("; ") },
      });
      for (const line of response.headers.getSetCookie()) {
        const [pair] = line.split(";");
        const i = pair!.indexOf("=");
        cookies.set(pair!.slice(0, i), pair!.slice(i + 1));
      }
      return response;
    };
    const verifier = randomBytes(32).toString("base64url");
    const auth = new URL("/auth", issuer);
    for (const [k, v] of Object.entries({
      client_id: clientId,
      response_type: "code",
      scope: "openid profile",
      redirect_uri: REDIRECT_URI,
      state: randomBytes(8).toString("hex"),
      code_challenge: createHash("sha256").update(verifier).digest("base64url"),
      code_challenge_method: "S256",
      ...(nonce ? { nonce } : {}),
    })) auth.searchParams.set(k, v);
    let location = auth.href;
    for (let step = 0; step < 10; step++) {
      if (location.startsWith(REDIRECT_URI)) {
        const code = new URL(location).searchParams.get("code");
        if (!code) throw new Error(`the provider refused the login: ${location}`);
        const token = await send("/token", {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: new URLSearchParams({ grant_type: "authorization_code", code, redirect_uri: REDIRECT_URI, client_id: clientId, client_secret: CLIENT_SECRET, code_verifier: verifier }).toString(),
        });
        const body = (await token.json()) as { id_token?: string; error_description?: string };
        if (!body.id_token) throw new Error(`no id_token: ${JSON.stringify(body)}`);
        return body.id_token;
      }
      const path = new URL(location, issuer).pathname;
      if (path.startsWith("/interaction/")) {
        // The provider's own interaction page says which prompt it wants (login, then consent).
        const page = await (await send(path)).text();
        const prompt = /name="prompt" value="(\w+)"/.exec(page)?.[1];
        if (!prompt) throw new Error(`no prompt on the interaction page: ${page.slice(0, 200)}`);
        const submitted = await send(path, {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: new URLSearchParams({ prompt, login: accountId, password: "any" }).toString(),
        });
        location = submitted.headers.get("location") ?? "";
      } else {
        const response = await send(location);
        location = response.headers.get("location") ?? "";
        if (!location) throw new Error(`no redirect from ${path}: ${response.status} ${(await response.text()).slice(0, 200)}`);
      }
    }
    throw new Error("the login flow did not finish");
  }

  return {
    issuer,
    idToken,
    accounts,
    async rotateKey() {
      current = build([await signingKey("ES256")]);
    },
    setIdTokenTtl(seconds) {
      idTokenTtl = seconds;
    },
    async close() {
      http.closeAllConnections();
      await new Promise((resolve) => http.close(resolve));
    },
  };
}
