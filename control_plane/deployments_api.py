"""HTTP API for twin operations (DESIGN.md section 6), plus `GET /api/openapi.json`.

- `POST /api/deployments[?prune=false]`: validate (400 with every problem), refuse while a deploy,
  destroy or rotation of the twin runs (409), start `deploy_twin`, answer Durable's 202
  check-status payload. Recorded resources the spec no longer has are deleted unless `prune=false`.
- `GET /api/deployments/{instanceId}`: the readable deployment view (secrets redacted).
- `GET /api/twins/{twin}`: recorded resources and outputs (redacted).
- `DELETE /api/twins/{twin}`: start `destroy_twin` (202).
- `POST /api/twins/{twin}/tokens/rotate`: start `rotate_token` (202).
- `POST /api/twins/{twin}/refresh`: start `refresh_outputs` (202): re-read the producers and
  propagate outputs changed outside a deployment.
`POST /api/plan` lives in `control_plane/api.py`; it is documented here with the rest.
Auth level FUNCTION everywhere; errors are `{"errors": [{"path", "message"}]}`.
"""

from __future__ import annotations

import json
import re
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from control_plane import operations as ops
from shared.contracts import ControlPlaneSetting
from shared.engine import names
from shared.engine.plan import plan_to_engine
from shared.loaders import spec_problems
from shared.plan import build_plan

bp = df.Blueprint()

JSON = "application/json"
_TWIN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype=JSON, headers=headers)


def _errors(status: int, *problems: tuple[str, str]) -> func.HttpResponse:
    return _json({"errors": [{"path": p, "message": m} for p, m in problems]}, status)


