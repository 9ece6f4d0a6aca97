from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tessera.identity.v1 import common_pb2 as _common_pb2
from tessera.identity.v1 import options_pb2 as _options_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateMinecraftChallengeRequest(_message.Message):
    __slots__ = ["server_address"]
    SERVER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    server_address: str
    def __init__(self, server_address: _Optional[str] = ...) -> None: ...

class CreateMinecraftChallengeResponse(_message.Message):
    __slots__ = ["expire_time", "server_hash", "server_id"]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    SERVER_HASH_FIELD_NUMBER: _ClassVar[int]
    SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    expire_time: _timestamp_pb2.Timestamp
    server_hash: str
    server_id: str
    def __init__(self, server_id: _Optional[str] = ..., server_hash: _Optional[str] = ..., expire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class IssueTokenRequest(_message.Message):
    __slots__ = ["audience", "minecraft", "oidc", "password", "requested_permissions", "service_assertion"]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    MINECRAFT_FIELD_NUMBER: _ClassVar[int]
    OIDC_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ASSERTION_FIELD_NUMBER: _ClassVar[int]
    audience: str
    minecraft: MinecraftCredential
    oidc: OidcCredential
    password: PasswordCredential
    requested_permissions: _containers.RepeatedScalarFieldContainer[str]
    service_assertion: ServiceAssertionCredential
    def __init__(self, password: _Optional[_Union[PasswordCredential, _Mapping]] = ..., minecraft: _Optional[_Union[MinecraftCredential, _Mapping]] = ..., service_assertion: _Optional[_Union[ServiceAssertionCredential, _Mapping]] = ..., oidc: _Optional[_Union[OidcCredential, _Mapping]] = ..., requested_permissions: _Optional[_Iterable[str]] = ..., audience: _Optional[str] = ...) -> None: ...

class IssueTokenResponse(_message.Message):
    __slots__ = ["access_token", "expire_time", "granted_permissions", "principal_kind", "refresh_expire_time", "refresh_token", "session_id", "token_type"]
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    GRANTED_PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_KIND_FIELD_NUMBER: _ClassVar[int]
    REFRESH_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    access_token: str
    expire_time: _timestamp_pb2.Timestamp
    granted_permissions: _containers.RepeatedScalarFieldContainer[str]
    principal_kind: _common_pb2.PrincipalKind
    refresh_expire_time: _timestamp_pb2.Timestamp
    refresh_token: str
    session_id: str
    token_type: str
    def __init__(self, access_token: _Optional[str] = ..., token_type: _Optional[str] = ..., expire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., refresh_token: _Optional[str] = ..., refresh_expire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., session_id: _Optional[str] = ..., granted_permissions: _Optional[_Iterable[str]] = ..., principal_kind: _Optional[_Union[_common_pb2.PrincipalKind, str]] = ...) -> None: ...

class ListSessionsRequest(_message.Message):
    __slots__ = ["page_size", "page_token", "tenant_id", "user_id"]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    tenant_id: str
    user_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., user_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSessionsResponse(_message.Message):
    __slots__ = ["next_page_token", "sessions"]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    next_page_token: str
    sessions: _containers.RepeatedCompositeFieldContainer[Session]
    def __init__(self, sessions: _Optional[_Iterable[_Union[Session, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class MinecraftCredential(_message.Message):
    __slots__ = ["server_address", "server_hash", "server_id", "username"]
    SERVER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SERVER_HASH_FIELD_NUMBER: _ClassVar[int]
    SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    server_address: str
    server_hash: str
    server_id: str
    username: str
    def __init__(self, username: _Optional[str] = ..., server_hash: _Optional[str] = ..., server_address: _Optional[str] = ..., server_id: _Optional[str] = ...) -> None: ...

class OidcCredential(_message.Message):
    __slots__ = ["id_token", "nonce", "tenant"]
    ID_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    id_token: str
    nonce: str
    tenant: str
    def __init__(self, tenant: _Optional[str] = ..., id_token: _Optional[str] = ..., nonce: _Optional[str] = ...) -> None: ...

class PasswordCredential(_message.Message):
    __slots__ = ["password", "tenant", "username"]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    password: str
    tenant: str
    username: str
    def __init__(self, tenant: _Optional[str] = ..., username: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class RevokeAllSessionsRequest(_message.Message):
    __slots__ = ["tenant_id", "user_id"]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    user_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class RevokeAllSessionsResponse(_message.Message):
    __slots__ = ["revoked_count"]
    REVOKED_COUNT_FIELD_NUMBER: _ClassVar[int]
    revoked_count: int
    def __init__(self, revoked_count: _Optional[int] = ...) -> None: ...

class RevokeSessionRequest(_message.Message):
    __slots__ = ["session_id"]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class RevokeSessionResponse(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class RotateSigningKeyRequest(_message.Message):
    __slots__ = ["retire_current_now"]
    RETIRE_CURRENT_NOW_FIELD_NUMBER: _ClassVar[int]
    retire_current_now: bool
    def __init__(self, retire_current_now: bool = ...) -> None: ...

class RotateSigningKeyResponse(_message.Message):
    __slots__ = ["activate_time", "key_id"]
    ACTIVATE_TIME_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    activate_time: _timestamp_pb2.Timestamp
    key_id: str
    def __init__(self, key_id: _Optional[str] = ..., activate_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ServiceAssertionCredential(_message.Message):
    __slots__ = ["assertion"]
    ASSERTION_FIELD_NUMBER: _ClassVar[int]
    assertion: str
    def __init__(self, assertion: _Optional[str] = ...) -> None: ...

class Session(_message.Message):
    __slots__ = ["client_address", "create_time", "elected_permissions", "expire_time", "id", "principal_kind", "refresh_time", "subject", "tenant_id"]
    CLIENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ELECTED_PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_KIND_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TIME_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    client_address: str
    create_time: _timestamp_pb2.Timestamp
    elected_permissions: _containers.RepeatedScalarFieldContainer[str]
    expire_time: _timestamp_pb2.Timestamp
    id: str
    principal_kind: _common_pb2.PrincipalKind
    refresh_time: _timestamp_pb2.Timestamp
    subject: str
    tenant_id: str
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., subject: _Optional[str] = ..., principal_kind: _Optional[_Union[_common_pb2.PrincipalKind, str]] = ..., elected_permissions: _Optional[_Iterable[str]] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., refresh_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., client_address: _Optional[str] = ...) -> None: ...
