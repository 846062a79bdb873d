"""IAM admin over gRPC (`iam_admin_v1.IAMClient`, which has no REST transport): service accounts."""

from __future__ import annotations

import json
from typing import Any

import grpc
from google.cloud.iam_admin_v1 import types as T
from google.protobuf import empty_pb2

from sandbox.gcp.backends import GcpBackends
from sandbox.gcp.common import message_json
from sandbox.gcp.grpc_server import Pb, unary


def _account(data: dict[str, Any]) -> Any:
    return T.ServiceAccount.from_json(json.dumps(data), ignore_unknown_fields=True)


def handlers(b: GcpBackends, service: str) -> dict[str, grpc.RpcMethodHandler]:
    iam = b.iam

    def create(req: Any, ctx: Any) -> Any:
        details = message_json(T.ServiceAccount.pb(req.service_account))
        project = req.name.split("/", 1)[-1]
        return _account(iam.create_account(project, req.account_id, details).to_json())

    def get(req: Any, ctx: Any) -> Any:
        return _account(iam.get_account(req.name).to_json())

    def delete(req: Any, ctx: Any) -> Any:
        iam.delete_account(req.name)
        return empty_pb2.Empty()

    def list_accounts(req: Any, ctx: Any) -> Any:
        accounts = [a.to_json() for a in iam.list_accounts(req.name.split("/", 1)[-1])]
        return T.ListServiceAccountsResponse.from_json(json.dumps({"accounts": accounts}), ignore_unknown_fields=True)

    return {
        "CreateServiceAccount": unary(create, T.CreateServiceAccountRequest, T.ServiceAccount),
        "GetServiceAccount": unary(get, T.GetServiceAccountRequest, T.ServiceAccount),
        "DeleteServiceAccount": unary(delete, T.DeleteServiceAccountRequest, Pb(empty_pb2.Empty)),
        "ListServiceAccounts": unary(list_accounts, T.ListServiceAccountsRequest, T.ListServiceAccountsResponse),
    }
