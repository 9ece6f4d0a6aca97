// Remote authentication systems (Argus's "Remote Authentication System"): the
// Minecraft session server and OpenID Connect issuers, over one bounded HTTP
// client. Nothing here knows tenants, users or tokens.
export { MINECRAFT_NAME, MINECRAFT_SERVER_HASH, MinecraftSessionServer, remoteLoginFailed, type MinecraftProfile } from "./minecraft.ts";
export { issuerUrlProblem, OidcVerifier, unverifiedJwtPart, type OidcIdentity, type OidcIssuerConfig, type OidcSettings } from "./oidc.ts";
export { MINECRAFT_CHALLENGE, MinecraftChallenges, minecraftDigest } from "./minecraft-challenge.ts";
export { addressAllowed, RemoteHttp, upstreamUnavailable, type RemoteHttpSettings } from "./remote-http.ts";
