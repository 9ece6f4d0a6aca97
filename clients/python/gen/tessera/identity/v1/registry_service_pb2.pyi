from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tessera.identity.v1 import options_pb2 as _options_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Capability(_message.Message):
    __slots__ = ["active", "algorithm", "capability", "create_time", "expire_time", "id", "key_id", "public_key_jwk", "region_id", "update_time"]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_JWK_FIELD_NUMBER: _ClassVar[int]
    REGION_ID_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    active: bool
    algorithm: str
    capability: str
    create_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    id: str
    key_id: str
    public_key_jwk: str
    region_id: str
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, region_id: _Optional[str] = ..., capability: _Optional[str] = ..., public_key_jwk: _Optional[str] = ..., active: bool = ..., expire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., id: _Optional[str] = ..., key_id: _Optional[str] = ..., algorithm: _Optional[str] = ...) -> None: ...

class CreateRegionRequest(_message.Message):
    __slots__ = ["region", "tenant_id"]
    REGION_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    region: Region
    tenant_id: str
    def __init__(self, region: _Optional[_Union[Region, _Mapping]] = ..., tenant_id: _Optional[str] = ...) -> None: ...

class CreateRegionResponse(_message.Message):
    __slots__ = ["region"]
    REGION_FIELD_NUMBER: _ClassVar[int]
    region: Region
    def __init__(self, region: _Optional[_Union[Region, _Mapping]] = ...) -> None: ...

class DeleteRegionRequest(_message.Message):
    __slots__ = ["id", "tenant_id"]
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ...) -> None: ...

class DeleteRegionResponse(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class DnsTxtRecord(_message.Message):
    __slots__ = ["name", "ttl", "values"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    name: str
    ttl: int
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., values: _Optional[_Iterable[str]] = ..., ttl: _Optional[int] = ...) -> None: ...

class ExportDnsZoneRequest(_message.Message):
    __slots__ = ["host"]
    HOST_FIELD_NUMBER: _ClassVar[int]
    host: str
    def __init__(self, host: _Optional[str] = ...) -> None: ...

class ExportDnsZoneResponse(_message.Message):
    __slots__ = ["records", "zone_file"]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    ZONE_FILE_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[DnsTxtRecord]
    zone_file: str
    def __init__(self, records: _Optional[_Iterable[_Union[DnsTxtRecord, _Mapping]]] = ..., zone_file: _Optional[str] = ...) -> None: ...

class GetRegionRequest(_message.Message):
    __slots__ = ["id", "tenant_id"]
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ...) -> None: ...

class GetRegionResponse(_message.Message):
    __slots__ = ["region"]
    REGION_FIELD_NUMBER: _ClassVar[int]
    region: Region
    def __init__(self, region: _Optional[_Union[Region, _Mapping]] = ...) -> None: ...

class GetRegistryDocumentRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class GetRegistryDocumentResponse(_message.Message):
    __slots__ = ["authority_public_key_jwk", "capabilities", "regions"]
    AUTHORITY_PUBLIC_KEY_JWK_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    authority_public_key_jwk: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    regions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, regions: _Optional[_Iterable[str]] = ..., capabilities: _Optional[_Iterable[str]] = ..., authority_public_key_jwk: _Optional[str] = ...) -> None: ...

class ListCapabilitiesRequest(_message.Message):
    __slots__ = ["page_size", "page_token", "region_id", "tenant_id"]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REGION_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    region_id: str
    tenant_id: str
    def __init__(self, region_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., tenant_id: _Optional[str] = ...) -> None: ...

