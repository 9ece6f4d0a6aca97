"""The google.rpc error details of a failed Tessera call.

Tessera puts a ``google.rpc.Status`` in the ``grpc-status-details-bin``
trailer. Its details always hold an ``ErrorInfo`` whose ``reason`` is a value
of ``tessera.identity.v1.ErrorReason`` (e.g. ``INVALID_CREDENTIALS``), domain
``tessera.identity.v1``; bad input adds a ``BadRequest`` with one violation per
field, throttled logins a ``RetryInfo``. Messages are for people, reasons for
code.
"""

from __future__ import annotations

from typing import Optional, Type, TypeVar

import grpc
from google.protobuf.message import Message

try:
    # googleapis-common-protos owns google.rpc where it is installed; loading a
    # second copy of the same proto files into the default descriptor pool
    # could conflict with it.
    from google.rpc import error_details_pb2, status_pb2
except ImportError:
    # Debian ships no googleapis-common-protos: use the copy generated into
    # this package (clients/python/buf.gen.google-rpc.yaml).
    from tessera_client._rpc.google.rpc import error_details_pb2, status_pb2

ErrorInfo = error_details_pb2.ErrorInfo
BadRequest = error_details_pb2.BadRequest
RetryInfo = error_details_pb2.RetryInfo

_STATUS_DETAILS_KEY = "grpc-status-details-bin"

M = TypeVar("M", bound=Message)


def _status(error: grpc.RpcError) -> Optional[status_pb2.Status]:
    # A failed call's RpcError is also a grpc.Call; other RpcErrors (e.g. a
    # stream cancelled locally) carry no trailers.
    trailing_metadata = getattr(error, "trailing_metadata", None)
    for key, value in (trailing_metadata() if trailing_metadata else None) or ():
        if key == _STATUS_DETAILS_KEY:
            return status_pb2.Status.FromString(value)
    return None


def error_detail(error: grpc.RpcError, detail_type: Type[M]) -> Optional[M]:
    """The first detail of ``detail_type`` (``ErrorInfo``, ``BadRequest``, ``RetryInfo``) of a failed call, or None."""
    status = _status(error)
    for detail in status.details if status else ():
        if detail.Is(detail_type.DESCRIPTOR):
            message = detail_type()
            detail.Unpack(message)
            return message
    return None


def error_reason(error: grpc.RpcError) -> Optional[str]:
    """The ``ErrorInfo`` reason of a failed call (e.g. ``"TOKEN_EXPIRED"``), or None."""
    info = error_detail(error, ErrorInfo)
    return info.reason if info else None
