"""HTTP API for twin operations (DESIGN.md section 6).

- `POST /api/deployments[?prune=false]`: validate (400 with every problem), refuse while a deploy,
  destroy or rotation of the twin runs (409) and a twin name equal to an existing twin's up to
  case (409, `control_plane.twin_names`), start `deploy_twin`, answer Durable's 202 check-status
  payload. Recorded resources the spec no longer has are deleted unless `prune=false`.
  The body is a spec (JSON) or a bundle (`application/zip`: the spec with the users' code); an
  accepted bundle is stored content-addressed (`activities.bundle_store`) and the orchestration
  gets the plan, whose functions reference their code in it.
- `GET /api/deployments/{instanceId}`: the readable deployment view (secrets redacted).
- `GET /api/twins/{twin}`: recorded resources and outputs (redacted).
- `DELETE /api/twins/{twin}`: start `destroy_twin` (202).
- `POST /api/twins/{twin}/tokens/rotate`: start `rotate_token` (202).
- `POST /api/twins/{twin}/refresh`: start `refresh_outputs` (202): re-read the producers and
  propagate outputs changed outside a deployment.
`POST /api/plan` lives in `control_plane/api.py`; it is documented here with the rest.
`GET /api/openapi.json` lives in `control_plane/openapi.py`. Auth level FUNCTION everywhere; bodies
are read and errors written by `control_plane.api` (`{"errors": [{"path", "message"}]}`).
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from control_plane import operations as ops
from control_plane import twin_names
from control_plane.api import error, errors_response, json_response, plan_of_body, read_body, read_json_body
from shared.bundle import Bundle
from shared.contracts import ControlPlaneSetting
from shared.engine import names
from shared.engine.orchestrations import DeployInput, EngineOptions, RefreshInput, TwinOperation
from shared.engine.plan import EnginePlan, engine_plan_of
from shared.loaders import json_path
from shared.spec import TWIN_NAME_REGEX
from shared.validation import Problem, quote_value

bp = df.Blueprint()


def _twin_param(req: func.HttpRequest) -> tuple[str, func.HttpResponse | None]:
    twin = req.route_params.get("twin", "")
    if not TWIN_NAME_REGEX.fullmatch(twin):
        return twin, error(400, "twin", f"{quote_value(twin)} is not a twin name (1-42 letters, digits and "
                                        "hyphens, starting with a letter or digit)")
    return twin, None


class _TwinGate:
    """Makes "is an operation running for this twin?" and "start one" one step per twin: two
    simultaneous requests for an idle twin get one 202 and one 409. Per worker process (asyncio
    locks on its event loop); across processes the orchestrations' lock in the twin's state
    entity still lets only one run."""

    def __init__(self) -> None:
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, tuple[asyncio.Lock, int]]] = (
            weakref.WeakKeyDictionary())

    @asynccontextmanager
    async def held(self, twin: str) -> AsyncIterator[None]:
        # One gate for every case of a name: `GREENHOUSE-X` and `greenhouse-x` cannot both start.
        twin = twin_names.index_key(twin)
        locks = self._locks.setdefault(asyncio.get_running_loop(), {})
        lock, users = locks.get(twin) or (asyncio.Lock(), 0)
        locks[twin] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = locks[twin]
            if users <= 1:
                del locks[twin]
            else:
                locks[twin] = (lock, users - 1)


_gate = _TwinGate()


async def _conflict(client: df.DurableOrchestrationClient, twin: str) -> func.HttpResponse | None:
    running = await ops.blocking_operation(client, twin)
    if running is None:
        return None
    return error(409, "twin", f"operation {running} is running for twin {twin}; wait for it to finish "
                              f"(GET /api/deployments/{running})")


def _options() -> tuple[EngineOptions, func.HttpResponse | None]:
    """Engine options from app settings; a broken setting is the operator's error (500), said plainly."""
    try:
        return ops.engine_options(), None
    except ValueError as exc:
        return EngineOptions(), error(500, str(ControlPlaneSetting.ENGINE_OPTIONS), str(exc))


def _accepted(client: df.DurableOrchestrationClient, req: func.HttpRequest, instance: str) -> func.HttpResponse:
    response = client.create_check_status_response(req, instance)
    body = json.loads(response.get_body())
    # Our readable view beside Durable's own management links (which keep working unchanged).
    body["deploymentUri"] = body["statusQueryGetUri"].split("/runtime/webhooks/")[0] + f"/api/deployments/{instance}"
    return json_response(body, 202, headers=dict(response.headers))


