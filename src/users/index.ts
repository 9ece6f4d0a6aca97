// Users: what the rest of the code may use.
export { ExternalIdentityEntity, UserEntity, type User } from "./user.entity.ts";
export { accountThrottleKey, UserService, type ExternalIdentityInput, type NewUserInput, type PreparedUser } from "./user.service.ts";
export { DEFAULT_PASSWORD_MIN_LENGTH, hashPassword, PASSWORD_ABSOLUTE_MIN_LENGTH, PASSWORD_MAX_LENGTH, PasswordHasher, PasswordPolicy } from "./password.ts";
export { toUserMessage, userServiceImpl } from "./user.grpc.ts";
