from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tessera.identity.v1 import common_pb2 as _common_pb2
from tessera.identity.v1 import options_pb2 as _options_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
REVOCATION_KIND_GRANTS_CHANGED: RevocationKind
REVOCATION_KIND_KEY_ADDED: RevocationKind
REVOCATION_KIND_KEY_RETIRED: RevocationKind
REVOCATION_KIND_REGISTRY_CHANGED: RevocationKind
REVOCATION_KIND_SESSION_REVOKED: RevocationKind
REVOCATION_KIND_TENANT_REVOKED: RevocationKind
REVOCATION_KIND_UNSPECIFIED: RevocationKind
REVOCATION_KIND_USER_REVOKED: RevocationKind

class CheckPermissionRequest(_message.Message):
    __slots__ = ["permission", "token"]
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    permission: str
    token: str
    def __init__(self, token: _Optional[str] = ..., permission: _Optional[str] = ...) -> None: ...

class CheckPermissionResponse(_message.Message):
    __slots__ = ["allowed", "principal"]
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    principal: Principal
    def __init__(self, allowed: bool = ..., principal: _Optional[_Union[Principal, _Mapping]] = ...) -> None: ...

class GetJwksRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class GetJwksResponse(_message.Message):
    __slots__ = ["keys"]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[JsonWebKey]
    def __init__(self, keys: _Optional[_Iterable[_Union[JsonWebKey, _Mapping]]] = ...) -> None: ...

class JsonWebKey(_message.Message):
    __slots__ = ["alg", "crv", "kid", "kty", "use", "x"]
    ALG_FIELD_NUMBER: _ClassVar[int]
    CRV_FIELD_NUMBER: _ClassVar[int]
    KID_FIELD_NUMBER: _ClassVar[int]
    KTY_FIELD_NUMBER: _ClassVar[int]
    USE_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    alg: str
    crv: str
    kid: str
    kty: str
    use: str
    x: str
    def __init__(self, kid: _Optional[str] = ..., kty: _Optional[str] = ..., crv: _Optional[str] = ..., x: _Optional[str] = ..., alg: _Optional[str] = ..., use: _Optional[str] = ...) -> None: ...

class Principal(_message.Message):
    __slots__ = ["audience", "expire_time", "kind", "permissions", "region", "session_id", "subject", "tenant_id", "tenant_name", "upn", "username"]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_NAME_FIELD_NUMBER: _ClassVar[int]
    UPN_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    audience: _containers.RepeatedScalarFieldContainer[str]
    expire_time: _timestamp_pb2.Timestamp
    kind: _common_pb2.PrincipalKind
    permissions: _containers.RepeatedScalarFieldContainer[str]
    region: RegionMeta
    session_id: str
    subject: str
    tenant_id: str
    tenant_name: str
    upn: str
    username: str
    def __init__(self, kind: _Optional[_Union[_common_pb2.PrincipalKind, str]] = ..., subject: _Optional[str] = ..., tenant_id: _Optional[str] = ..., tenant_name: _Optional[str] = ..., session_id: _Optional[str] = ..., permissions: _Optional[_Iterable[str]] = ..., expire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., upn: _Optional[str] = ..., username: _Optional[str] = ..., region: _Optional[_Union[RegionMeta, _Mapping]] = ..., audience: _Optional[_Iterable[str]] = ...) -> None: ...

class RegionMeta(_message.Message):
    __slots__ = ["capability", "expire_time", "id", "registry"]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    capability: str
    expire_time: _timestamp_pb2.Timestamp
    id: str
    registry: str
    def __init__(self, id: _Optional[str] = ..., capability: _Optional[str] = ..., registry: _Optional[str] = ..., expire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class VerifyTokenRequest(_message.Message):
    __slots__ = ["audience", "token"]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    audience: str
    token: str
    def __init__(self, token: _Optional[str] = ..., audience: _Optional[str] = ...) -> None: ...

class VerifyTokenResponse(_message.Message):
    __slots__ = ["principal"]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    principal: Principal
    def __init__(self, principal: _Optional[_Union[Principal, _Mapping]] = ...) -> None: ...

class WatchRevocationsRequest(_message.Message):
    __slots__ = ["cursor"]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    cursor: str
    def __init__(self, cursor: _Optional[str] = ...) -> None: ...

class WatchRevocationsResponse(_message.Message):
    __slots__ = ["cursor", "event_time", "key_id", "kind", "session_id", "tenant_id", "user_id"]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    cursor: str
    event_time: _timestamp_pb2.Timestamp
    key_id: str
    kind: RevocationKind
    session_id: str
    tenant_id: str
    user_id: str
    def __init__(self, cursor: _Optional[str] = ..., kind: _Optional[_Union[RevocationKind, str]] = ..., tenant_id: _Optional[str] = ..., user_id: _Optional[str] = ..., session_id: _Optional[str] = ..., key_id: _Optional[str] = ..., event_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RevocationKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
