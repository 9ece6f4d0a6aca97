from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tessera.identity.v1 import options_pb2 as _options_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RefreshRequest(_message.Message):
    __slots__ = ["refresh_token", "requested_permissions"]
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    refresh_token: str
    requested_permissions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, refresh_token: _Optional[str] = ..., requested_permissions: _Optional[_Iterable[str]] = ...) -> None: ...

class RefreshResponse(_message.Message):
    __slots__ = ["access_token", "expire_time", "granted_permissions", "refresh_expire_time", "refresh_token", "session_id", "token_type"]
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    GRANTED_PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    REFRESH_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    access_token: str
    expire_time: _timestamp_pb2.Timestamp
    granted_permissions: _containers.RepeatedScalarFieldContainer[str]
    refresh_expire_time: _timestamp_pb2.Timestamp
    refresh_token: str
    session_id: str
    token_type: str
    def __init__(self, access_token: _Optional[str] = ..., token_type: _Optional[str] = ..., expire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., refresh_token: _Optional[str] = ..., refresh_expire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., session_id: _Optional[str] = ..., granted_permissions: _Optional[_Iterable[str]] = ...) -> None: ...
