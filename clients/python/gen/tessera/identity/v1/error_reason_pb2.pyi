from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

ALREADY_EXISTS: ErrorReason
ASSERTION_REPLAYED: ErrorReason
CAPABILITY_NOT_FOUND: ErrorReason
DATABASE_UNAVAILABLE: ErrorReason
DESCRIPTOR: _descriptor.FileDescriptor
ERROR_REASON_UNSPECIFIED: ErrorReason
GROUP_NOT_FOUND: ErrorReason
INTERNAL_ERROR: ErrorReason
INVALID_CREDENTIALS: ErrorReason
INVALID_INPUT: ErrorReason
INVALID_PAGE_TOKEN: ErrorReason
MICROSERVICE_NOT_FOUND: ErrorReason
PASSWORD_MISMATCH: ErrorReason
PERMISSION_DENIED: ErrorReason
PERMISSION_NOT_FOUND: ErrorReason
PERMISSION_NOT_GRANTED: ErrorReason
PROTECTED_RESOURCE: ErrorReason
RATE_LIMITED: ErrorReason
REFRESH_TOKEN_INVALID: ErrorReason
REGION_NOT_FOUND: ErrorReason
REGISTRY_NOT_ALLOWED: ErrorReason
SELF_REGISTRATION_DISABLED: ErrorReason
SERVER_BUSY: ErrorReason
SESSION_NOT_FOUND: ErrorReason
SESSION_REVOKED: ErrorReason
TENANT_DISABLED: ErrorReason
TENANT_NOT_FOUND: ErrorReason
TENANT_SIGNUP_DISABLED: ErrorReason
TOKEN_EXPIRED: ErrorReason
TOKEN_INVALID: ErrorReason
TOKEN_MISSING: ErrorReason
TOO_MANY_ATTEMPTS: ErrorReason
UPSTREAM_UNAVAILABLE: ErrorReason
USER_DISABLED: ErrorReason
USER_NOT_FOUND: ErrorReason
WEAK_PASSWORD: ErrorReason

class ErrorReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
