"""IAM v1 REST handlers (what `googleapiclient.discovery.build("iam", "v1")` sends)."""

from __future__ import annotations

from aiohttp import web

from sandbox.core.http import json_response
from sandbox.gcp.backends import backends
from sandbox.gcp.common import GoogleError, api, page, read_json


@api("iam:CreateServiceAccount", mutating=True)
async def create_service_account(request: web.Request) -> web.Response:
    body = await read_json(request)
    account_id = body.get("accountId")
    if not isinstance(account_id, str) or not account_id:
        raise GoogleError("INVALID_ARGUMENT", "accountId: required")
    details = body.get("serviceAccount") or {}
    if not isinstance(details, dict):
        raise GoogleError("INVALID_ARGUMENT", "serviceAccount: must be an object")
    sa = backends(request).iam.create_account(request.match_info["project"], account_id, details)
    return json_response(sa.to_json())


@api("iam:GetServiceAccount", mutating=False)
async def get_service_account(request: web.Request) -> web.Response:
    name = f"projects/{request.match_info['project']}/serviceAccounts/{request.match_info['account']}"
    return json_response(backends(request).iam.get_account(name).to_json())


@api("iam:DeleteServiceAccount", mutating=True)
async def delete_service_account(request: web.Request) -> web.Response:
    name = f"projects/{request.match_info['project']}/serviceAccounts/{request.match_info['account']}"
    backends(request).iam.delete_account(name)
    return json_response({})


@api("iam:ListServiceAccounts", mutating=False)
async def list_service_accounts(request: web.Request) -> web.Response:
    accounts = backends(request).iam.list_accounts(request.match_info["project"])
    chunk, token = page([a.to_json() for a in accounts], request)
    out: dict[str, object] = {"accounts": chunk} if chunk else {}
    if token:
        out["nextPageToken"] = token
    return json_response(out)
