"""Resource Manager handlers: `projects.get`, `projects.getIamPolicy` (a POST with a body, unlike the
GET of functions and Cloud Run) and `projects.setIamPolicy` with etags."""

from __future__ import annotations

from aiohttp import web

from sandbox.core.http import json_response
from sandbox.gcp.backends import backends
from sandbox.gcp.common import PROJECT_ID, PROJECT_NUMBER, GoogleError, api, parse_message, read_json


def _project(request: web.Request) -> str:
    project = request.match_info["project"]
    if project not in (PROJECT_ID, PROJECT_NUMBER):
        # What Resource Manager answers for a project that does not exist or is not visible.
        raise GoogleError("PERMISSION_DENIED", f"The caller does not have permission (project {project}).")
    return f"projects/{PROJECT_ID}"


@api("cloudresourcemanager:GetProject", mutating=False)
async def get_project(request: web.Request) -> web.Response:
    _project(request)
    return json_response({"name": f"projects/{PROJECT_NUMBER}", "projectId": PROJECT_ID, "state": "ACTIVE",
                          "displayName": PROJECT_ID, "parent": "", "etag": "W/\"1\""})


@api("cloudresourcemanager:GetIamPolicy", mutating=False)
async def get_iam_policy(request: web.Request) -> web.Response:
    resource = _project(request)
    await read_json(request)  # options.requestedPolicyVersion: conditions are not modelled
    return json_response(backends(request).iam.get_policy(resource))


@api("cloudresourcemanager:SetIamPolicy", mutating=True)
async def set_iam_policy(request: web.Request) -> web.Response:
    from google.iam.v1 import policy_pb2

    resource = _project(request)
    body = await read_json(request)
    policy = parse_message(policy_pb2.Policy, body.get("policy") or {}, "policy")
    return json_response(backends(request).iam.set_policy(resource, policy))