def _body(req: func.HttpRequest, required: bool = True) -> tuple[Any, func.HttpResponse | None]:
    raw = req.get_body()
    if not raw:
        if not required:
            return {}, None
        return None, _errors(400, ("", "the request body is empty; send the deployment spec as JSON"))
    try:
        return json.loads(raw), None
    except UnicodeDecodeError:
        return None, _errors(400, ("", "the request body is not UTF-8 text"))
    except json.JSONDecodeError as exc:
        return None, _errors(400, ("", f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"))


def _small_body(req: func.HttpRequest, allowed: str, example: str) -> tuple[dict[str, Any], func.HttpResponse | None]:
    """An optional JSON object body whose only field may be `allowed` (e.g. `{"grace_seconds": 30}`)."""
    body, error = _body(req, required=False)
    if error is not None:
        return {}, error
    if not isinstance(body, dict):
        return {}, _errors(400, ("", f"the body, if any, must be a JSON object such as {example}"))
    unknown = sorted(set(body) - {allowed})
    if unknown:
        return {}, _errors(400, *((k, f"unknown field; only {allowed} is accepted") for k in unknown))
    return body, None


def _twin_param(req: func.HttpRequest) -> tuple[str, func.HttpResponse | None]:
    twin = req.route_params.get("twin", "")
    if not _TWIN_RE.match(twin):
        return twin, _errors(400, ("twin", f"{twin!r} is not a twin name (letters, digits and hyphens)"))
    return twin, None


async def _conflict(client: df.DurableOrchestrationClient, twin: str) -> func.HttpResponse | None:
    running = await ops.blocking_operation(client, twin)
    if running is None:
        return None
    return _errors(409, ("twin", f"operation {running} is running for twin {twin}; wait for it to finish "
                                 f"(GET /api/deployments/{running})"))


def _options() -> tuple[dict[str, Any], func.HttpResponse | None]:
    """Engine options from app settings; a broken setting is the operator's error (500), said plainly."""
    try:
        return ops.engine_options(), None
    except ValueError as exc:
        return {}, _errors(500, (str(ControlPlaneSetting.ENGINE_OPTIONS), str(exc)))


def _accepted(client: df.DurableOrchestrationClient, req: func.HttpRequest, instance: str) -> func.HttpResponse:
    response = client.create_check_status_response(req, instance)
    body = json.loads(response.get_body())
    # Our readable view beside Durable's own management links (which keep working unchanged).
    body["deploymentUri"] = body["statusQueryGetUri"].split("/runtime/webhooks/")[0] + f"/api/deployments/{instance}"
    return func.HttpResponse(json.dumps(body), status_code=202, mimetype=JSON, headers=dict(response.headers))


@bp.function_name("deployments_start")
@bp.route(route="deployments", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def deployments_start(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    data, error = _body(req)
    if error is not None:
        return error
    prune_arg = (req.params.get("prune") or "true").lower()
    if prune_arg not in ("true", "false"):
        return _errors(400, ("?prune", "must be true or false"))
    spec, problems = spec_problems(data)
    if spec is None or problems:
        return _errors(400, *((p.path, p.message) for p in problems))
    plan = plan_to_engine(build_plan(spec))
    if plan["problems"]:
        return _errors(400, *(("providers", p) for p in plan["problems"]))
    twin = plan["twin"]
    conflict = await _conflict(client, twin)
    if conflict is not None:
        return conflict
    options, error = _options()
    if error is not None:
        return error
    replace = await ops.stale_holder(client, await ops.read_state(client, twin))
    instance = ops.instance_id(twin, "deploy")
    await client.start_new(names.DEPLOY_TWIN, instance,
                           {"spec": data, "options": options, "replace": replace, "prune": prune_arg == "true"})
    return _accepted(client, req, instance)


@bp.function_name("deployments_get")
@bp.route(route="deployments/{instanceId}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def deployments_get(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    instance = req.route_params.get("instanceId", "")
    parsed = ops.parse_instance_id(instance)
    status = await client.get_status(instance) if parsed else None
    if not parsed or not status or status.runtime_status is None:
        return _errors(404, ("instanceId", f"no twin operation has the id {instance!r}"))
    state = await ops.read_state(client, parsed[0])
    return _json(ops.deployment_view(status, state))


@bp.function_name("twins_get")
@bp.route(route="twins/{twin}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def twins_get(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    twin, error = _twin_param(req)
    if error is not None:
        return error
    state = await ops.read_state(client, twin)
    if not state or not (state.get("resources") or state.get("outputs") or state.get("lock")):
        return _errors(404, ("twin", f"twin {twin} has no recorded resources"))
    return _json(ops.twin_view(twin, state))


@bp.function_name("twins_delete")
@bp.route(route="twins/{twin}", methods=["DELETE"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def twins_delete(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    twin, error = _twin_param(req)
    if error is not None:
        return error
    state = await ops.read_state(client, twin)
    if not state or not state.get("resources"):
        return _errors(404, ("twin", f"twin {twin} has no recorded resources to destroy"))
    conflict = await _conflict(client, twin)
    if conflict is not None:
        return conflict
    options, error = _options()
    if error is not None:
        return error
    instance = ops.instance_id(twin, "destroy")
    await client.start_new(names.DESTROY_TWIN, instance,
                           {"twin": twin, "options": options, "replace": await ops.stale_holder(client, state)})
    return _accepted(client, req, instance)


@bp.function_name("tokens_rotate")
@bp.route(route="twins/{twin}/tokens/rotate", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def tokens_rotate(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    twin, error = _twin_param(req)
    if error is not None:
        return error
    body, error = _small_body(req, "grace_seconds", '{"grace_seconds": 30}')
    if error is not None:
        return error
    options, error = _options()
    if error is not None:
        return error
    if "grace_seconds" in body:
        grace = body["grace_seconds"]
        if isinstance(grace, bool) or not isinstance(grace, int | float) or not 0 <= grace <= 3600:
            return _errors(400, ("grace_seconds", "must be a number of seconds between 0 and 3600"))
        options["grace_seconds"] = grace
    state = await ops.read_state(client, twin)
    if not state or names.INTER_CLOUD_TOKEN not in state.get("outputs", {}):
        return _errors(404, ("twin", f"twin {twin} has no inter-cloud token; deploy it first"))
    conflict = await _conflict(client, twin)
    if conflict is not None:
        return conflict
    instance = ops.instance_id(twin, "rotate")
    await client.start_new(names.ROTATE_TOKEN, instance,
                           {"twin": twin, "options": options, "replace": await ops.stale_holder(client, state)})
    return _accepted(client, req, instance)


@bp.function_name("twins_refresh")
@bp.route(route="twins/{twin}/refresh", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def twins_refresh(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    twin, error = _twin_param(req)
    if error is not None:
        return error
    body, error = _small_body(req, "resources", '{"resources": ["azure/L4/digital-twins"]}')
    if error is not None:
        return error
    options, error = _options()
    if error is not None:
        return error
    state = await ops.read_state(client, twin)
    if not state or not state.get("resources"):
        return _errors(404, ("twin", f"twin {twin} has no recorded resources; deploy it first"))
    resources = body.get("resources")
    if resources is not None:
        if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
            return _errors(400, ("resources", "must be a list of resource ids"))
        problems = [(f"resources[{i}]", f"twin {twin} has no resource {r!r}")
                    for i, r in enumerate(resources) if r not in state["resources"]]
        if problems:
            return _errors(400, *problems)
    instance = ops.instance_id(twin, "refresh")
    await client.start_new(names.REFRESH_OUTPUTS, instance,
                           {"twin": twin, "resources": resources, "reason": "requested", "options": options})
    return _accepted(client, req, instance)


@bp.function_name("openapi")
@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    from control_plane.openapi import document

    return _json(document())
