// Tenants: what the rest of the code may use.
export { TenantDomainEntity, TenantEntity, type Tenant } from "./tenant.entity.ts";
export { SYSTEM_TENANT_NAME, TenantService } from "./tenant.service.ts";
export { tenantServiceImpl } from "./tenant.grpc.ts";
