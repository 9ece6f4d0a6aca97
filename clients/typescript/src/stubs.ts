// Every generated type of Tessera's API (ts-proto, nice-grpc service
// definitions): the seven services, their messages, the enums and the
// ErrorReason values. Generated into ./gen by `npm run generate` from proto/.
export * from "./gen/tessera/identity/v1/common.ts";
export * from "./gen/tessera/identity/v1/error_reason.ts";
export * from "./gen/tessera/identity/v1/issue_service.ts";
export * from "./gen/tessera/identity/v1/permission_service.ts";
export * from "./gen/tessera/identity/v1/refresh_service.ts";
export * from "./gen/tessera/identity/v1/registry_service.ts";
export * from "./gen/tessera/identity/v1/tenant_service.ts";
export * from "./gen/tessera/identity/v1/user_service.ts";
export * from "./gen/tessera/identity/v1/verify_service.ts";
export { FieldMask } from "./gen/google/protobuf/field_mask.ts";
// Each generated file declares these; one answers for all (protobufFileName is common.proto's).
export { protobufFileName, protobufPackage } from "./gen/tessera/identity/v1/common.ts";
export type { DeepPartial, MessageFns } from "./gen/tessera/identity/v1/issue_service.ts";
