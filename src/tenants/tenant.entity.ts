import { defineEntity, p, type InferEntity } from "@mikro-orm/core";
import type { OidcIssuerConfig } from "../federation/index.ts";

export const TenantEntity = defineEntity({
  name: "Tenant",
  tableName: "tenants",
  properties: {
    id: p.uuid().primary(),
    name: p.string().length(63).unique(),
    displayName: p.string().length(200).default(""),
    disabled: p.boolean().default(false),
    selfRegistrationEnabled: p.boolean().default(false),
    /** OpenID Connect issuers whose ID tokens log users in (federation's OidcIssuerConfig). */
    oidcIssuers: p.json<OidcIssuerConfig[]>().default("[]").onCreate(() => []),
    domains: () => p.oneToMany(TenantDomainEntity).mappedBy("tenant").orphanRemoval(),
    createdAt: p.datetime().onCreate(() => new Date()),
    updatedAt: p.datetime().onCreate(() => new Date()).onUpdate(() => new Date()),
  },
});
export type Tenant = InferEntity<typeof TenantEntity>;

/** A hostname or server address mapped to a tenant; unique across tenants (Argus namespaces). */
export const TenantDomainEntity = defineEntity({
  name: "TenantDomain",
  tableName: "tenant_domains",
  properties: {
    domain: p.string().length(253).primary(),
    tenant: () => p.manyToOne(TenantEntity).deleteRule("cascade"),
  },
});
export type TenantDomain = InferEntity<typeof TenantDomainEntity>;
