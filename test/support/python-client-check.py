"""Run by test/integration/python-client.test.ts inside a virtual environment
where tessera-client is installed: uses the package as a caller would, against
a real server, and prints what it saw as JSON for the test to check.

usage: python python-client-check.py HOST:PORT   (password in TESSERA_PASSWORD)
"""

import json
import os
import sys

import grpc
from tessera.identity.v1 import issue_service_pb2 as issue
from tessera.identity.v1 import issue_service_pb2_grpc
from tessera.identity.v1 import refresh_service_pb2 as refresh
from tessera.identity.v1 import refresh_service_pb2_grpc
from tessera.identity.v1 import tenant_service_pb2 as tenants
from tessera.identity.v1 import tenant_service_pb2_grpc
from tessera.identity.v1 import verify_service_pb2 as verify
from tessera.identity.v1 import verify_service_pb2_grpc
from tessera_client import ErrorInfo, bearer, error_detail, error_reason


def failure(call):
    """The code, ErrorInfo reason and domain of a call that must fail."""
    try:
        call()
    except grpc.RpcError as error:
        info = error_detail(error, ErrorInfo)
        return {"code": error.code().name, "reason": error_reason(error), "domain": info.domain if info else None}
    raise AssertionError("the call should have failed")


def main(address, password):
    with grpc.insecure_channel(address) as channel:
        issuer = issue_service_pb2_grpc.IssueServiceStub(channel)

        def login(secret):
            credential = issue.PasswordCredential(tenant="system", username="admin", password=secret)
            return issuer.IssueToken(issue.IssueTokenRequest(password=credential))

        session = login(password)
        listed = tenant_service_pb2_grpc.TenantServiceStub(channel).ListTenants(
            tenants.ListTenantsRequest(), metadata=bearer(session.access_token)
        )
        principal = verify_service_pb2_grpc.VerifyServiceStub(channel).VerifyToken(
            verify.VerifyTokenRequest(token=session.access_token)
        ).principal
        refresher = refresh_service_pb2_grpc.RefreshServiceStub(channel)
        refreshed = refresher.Refresh(refresh.RefreshRequest(refresh_token=session.refresh_token))
        return {
            "tenants": [t.name for t in listed.tenants],
            "principal": {"username": principal.username, "tenant": principal.tenant_name, "session": principal.session_id},
            "session": session.session_id,
            "refreshed": {"session": refreshed.session_id, "rotated": refreshed.refresh_token != session.refresh_token},
            "wrongPassword": failure(lambda: login("not the password")),
            "reusedRefreshToken": failure(lambda: refresher.Refresh(refresh.RefreshRequest(refresh_token=session.refresh_token))),
            "noToken": failure(lambda: tenant_service_pb2_grpc.TenantServiceStub(channel).ListTenants(tenants.ListTenantsRequest())),
        }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], os.environ["TESSERA_PASSWORD"])))
