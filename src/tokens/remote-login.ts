// Login through a remote authentication system (Argus): the Minecraft session
// server's hasJoined, or an OpenID Connect issuer's ID token. The remote
// system proves who the user is; from there it is a login like a password
// login: the user (provisioned at its first login), its grants, the elected
// permissions, a session. The remote system is never asked again for a
// refresh: the session's refresh token carries it from here.
import { createHash } from "node:crypto";
import type { EntityManager } from "@mikro-orm/core";
import { invalidInput, notFound, TesseraError, unauthenticated, Violations } from "../errors.ts";
import {
  MINECRAFT_CHALLENGE,
  MINECRAFT_NAME,
  MINECRAFT_SERVER_HASH,
  minecraftDigest,
  remoteLoginFailed,
  unverifiedJwtPart,
  type MinecraftChallenges,
  type MinecraftSessionServer,
  type OidcIssuerConfig,
  type OidcVerifier,
} from "../federation/index.ts";
import { grantedPatterns } from "../permissions/index.ts";
import { foldKey } from "../shared/validation.ts";
import type { Tenant } from "../tenants/index.ts";
import { throttleKey, type LoginThrottle } from "../throttling/index.ts";
import type { ExternalIdentityInput, User } from "../users/index.ts";
import type { AccessTokenSigner, TokenSet } from "./access-token-signer.ts";
import { checkAudience, checkRequested, electPermissions } from "./password-login.ts";
import type { SessionStore } from "./session-store.ts";

/** What remote logins need from the remote systems and the other domains (wired in app.ts). */
export interface RemoteLoginDeps {
  throttle: LoginThrottle;
  minecraft: MinecraftSessionServer;
  /** Server ids Tessera issues for Minecraft logins, bound to a tenant. */
  minecraftChallenges: MinecraftChallenges;
  /** Accept Argus's client-chosen server hash (any Minecraft server the player joins learns it). */
  minecraftClientHash: boolean;
  oidc: OidcVerifier;
  tenantByServerAddress(em: EntityManager, address: string): Promise<Tenant | null>;
  tenantByNameOrId(em: EntityManager, nameOrId: string): Promise<Tenant | null>;
  /** The user of a verified identity; created at the first login, joining `groupIds` besides the tenant's default groups. */
  provision(em: EntityManager, tenant: Tenant, identity: ExternalIdentityInput, groupIds: readonly string[]): Promise<User>;
  /** Single-use proofs: an ID token logs in once, on any tenant and any replica. */
  replays: { remember(kind: string, parts: readonly string[], expiresAt: Date): Promise<boolean> };
}

interface Election {
  requested: string[];
  audience: string;
  peer: string;
}

export interface MinecraftLoginInput extends Election {
  username: string;
  serverHash: string;
  serverAddress: string;
  /** A challenge of CreateMinecraftChallenge (then serverHash is empty). */
  serverId: string;
}

export interface OidcLoginInput extends Election {
  tenant: string;
  idToken: string;
  nonce: string;
}

export const MINECRAFT_ISSUER = "minecraft";

export class RemoteLogin {
  readonly #signer: AccessTokenSigner;
  readonly #sessions: SessionStore;
  readonly #deps: RemoteLoginDeps;
  readonly #defaultAudience: string;

  constructor(signer: AccessTokenSigner, sessions: SessionStore, deps: RemoteLoginDeps, defaultAudience: string) {
    this.#signer = signer;
    this.#sessions = sessions;
    this.#deps = deps;
    this.#defaultAudience = defaultAudience;
  }

