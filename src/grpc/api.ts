// Every service of the public API, as generated from proto/. The server
// registers all of them (unimplemented ones answer UNIMPLEMENTED after
// authentication), and the deny-by-default test walks all of their methods.
import { IssueServiceDefinition } from "@tessera/client";
import { PermissionServiceDefinition } from "@tessera/client";
import { RefreshServiceDefinition } from "@tessera/client";
import { RegistryServiceDefinition } from "@tessera/client";
import { TenantServiceDefinition } from "@tessera/client";
import { UserServiceDefinition } from "@tessera/client";
import { VerifyServiceDefinition } from "@tessera/client";

export const API_SERVICES = [
  TenantServiceDefinition,
  UserServiceDefinition,
  PermissionServiceDefinition,
  IssueServiceDefinition,
  RefreshServiceDefinition,
  VerifyServiceDefinition,
  RegistryServiceDefinition,
] as const;