class ListCapabilitiesResponse(_message.Message):
    __slots__ = ["capabilities", "next_page_token"]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    capabilities: _containers.RepeatedCompositeFieldContainer[Capability]
    next_page_token: str
    def __init__(self, capabilities: _Optional[_Iterable[_Union[Capability, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListRegionsRequest(_message.Message):
    __slots__ = ["page_size", "page_token", "tenant_id"]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    tenant_id: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., tenant_id: _Optional[str] = ...) -> None: ...

class ListRegionsResponse(_message.Message):
    __slots__ = ["next_page_token", "regions"]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    next_page_token: str
    regions: _containers.RepeatedCompositeFieldContainer[Region]
    def __init__(self, regions: _Optional[_Iterable[_Union[Region, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class LookupCapabilityRequest(_message.Message):
    __slots__ = ["capability", "region_id", "registry"]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    REGION_ID_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    capability: str
    region_id: str
    registry: RegistryReference
    def __init__(self, registry: _Optional[_Union[RegistryReference, _Mapping]] = ..., region_id: _Optional[str] = ..., capability: _Optional[str] = ...) -> None: ...

class LookupCapabilityResponse(_message.Message):
    __slots__ = ["capability", "region"]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    capability: Capability
    region: Region
    def __init__(self, capability: _Optional[_Union[Capability, _Mapping]] = ..., region: _Optional[_Union[Region, _Mapping]] = ...) -> None: ...

class PublishCapabilityRequest(_message.Message):
    __slots__ = ["capability", "expire_time", "public_key", "region_id", "tenant_id"]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    REGION_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    capability: str
    expire_time: _timestamp_pb2.Timestamp
    public_key: str
    region_id: str
    tenant_id: str
    def __init__(self, region_id: _Optional[str] = ..., capability: _Optional[str] = ..., public_key: _Optional[str] = ..., expire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., tenant_id: _Optional[str] = ...) -> None: ...

class PublishCapabilityResponse(_message.Message):
    __slots__ = ["capability"]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    capability: Capability
    def __init__(self, capability: _Optional[_Union[Capability, _Mapping]] = ...) -> None: ...

class Region(_message.Message):
    __slots__ = ["active", "alias", "create_time", "id", "update_time", "user_id"]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    active: bool
    alias: str
    create_time: _timestamp_pb2.Timestamp
    id: str
    update_time: _timestamp_pb2.Timestamp
    user_id: str
    def __init__(self, id: _Optional[str] = ..., alias: _Optional[str] = ..., active: bool = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., user_id: _Optional[str] = ...) -> None: ...

class RegistryReference(_message.Message):
    __slots__ = ["dns_host", "https_url", "local_store"]
    DNS_HOST_FIELD_NUMBER: _ClassVar[int]
    HTTPS_URL_FIELD_NUMBER: _ClassVar[int]
    LOCAL_STORE_FIELD_NUMBER: _ClassVar[int]
    dns_host: str
    https_url: str
    local_store: str
    def __init__(self, https_url: _Optional[str] = ..., dns_host: _Optional[str] = ..., local_store: _Optional[str] = ...) -> None: ...

class RevokeCapabilityRequest(_message.Message):
    __slots__ = ["capability", "region_id", "tenant_id"]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    REGION_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    capability: str
    region_id: str
    tenant_id: str
    def __init__(self, region_id: _Optional[str] = ..., capability: _Optional[str] = ..., tenant_id: _Optional[str] = ...) -> None: ...

class RevokeCapabilityResponse(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class RotateAuthorityKeyRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class RotateAuthorityKeyResponse(_message.Message):
    __slots__ = ["authority_public_key_jwk"]
    AUTHORITY_PUBLIC_KEY_JWK_FIELD_NUMBER: _ClassVar[int]
    authority_public_key_jwk: str
    def __init__(self, authority_public_key_jwk: _Optional[str] = ...) -> None: ...

class UpdateRegionRequest(_message.Message):
    __slots__ = ["region", "tenant_id", "update_mask"]
    REGION_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    region: Region
    tenant_id: str
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, region: _Optional[_Union[Region, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., tenant_id: _Optional[str] = ...) -> None: ...

class UpdateRegionResponse(_message.Message):
    __slots__ = ["region"]
    REGION_FIELD_NUMBER: _ClassVar[int]
    region: Region
    def __init__(self, region: _Optional[_Union[Region, _Mapping]] = ...) -> None: ...
