from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

ACCESS_FIELD_NUMBER: _ClassVar[int]
ACCESS_KIND_AUTHENTICATED: AccessKind
ACCESS_KIND_PERMISSION: AccessKind
ACCESS_KIND_PUBLIC: AccessKind
ACCESS_KIND_SELF: AccessKind
ACCESS_KIND_SELF_OR_PERMISSION: AccessKind
ACCESS_KIND_UNSPECIFIED: AccessKind
DESCRIPTOR: _descriptor.FileDescriptor
LIMITS_FIELD_NUMBER: _ClassVar[int]
access: _descriptor.FieldDescriptor
limits: _descriptor.FieldDescriptor

class Access(_message.Message):
    __slots__ = ["anonymous_when_configured", "kind", "permission", "self_permission", "system_only"]
    ANONYMOUS_WHEN_CONFIGURED_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    SELF_PERMISSION_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_ONLY_FIELD_NUMBER: _ClassVar[int]
    anonymous_when_configured: bool
    kind: AccessKind
    permission: str
    self_permission: str
    system_only: bool
    def __init__(self, kind: _Optional[_Union[AccessKind, str]] = ..., permission: _Optional[str] = ..., self_permission: _Optional[str] = ..., system_only: bool = ..., anonymous_when_configured: bool = ...) -> None: ...

class FieldLimits(_message.Message):
    __slots__ = ["max_chars", "max_items"]
    MAX_CHARS_FIELD_NUMBER: _ClassVar[int]
    MAX_ITEMS_FIELD_NUMBER: _ClassVar[int]
    max_chars: int
    max_items: int
    def __init__(self, max_chars: _Optional[int] = ..., max_items: _Optional[int] = ...) -> None: ...

class AccessKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
