// Permissions: what the rest of the code may use.
export { createAdminGroup } from "./admin-group.ts";
export { anyCovers, grantedPatterns, grantsFromSql, groupPatternsSql, userGrants } from "./grants.ts";
export { ADMIN_GRANTS, ADMIN_GROUP_NAME, IDENTITY_MICROSERVICE, IDENTITY_PERMISSIONS, SELF_GRANTS } from "./identity-permissions.ts";
export { anyPatternMatches, checkPatternList, intersectPatterns, isPermissionPattern, patternMatches } from "./match.ts";
export { GroupEntity, GroupMemberEntity, MicroserviceEntity, PermissionEntity, type Group, type Microservice } from "./permission.entity.ts";
export { permissionServiceImpl, registerMicroserviceAs, toGroupMessage } from "./permission.grpc.ts";
export { PermissionService, type Registration, type RegistrationResult } from "./permission.service.ts";
