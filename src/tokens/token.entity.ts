import { defineEntity, p, type InferEntity } from "@mikro-orm/core";
import { TenantEntity } from "../tenants/index.ts";
import { UserEntity } from "../users/index.ts";

/** An Ed25519 signing key; the private part is encrypted under the master key. */
export const SigningKeyEntity = defineEntity({
  name: "SigningKey",
  tableName: "signing_keys",
  properties: {
    kid: p.string().length(64).primary(),
    algorithm: p.string().length(16),
    /** Public JWK (JSON), published in the JWKS. */
    publicJwk: p.json<Record<string, string>>(),
    /** AES-256-GCM(iv | tag | PKCS#8 DER) under TESSERA_MASTER_KEY, base64. */
    privateKeyEncrypted: p.text().hidden().lazy(),
    createdAt: p.datetime().onCreate(() => new Date()),
    /** Published from creation; signs only from this time (so verifiers learn it first). */
    activatesAt: p.datetime(),
    /** Set when a newer key takes over signing. */
    retiredAt: p.datetime().nullable(),
    /** When the public key leaves the JWKS (retiredAt + longest token lifetime). */
    expiresAt: p.datetime().nullable(),
  },
});
export type SigningKey = InferEntity<typeof SigningKeyEntity>;

/** A server-side login. Revoking it kills its access and refresh tokens at once. */
export const SessionEntity = defineEntity({
  name: "Session",
  tableName: "sessions",
  properties: {
    id: p.uuid().primary(),
    tenant: () => p.manyToOne(TenantEntity).deleteRule("cascade"),
    /** Null for service sessions. */
    user: () => p.manyToOne(UserEntity).nullable().deleteRule("cascade"),
    kind: p.string().length(16),
    subject: p.string().length(255),
    /** Elected permission patterns (never above the grants at election time). */
    elected: p.json<string[]>(),
    audience: p.string().length(255),
    clientAddress: p.string().length(128).default(""),
    /** The subject part of the tokens' `upn` when it is not the user id (remote logins: the external id). */
    upnSubject: p.string().length(255).nullable(),
    createdAt: p.datetime().onCreate(() => new Date()),
    refreshedAt: p.datetime().onCreate(() => new Date()),
    /** Sliding expiry, pushed forward by each refresh up to absoluteExpiresAt. */
    expiresAt: p.datetime(),
    absoluteExpiresAt: p.datetime(),
    revokedAt: p.datetime().nullable(),
    revokeReason: p.string().length(32).nullable(),
  },
  indexes: [
    { properties: ["user", "createdAt"] },
    // Retention (retention.ts) finds ended sessions by these.
    { properties: ["expiresAt"] },
    { properties: ["revokedAt"] },
  ],
});
export type Session = InferEntity<typeof SessionEntity>;

/** One refresh token of a session, stored only as its SHA-256 hash. */
export const RefreshTokenEntity = defineEntity({
  name: "RefreshToken",
  tableName: "refresh_tokens",
  properties: {
    hash: p.string().length(64).primary(),
    session: () => p.manyToOne(SessionEntity).deleteRule("cascade"),
    createdAt: p.datetime().onCreate(() => new Date()),
    expiresAt: p.datetime(),
    /** Set when rotated; presenting a used token again revokes the session. */
    usedAt: p.datetime().nullable(),
    /**
     * Handed out more than once (to a re-presentation within the grace window):
     * a token that was shared gets no grace itself, so a thief who follows every
     * rotation of the owner within the window is caught at the next one.
     */
    shared: p.boolean().default(false),
  },
  // A session's tokens (deleting a session cascades to them), and expired ones for retention.
  indexes: [{ properties: ["session"] }, { properties: ["expiresAt"] }],
});
export type RefreshToken = InferEntity<typeof RefreshTokenEntity>;
