import { defineEntity, p, type InferEntity } from "@mikro-orm/core";
import { TenantEntity } from "../tenants/index.ts";
import { UserEntity } from "../users/index.ts";
import { GroupEntity } from "../permissions/index.ts";

/**
 * A region: a signing identity of the registry (a service, or a user's own
 * region for the seed's user flow). Ids are DNS labels, unique across the
 * registry (they appear in DNS names and in the public document); each region
 * belongs to one tenant.
 */
export const RegionEntity = defineEntity({
  name: "Region",
  tableName: "regions",
  properties: {
    id: p.string().length(63).primary(),
    tenant: () => p.manyToOne(TenantEntity).deleteRule("cascade"),
    alias: p.string().length(200).default(""),
    active: p.boolean().default(true),
    /** Set for a user's own region (its id is the user's id): assertions it signs verify as that user. */
    user: () => p.manyToOne(UserEntity).nullable().deleteRule("cascade"),
    createdAt: p.datetime().onCreate(() => new Date()),
    updatedAt: p.datetime().onCreate(() => new Date()).onUpdate(() => new Date()),
  },
  indexes: [{ properties: ["tenant", "id"] }],
});
export type Region = InferEntity<typeof RegionEntity>;

/**
 * A public key a region signs its assertions with, for one capability. Its id
 * is the session id (`sid`) of the access tokens exchanged for its
 * assertions: revoking the capability revokes them at once.
 */
export const CapabilityEntity = defineEntity({
  name: "Capability",
  tableName: "capabilities",
  properties: {
    id: p.uuid().primary(),
    region: () => p.manyToOne(RegionEntity).deleteRule("cascade"),
    name: p.string().length(63),
    /**
     * The group whose grants its principals get: the tenant's group named like
     * the capability when it was published (bound by id, so a later rename or a
     * new group of that name changes nothing); none when there was none.
     */
    group: () => p.manyToOne(GroupEntity).nullable().deleteRule("set null"),
    /** The public JWK (kty, crv, x[, y], kid = RFC 7638 thumbprint, alg). */
    publicJwk: p.json<Record<string, string>>(),
    kid: p.string().length(64),
    /** EdDSA, ES256, ES384 or ES512: the one algorithm its assertions may use. */
    algorithm: p.string().length(8),
    active: p.boolean().default(true),
    expiresAt: p.datetime(),
    createdAt: p.datetime().onCreate(() => new Date()),
    updatedAt: p.datetime().onCreate(() => new Date()).onUpdate(() => new Date()),
  },
  uniques: [{ properties: ["region", "name"] }],
});
export type Capability = InferEntity<typeof CapabilityEntity>;

/** The registry authority's Ed25519 key that signs every record; private half sealed under the master key. */
export const RegistryAuthorityKeyEntity = defineEntity({
  name: "RegistryAuthorityKey",
  tableName: "registry_authority_keys",
  properties: {
    kid: p.string().length(64).primary(),
    publicJwk: p.json<Record<string, string>>(),
    privateKeyEncrypted: p.text().hidden().lazy(),
    createdAt: p.datetime().onCreate(() => new Date()),
    /** Set when a newer key takes over; a retired key signs nothing. */
    retiredAt: p.datetime().nullable(),
  },
});
export type RegistryAuthorityKey = InferEntity<typeof RegistryAuthorityKeyEntity>;
