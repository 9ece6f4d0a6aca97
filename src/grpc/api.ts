// Every service of the public API, as generated from proto/. The server
// registers all of them (unimplemented ones answer UNIMPLEMENTED after
// authentication), and the deny-by-default test walks all of their methods.
import { IssueServiceDefinition } from "../../gen/tessera/identity/v1/issue_service.ts";
import { PermissionServiceDefinition } from "../../gen/tessera/identity/v1/permission_service.ts";
import { RefreshServiceDefinition } from "../../gen/tessera/identity/v1/refresh_service.ts";
import { RegistryServiceDefinition } from "../../gen/tessera/identity/v1/registry_service.ts";
import { TenantServiceDefinition } from "../../gen/tessera/identity/v1/tenant_service.ts";
import { UserServiceDefinition } from "../../gen/tessera/identity/v1/user_service.ts";
import { VerifyServiceDefinition } from "../../gen/tessera/identity/v1/verify_service.ts";

export const API_SERVICES = [
  TenantServiceDefinition,
  UserServiceDefinition,
  PermissionServiceDefinition,
  IssueServiceDefinition,
  RefreshServiceDefinition,
  VerifyServiceDefinition,
  RegistryServiceDefinition,
] as const;