def _validated(req: func.HttpRequest) -> tuple[Bundle | None, EnginePlan | None, func.HttpResponse | None]:
    """(bundle if one was sent, engine plan) of the body, or the 4xx answer. CPU-bound: runs in
    a thread."""
    body, answer = read_body(req, required=True, what="the deployment spec", bundles=True)
    if answer is not None:
        return None, None, answer
    built, answer = plan_of_body(body)
    if answer is not None or built is None:
        return None, None, answer or error(400, "", "the deployment spec is invalid")
    if built.code_problems:
        # The users' code: each problem at its spec path or bundle file.
        return None, None, errors_response(built.code_problems)
    # The plan is built here, once, and handed to the orchestration (which never rebuilds it).
    plan = engine_plan_of(built)
    if plan.problems:
        return None, None, errors_response([Problem("providers", p) for p in plan.problems])
    return body.bundle, plan, None


def _store_bundle(bundle: Bundle) -> func.HttpResponse | None:
    """Keep an accepted bundle in the bundle store (its digest names it), or the 503 saying why
    it cannot be kept. Blocking I/O: runs in a thread."""
    from activities.bundle_store import StoreUnavailable, store

    try:
        store().put(bundle.sha256, bundle.data)
    except StoreUnavailable as exc:
        return error(503, "", f"{exc}; the bundle was not deployed")
    return None


def _small_body(req: func.HttpRequest, allowed: str, example: str) -> tuple[dict[str, Any], func.HttpResponse | None]:
    """An optional JSON object body whose only field may be `allowed` (e.g. `{"grace_seconds": 30}`)."""
    body, answer = read_json_body(req, required=False)
    if answer is not None:
        return {}, answer
    if body is None:
        return {}, None
    if not isinstance(body, dict):
        return {}, error(400, "", f"the body, if any, must be a JSON object such as {example}")
    unknown = sorted(set(body) - {allowed})
    if unknown:
        return {}, errors_response([Problem(json_path((k,)), f"unknown field; only {allowed} is accepted")
                                    for k in unknown])
    return body, None


