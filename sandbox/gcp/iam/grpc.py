"""IAM admin over gRPC (`iam_admin_v1.IAMClient`, which has no REST transport): service accounts
and their keys."""

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

    def patch(req: Any, ctx: Any) -> Any:
        details = message_json(T.ServiceAccount.pb(req.service_account))
        return _account(iam.patch_account(req.service_account.name, details, list(req.update_mask.paths)).to_json())

    def delete(req: Any, ctx: Any) -> Any:
        iam.delete_account(req.name)
        return empty_pb2.Empty()

    def list_accounts(req: Any, ctx: Any) -> Any:
        accounts = [a.to_json() for a in iam.list_accounts(req.name.split("/", 1)[-1])]
        return T.ListServiceAccountsResponse.from_json(json.dumps({"accounts": accounts}), ignore_unknown_fields=True)

    def key(data: dict[str, Any]) -> Any:
        return T.ServiceAccountKey.from_json(json.dumps(data), ignore_unknown_fields=True)

    def create_key(req: Any, ctx: Any) -> Any:
        created, key_file = iam.create_key(req.name)
        return key(created.to_json(key_file))

    def list_keys(req: Any, ctx: Any) -> Any:
        types = {T.ListServiceAccountKeysRequest.KeyType(t).name for t in req.key_types}
        keys = [k.to_json() for k in iam.list_keys(req.name)] if not types or "USER_MANAGED" in types else []
        return T.ListServiceAccountKeysResponse.from_json(json.dumps({"keys": keys}), ignore_unknown_fields=True)

    def get_key(req: Any, ctx: Any) -> Any:
        return key(iam.get_key(req.name).to_json())

    def delete_key(req: Any, ctx: Any) -> Any:
        iam.delete_key(req.name)
        return empty_pb2.Empty()

    return {
        "CreateServiceAccountKey": unary(create_key, T.CreateServiceAccountKeyRequest, T.ServiceAccountKey),
        "ListServiceAccountKeys": unary(list_keys, T.ListServiceAccountKeysRequest, T.ListServiceAccountKeysResponse),
        "GetServiceAccountKey": unary(get_key, T.GetServiceAccountKeyRequest, T.ServiceAccountKey),
        "DeleteServiceAccountKey": unary(delete_key, T.DeleteServiceAccountKeyRequest, Pb(empty_pb2.Empty)),
        "CreateServiceAccount": unary(create, T.CreateServiceAccountRequest, T.ServiceAccount),
        "GetServiceAccount": unary(get, T.GetServiceAccountRequest, T.ServiceAccount),
        "PatchServiceAccount": unary(patch, T.PatchServiceAccountRequest, T.ServiceAccount),
        "DeleteServiceAccount": unary(delete, T.DeleteServiceAccountRequest, Pb(empty_pb2.Empty)),
        "ListServiceAccounts": unary(list_accounts, T.ListServiceAccountsRequest, T.ListServiceAccountsResponse),
    }
