"""Cloud Functions v2 REST handlers (`functions_v2.FunctionServiceClient(transport="rest")`) and the IAM
policy of each function's Cloud Run service (`run_v2.ServicesClient.get/set_iam_policy`)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sandbox.core.http import json_response, no_faults
from sandbox.gcp.backends import backends
from sandbox.gcp.common import GoogleError, api, apply_mask, page, parse_message, read_json, update_mask


def _function_type() -> Any:
    from google.cloud.functions_v2 import types

    return types.Function


def _parent(request: web.Request) -> str:
    return f"projects/{request.match_info['project']}/locations/{request.match_info['location']}"


def _name(request: web.Request) -> str:
    return f"{_parent(request)}/functions/{request.match_info['function']}"


@api("cloudfunctions:GenerateUploadUrl", mutating=True)
async def generate_upload_url(request: web.Request) -> web.Response:
    await read_json(request)
    return json_response(await backends(request).storage.issue_upload(request.match_info["location"]))


@api("cloudfunctions:CreateFunction", mutating=True)
async def create_function(request: web.Request) -> web.Response:
    body = parse_message(_function_type(), await read_json(request), "function")
    function_id = request.query.get("functionId", "")
    return json_response(backends(request).functions.create(_parent(request), function_id, body).to_json())


@api("cloudfunctions:GetFunction", mutating=False)
async def get_function(request: web.Request) -> web.Response:
    return json_response(backends(request).functions.get(_name(request)))


@api("cloudfunctions:ListFunctions", mutating=False)
async def list_functions(request: web.Request) -> web.Response:
    chunk, token = page(backends(request).functions.list_functions(_parent(request)), request)
    out: dict[str, Any] = {"functions": chunk} if chunk else {}
    if token:
        out["nextPageToken"] = token
    return json_response(out)


@api("cloudfunctions:UpdateFunction", mutating=True)
async def update_function(request: web.Request) -> web.Response:
    fns = backends(request).functions
    name = _name(request)
    patch = parse_message(_function_type(), await read_json(request), "function")
    current = fns.get(name)
    merged = apply_mask(current, patch, update_mask(request))
    return json_response(fns.update(name, merged).to_json())


@api("cloudfunctions:DeleteFunction", mutating=True)
async def delete_function(request: web.Request) -> web.Response:
    return json_response(backends(request).functions.delete(_name(request)).to_json())


@no_faults
@api("cloudfunctions:GetOperation", mutating=False)
async def get_operation(request: web.Request) -> web.Response:
    name = f"{_parent(request)}/operations/{request.match_info['operation']}"
    return json_response(backends(request).operations.get(name).to_json())


def _resource(request: web.Request) -> str:
    b = backends(request)
    if "function" in request.match_info:
        name = _name(request)
        b.functions.get(name)
        return name
    name = f"{_parent(request)}/services/{request.match_info['service']}"
    if not b.functions.service_exists(name):
        raise GoogleError("NOT_FOUND", f"Resource '{request.match_info['service']}' of kind 'SERVICE' in region "
                          f"'{request.match_info['location']}' in project '{request.match_info['project']}' "
                          "does not exist.")
    return name


@api("cloudfunctions:GetIamPolicy", mutating=False)
async def get_iam_policy(request: web.Request) -> web.Response:
    return json_response(backends(request).iam.get_policy(_resource(request)))


@api("cloudfunctions:SetIamPolicy", mutating=True)
async def set_iam_policy(request: web.Request) -> web.Response:
    from google.iam.v1 import policy_pb2

    resource = _resource(request)
    body = await read_json(request)
    policy = parse_message(policy_pb2.Policy, body.get("policy") or {}, "policy")
    return json_response(backends(request).iam.set_policy(resource, policy))


@api("run:GetIamPolicy", mutating=False)
async def get_service_iam_policy(request: web.Request) -> web.Response:
    return json_response(backends(request).iam.get_policy(_resource(request)))


@api("run:SetIamPolicy", mutating=True)
async def set_service_iam_policy(request: web.Request) -> web.Response:
    from google.iam.v1 import policy_pb2

    resource = _resource(request)
    body = await read_json(request)
    policy = parse_message(policy_pb2.Policy, body.get("policy") or {}, "policy")
    return json_response(backends(request).iam.set_policy(resource, policy))
