// Every entity of the schema, in one list shared by the server, the migration
// generator and the tests, so both drivers always see the same model.
import { TenantDomainEntity, TenantEntity } from "../tenants/tenant.entity.ts";
import { UserEntity } from "../users/user.entity.ts";
import { GroupEntity, GroupMemberEntity, MicroserviceEntity, PermissionEntity } from "../permissions/permission.entity.ts";
import { RefreshTokenEntity, RevocationEventEntity, SessionEntity, SigningKeyEntity } from "../tokens/token.entity.ts";
import { ThrottleCounterEntity } from "../throttling/throttle-counter.entity.ts";

export const entities = [
  TenantEntity,
  TenantDomainEntity,
  UserEntity,
  SigningKeyEntity,
  SessionEntity,
  RefreshTokenEntity,
  RevocationEventEntity,
  MicroserviceEntity,
  PermissionEntity,
  GroupEntity,
  GroupMemberEntity,
  ThrottleCounterEntity,
];