  async minecraft(em: EntityManager, input: MinecraftLoginInput): Promise<TokenSet> {
    const v = new Violations();
    if (!MINECRAFT_NAME.test(input.username)) v.add("minecraft.username", "must be a Minecraft profile name: 1-16 letters, digits and _");
    if (input.serverId && input.serverHash) v.add("minecraft.server_hash", "leave empty with server_id");
    else if (input.serverId) {
      if (!MINECRAFT_CHALLENGE.test(input.serverId)) v.add("minecraft.server_id", "must be a server id from CreateMinecraftChallenge");
    } else if (!this.#deps.minecraftClientHash) {
      v.add("minecraft.server_id", "is required: get one from CreateMinecraftChallenge (a client-chosen server_hash is accepted only with TESSERA_MINECRAFT_CLIENT_HASH=true)");
    } else if (!MINECRAFT_SERVER_HASH.test(input.serverHash)) {
      v.add("minecraft.server_hash", "must be the server hash sent to join: up to 40 lower-case hexadecimal digits, optionally signed");
    }
    if (!input.serverAddress.trim()) v.add("minecraft.server_address", "is required");
    checkElection(input, v);
    v.throwIfAny();

    const tenant = await this.#deps.tenantByServerAddress(em, input.serverAddress);
    if (!tenant) throw notFound("TENANT_NOT_FOUND", "no tenant serves this server address");
    // Per player and caller address only: a player's name is public and a server hash cannot be
    // guessed, so an account-wide ceiling would only let strangers lock a player out.
    const account = throttleKey("minecraft", tenant.id, foldKey(input.username), input.peer);
    let profile: Awaited<ReturnType<MinecraftSessionServer["hasJoined"]>> = null;
    let failure: TesseraError | undefined;
    const ok = await this.#deps.throttle.attempt(account, input.peer, async () => {
      let serverHash = input.serverHash;
      let proof: { parts: string[]; expiresAt: Date };
      if (input.serverId) {
        const challenge = this.#deps.minecraftChallenges.check(input.serverId, tenant.id);
        if (!challenge) {
          failure = remoteLoginFailed("the server id is not a live challenge for this server address");
          return false;
        }
        serverHash = minecraftDigest(input.serverId);
        proof = { parts: ["join", foldKey(input.username), serverHash], expiresAt: challenge.expiresAt };
      } else {
        // The session server answers hasJoined for a short while after join; a hash is remembered longer.
        proof = { parts: ["join", foldKey(input.username), serverHash], expiresAt: new Date(Date.now() + 10 * 60_000) };
      }
      profile = await this.#deps.minecraft.hasJoined(input.username, serverHash);
      if (profile === null) return false;
      // One login per join.
      if (!(await this.#deps.replays.remember("minecraft", proof.parts, proof.expiresAt))) {
        profile = null;
        failure = remoteLoginFailed("this join was already used to log in");
        return false;
      }
      return true;
    });
    if (!ok || !profile) throw failure ?? remoteLoginFailed("the player has not joined this server (or the session server's answer does not name this player)");
    const { id, name } = profile as { id: string; name: string };
    if (tenant.disabled) throw unauthenticated("TENANT_DISABLED", "the tenant is disabled");
    const user = await this.#deps.provision(em, tenant, { issuer: MINECRAFT_ISSUER, subject: id, name, usernameSuffix: "minecraft" }, []);
    return this.#issue(em, tenant, user, id, input);
  }

  /** A server id for a Minecraft login into the tenant of `serverAddress`, and the digest to `join` with. */
  async minecraftChallenge(em: EntityManager, serverAddress: string): Promise<{ serverId: string; serverHash: string; expiresAt: Date }> {
    if (!serverAddress.trim()) throw invalidInput([{ field: "server_address", description: "is required" }]);
    const tenant = await this.#deps.tenantByServerAddress(em, serverAddress);
    if (!tenant) throw notFound("TENANT_NOT_FOUND", "no tenant serves this server address");
    const { serverId, expiresAt } = this.#deps.minecraftChallenges.issue(tenant.id);
    return { serverId, serverHash: minecraftDigest(serverId), expiresAt };
  }

  async oidc(em: EntityManager, input: OidcLoginInput): Promise<TokenSet> {
    const v = new Violations();
    if (!input.tenant) v.add("oidc.tenant", "is required");
    if (!input.idToken) v.add("oidc.id_token", "is required");
    checkElection(input, v);
    v.throwIfAny();

    // An unknown tenant is told apart from an untrusted issuer no more than an unknown user from a wrong password.
    const tenant = await this.#deps.tenantByNameOrId(em, input.tenant);
    const trusted: readonly OidcIssuerConfig[] = tenant?.oidcIssuers ?? [];
    const claimed = unverifiedClaims(input.idToken);
    // Keyed on claims nobody verified yet, so per caller address too: a forged token naming a victim's
    // sub must not count against the victim's logins from elsewhere.
    const account = throttleKey("oidc", tenant?.id ?? foldKey(input.tenant), claimed.iss, claimed.sub, input.peer);
    let failure: TesseraError | undefined;
    let verified: Awaited<ReturnType<OidcVerifier["verify"]>> | undefined;
    const ok = await this.#deps.throttle.attempt(account, input.peer, async () => {
      try {
        verified = await this.#deps.oidc.verify(input.idToken, trusted, input.nonce);
        // An ID token is a proof for one login: presented again (here, at another tenant that trusts the
        // same issuer and client, on another replica) it is refused, as a failed login.
        const { identity } = verified;
        // Without a jti, the signed part (header and claims) names the token: the signature's spelling can vary.
        const signed = input.idToken.split(".").slice(0, 2).join(".");
        const proof = identity.jti ? `jti:${identity.jti}` : `token:${createHash("sha256").update(signed).digest("base64url")}`;
        if (!(await this.#deps.replays.remember("oidc", [identity.issuer, proof], identity.expiresAt))) {
          verified = undefined;
          failure = remoteLoginFailed("this ID token was already used to log in");
          return false;
        }
        return true;
      } catch (error) {
        // A token that does not verify is a failed login; an issuer that cannot be asked is not.
        if (error instanceof TesseraError && error.reason === "INVALID_CREDENTIALS") {
          failure = error;
          return false;
        }
        throw error;
      }
    });
    if (!ok || !verified || !tenant) throw failure ?? remoteLoginFailed("the ID token does not verify");
    const { identity, config } = verified as NonNullable<typeof verified>;
    if (tenant.disabled) throw unauthenticated("TENANT_DISABLED", "the tenant is disabled");
    const user = await this.#deps.provision(
      em,
      tenant,
      { issuer: identity.issuer, subject: identity.subject, name: identity.name, usernameSuffix: new URL(identity.issuer).host },
      config.defaultGroupIds,
    );
    // The session starts only while the tenant still trusts this issuer with this client (re-checked under the
    // tenant row's lock): a login that raced the issuer's removal starts none.
    return this.#issue(em, tenant, user, undefined, input, { issuer: config.issuer, clientId: config.clientId });
  }

  async #issue(
    em: EntityManager,
    tenant: Tenant,
    user: User,
    upnSubject: string | undefined,
    input: Election,
    trust?: { issuer: string; clientId: string },
  ): Promise<TokenSet> {
    if (user.disabled) throw unauthenticated("USER_DISABLED", "the user is disabled");
    const elected = electPermissions(await grantedPatterns(em, user.id), input.requested);
    const audience = input.audience || this.#defaultAudience;
    const sessionId = crypto.randomUUID();
    const access = await this.#signer.signOffloaded({ sub: user.id, tid: tenant.id, tenantName: tenant.name, sid: sessionId, elected, audience, kind: "user", username: user.username, upnSubject });
    const session = await this.#sessions.start(em, {
      sessionId,
      tenantId: tenant.id,
      user,
      passwordHash: null,
      upnSubject,
      elected,
      audience,
      peer: input.peer,
      ...(trust ? { oidcTrust: trust } : {}),
    });
    return { ...access, refreshToken: session.refreshToken, refreshExpiresAt: session.refreshExpiresAt, sessionId, granted: elected, kind: "user" };
  }
}

function checkElection(input: Election, v: Violations): void {
  checkRequested(input.requested, "requested_permissions", v);
  checkAudience(input.audience, v);
}

/** `iss` and `sub` as the token claims them, before verification: only to key the throttle. */
function unverifiedClaims(idToken: string): { iss: string; sub: string } {
  const { iss, sub } = unverifiedJwtPart(idToken, 1);
  return { iss: typeof iss === "string" ? iss.slice(0, 255) : "", sub: typeof sub === "string" ? sub.slice(0, 255) : "" };
}