@bp.function_name("deployments_start")
@bp.route(route="deployments", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def deployments_start(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    prune_arg = (req.params.get("prune") or "true").lower()
    if prune_arg not in ("true", "false"):
        return error(400, "?prune", "must be true or false")
    # Parsing and validating a large spec takes a while: off the event loop that serves the rest.
    bundle, plan, answer = await asyncio.to_thread(_validated, req)
    if answer is not None or plan is None:
        return answer or error(400, "", "the deployment spec is invalid")
    twin = plan.twin
    options, answer = _options()
    if answer is not None:
        return answer
    async with _gate.held(twin):
        conflict = await _conflict(client, twin)
        if conflict is not None:
            return conflict
        variant = await twin_names.existing_variant(client, twin, ops.read_state)
        if variant is not None:
            return error(409, "twin.name", f"twin {variant} exists; twin names must differ in more than case "
                                           "(clouds lowercase names, so the two twins' objects would be one): "
                                           f"choose another name, or destroy {variant} first")
        if bundle is not None:
            answer = await asyncio.to_thread(_store_bundle, bundle)
            if answer is not None:
                return answer
        stale = await ops.stale_holder(client, await ops.read_state(client, twin))
        await twin_names.claim(client, twin)
        instance = ops.instance_id(twin, "deploy")
        # The plan built here is what deploys: its functions reference their code by digest
        # (never the code itself: Durable carries references only).
        await client.start_new(names.DEPLOY_TWIN, instance,
                               DeployInput(plan, options, stale, prune_arg == "true").to_dict())
    return _accepted(client, req, instance)


@bp.function_name("deployments_get")
@bp.route(route="deployments/{instanceId}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def deployments_get(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    instance = req.route_params.get("instanceId", "")
    parsed = ops.parse_instance_id(instance)
    if parsed is not None and not TWIN_NAME_REGEX.fullmatch(parsed[0]):
        parsed = None
    status = await client.get_status(instance) if parsed else None
    if not parsed or not status or status.runtime_status is None:
        return error(404, "instanceId", f"no twin operation has the id {quote_value(instance)}")
    state = await ops.read_state(client, parsed[0])
    return json_response(ops.deployment_view(status, state))


@bp.function_name("twins_get")
@bp.route(route="twins/{twin}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def twins_get(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    twin, answer = _twin_param(req)
    if answer is not None:
        return answer
    state = await ops.read_state(client, twin)
    if not state or not (state.get("resources") or state.get("outputs") or state.get("lock")):
        return error(404, "twin", f"twin {twin} has no recorded resources")
    return json_response(ops.twin_view(twin, state))


async def _start_operation(client: df.DurableOrchestrationClient, req: func.HttpRequest, twin: str,
                           orchestrator: str, operation: str, options: EngineOptions,
                           lacks: Callable[[dict[str, Any]], str | None]) -> func.HttpResponse:
    """Start `orchestrator` on a recorded twin, under the gate: 409 while an operation runs (during
    a twin's first deployment nothing is recorded yet, and the truthful answer is "wait", not
    "nothing there"), 404 with what `lacks(state)` says the twin lacks for it."""
    async with _gate.held(twin):
        conflict = await _conflict(client, twin)
        if conflict is not None:
            return conflict
        state = await ops.read_state(client, twin) or {}
        missing = lacks(state)
        if missing is not None:
            return error(404, "twin", missing)
        instance = ops.instance_id(twin, operation)
        await client.start_new(orchestrator, instance,
                               TwinOperation(twin, options, await ops.stale_holder(client, state)).to_dict())
    return _accepted(client, req, instance)


@bp.function_name("twins_delete")
@bp.route(route="twins/{twin}", methods=["DELETE"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def twins_delete(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    twin, answer = _twin_param(req)
    if answer is not None:
        return answer
    options, answer = _options()
    if answer is not None:
        return answer
    return await _start_operation(
        client, req, twin, names.DESTROY_TWIN, "destroy", options,
        lambda state: None if state.get("resources") else f"twin {twin} has no recorded resources to destroy")


@bp.function_name("tokens_rotate")
@bp.route(route="twins/{twin}/tokens/rotate", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def tokens_rotate(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    twin, answer = _twin_param(req)
    if answer is not None:
        return answer
    body, answer = await asyncio.to_thread(_small_body, req, "grace_seconds", '{"grace_seconds": 30}')
    if answer is not None:
        return answer
    options, answer = _options()
    if answer is not None:
        return answer
    if "grace_seconds" in body:
        grace = body["grace_seconds"]
        if isinstance(grace, bool) or not isinstance(grace, int | float) or not 0 <= grace <= 3600:
            return error(400, "grace_seconds", "must be a number of seconds between 0 and 3600")
        options = replace(options, grace_seconds=float(grace))
    return await _start_operation(
        client, req, twin, names.ROTATE_TOKEN, "rotate", options,
        lambda state: None if names.INTER_CLOUD_TOKEN in state.get("outputs", {})
        else f"twin {twin} has no inter-cloud token; deploy it first")


@bp.function_name("twins_refresh")
@bp.route(route="twins/{twin}/refresh", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def twins_refresh(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    twin, answer = _twin_param(req)
    if answer is not None:
        return answer
    body, answer = await asyncio.to_thread(_small_body, req, "resources", '{"resources": ["azure/L4/digital-twins"]}')
    if answer is not None:
        return answer
    options, answer = _options()
    if answer is not None:
        return answer
    resources = body.get("resources")
    if resources is not None and (not isinstance(resources, list) or not all(isinstance(r, str) for r in resources)):
        return error(400, "resources", "must be a list of resource ids")
    state = await ops.read_state(client, twin)
    if not state or not state.get("resources"):
        return error(404, "twin", f"twin {twin} has no recorded resources; deploy it first")
    if resources is not None:
        problems = [Problem(f"resources[{i}]", f"twin {twin} has no resource {quote_value(r)}")
                    for i, r in enumerate(resources) if r not in state["resources"]]
        if problems:
            return errors_response(problems)
    instance = ops.instance_id(twin, "refresh")
    await client.start_new(names.REFRESH_OUTPUTS, instance,
                           RefreshInput(twin, None if resources is None else tuple(resources), "requested",
                                        options).to_dict())
    return _accepted(client, req, instance)


@bp.entity_trigger(context_name="context", entity_name=twin_names.ENTITY)
def twin_names_index(context: df.DurableEntityContext) -> None:
    """Twin names by their case-folded form (`control_plane.twin_names`)."""
    twin_names.apply(context)
