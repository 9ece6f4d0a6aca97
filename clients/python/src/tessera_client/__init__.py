"""Helpers for calling Tessera with the generated stubs of the ``tessera`` package.

The stubs are plain protoc/grpc output (``tessera.identity.v1.*_pb2`` and
``*_pb2_grpc``); this package adds only what every caller needs::

    import grpc
    from tessera.identity.v1 import issue_service_pb2 as issue, issue_service_pb2_grpc
    from tessera_client import bearer, error_reason

    channel = grpc.insecure_channel("127.0.0.1:50051")
    stub = issue_service_pb2_grpc.IssueServiceStub(channel)
    try:
        stub.IssueToken(issue.IssueTokenRequest(password=issue.PasswordCredential(
            tenant="acme", username="alice", password="...")))
    except grpc.RpcError as error:
        if error_reason(error) == "INVALID_CREDENTIALS":
            ...
"""

from tessera_client.errors import BadRequest, ErrorInfo, RetryInfo, error_detail, error_reason

__all__ = ["BadRequest", "ErrorInfo", "RetryInfo", "bearer", "error_detail", "error_reason"]


def bearer(access_token: str) -> "tuple[tuple[str, str], ...]":
    """Call metadata carrying an access token: ``stub.GetMe(request, metadata=bearer(token))``."""
    return (("authorization", f"Bearer {access_token}"),)
