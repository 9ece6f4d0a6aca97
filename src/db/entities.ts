// Every entity of the schema, in one list shared by the server, the migration
// generator and the tests, so both drivers always see the same model.
import { TenantDomainEntity, TenantEntity } from "../tenants/index.ts";
import { ExternalIdentityEntity, UserEntity } from "../users/index.ts";
import { GroupEntity, GroupMemberEntity, MicroserviceEntity, PermissionEntity } from "../permissions/index.ts";
import { RefreshTokenEntity, SessionEntity, SigningKeyEntity } from "../tokens/index.ts";
import { RevocationEventEntity } from "../events/index.ts";
import { ReplayRecordEntity, ThrottleCounterEntity } from "../throttling/index.ts";
import { CapabilityEntity, RegionEntity, RegistryAuthorityKeyEntity } from "../registry/index.ts";

export const entities = [
  TenantEntity,
  TenantDomainEntity,
  UserEntity,
  ExternalIdentityEntity,
  SigningKeyEntity,
  SessionEntity,
  RefreshTokenEntity,
  RevocationEventEntity,
  MicroserviceEntity,
  PermissionEntity,
  GroupEntity,
  GroupMemberEntity,
  ThrottleCounterEntity,
  RegionEntity,
  CapabilityEntity,
  RegistryAuthorityKeyEntity,
  ReplayRecordEntity,
];
