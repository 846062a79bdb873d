"""HTTP side of the Digital Twins data plane: parse requests, check auth and RBAC, shape answers.

Every handler resolves the instance from the first path segment (`<name>-<n>`), requires a
bearer token (401 otherwise), and requires an effective "Azure Digital Twins Data Owner"
assignment (or "Data Reader" for reads) at the instance's scope or above (403 otherwise),
as ADT does.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from sandbox.core.auth import principal_from_request, unauthorized_response
from sandbox.core.context import SandboxContext
from sandbox.digitaltwins.models import (
    DATA_OWNER_ROLE,
    DATA_READER_ROLE,
    MODELS_PAGE_SIZE,
    RELATIONSHIPS_PAGE_SIZE,
    AdtError,
    DigitalTwinsBackend,
    Instance,
)

BACKEND_KEY: web.AppKey[DigitalTwinsBackend] = web.AppKey("adt_backend", DigitalTwinsBackend)
CTX_KEY: web.AppKey[SandboxContext] = web.AppKey("adt_ctx", SandboxContext)

Handler = Callable[[web.Request, Instance], Awaitable[web.StreamResponse]]
RouteHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(err: AdtError) -> web.Response:
    return web.Response(
        body=json.dumps(err.body()).encode(), status=err.status, content_type="application/json", headers=err.headers
    )


def json_ok(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=json.dumps(body).encode(), status=status, content_type="application/json", headers=headers)


def no_content(headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=204, headers=headers)


def _action(request: web.Request) -> str:
    kind = "models" if "/models" in request.path else "query" if request.path.endswith("/query") else "digitaltwins"
    verb = {"GET": "read", "HEAD": "read", "DELETE": "delete"}.get(request.method, "write")
    if kind == "query":
        verb = "action"
    return f"Microsoft.DigitalTwins/{kind}/{verb}"


def adt_handler(write: bool) -> Callable[[Handler], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """Wrap a handler with instance lookup, api-version, auth and RBAC checks and error shaping."""

    def wrap(fn: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            backend = request.app[BACKEND_KEY]
            ctx = request.app[CTX_KEY]
            inst = backend.instance(request.match_info["instance"])
            if inst is None:
                return error_response(
                    AdtError(
                        404,
                        "InstanceNotFound",
                        f"No Azure Digital Twins instance is served at host name {request.host}/digitaltwins-instances/"
                        f"{request.match_info['instance']}: it does not exist or was deleted (a recreated instance "
                        "has a new host name; read properties.hostName again).",
                    )
                )
            principal = principal_from_request(request)
            if principal is None:
                return unauthorized_response(ctx.tenant_id, service="adt")
            roles = {DATA_OWNER_ROLE} if write else {DATA_OWNER_ROLE, DATA_READER_ROLE}
            if not ctx.role_assignments.allows(principal, inst.resource_id, roles):
                return error_response(
                    AdtError(
                        403,
                        "Forbidden",
                        f"The client '{principal}' does not have permission to perform action '{_action(request)}' "
                        f"on the Azure Digital Twins instance {inst.name}. Assign it the 'Azure Digital Twins Data "
                        f"{'Owner' if write else 'Reader'}' role at the instance's scope (role assignments can take "
                        "a while to become effective).",
                    )
                )
            if not request.query.get("api-version"):
                return error_response(
                    AdtError(400, "MissingApiVersionParameter", "The api-version query parameter is required.")
                )
            try:
                return await fn(request, inst)
            except AdtError as err:
                return error_response(err)

        handler.__name__ = fn.__name__
        return handler

    return wrap


async def read_json(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        raise AdtError(400, "InvalidArgument", "The request body is empty; a JSON document is required.")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AdtError(400, "InvalidArgument", f"The request body is not valid JSON: {exc}.") from exc


def _page(request: web.Request, items: list[Any], page_size: int) -> dict[str, Any]:
    """`{value, nextLink}` paging; the link carries the offset (an opaque token to the client)."""
    header = request.headers.get("max-items-per-page")
    if header and header.isdigit() and int(header) > 0:
        page_size = min(page_size, int(header))
    token = request.query.get("continuationToken")
    offset = 0
    if token:
        try:
            offset = int(base64.urlsafe_b64decode(token.encode()).decode())
        except ValueError as exc:
            raise AdtError(400, "BadRequest", "The continuation token is invalid.") from exc
    page = items[offset : offset + page_size]
    next_link = None
    if offset + page_size < len(items):
        params = {k: v for k, v in request.query.items() if k not in ("continuationToken", "api-version")}
        params["continuationToken"] = base64.urlsafe_b64encode(str(offset + page_size).encode()).decode()
        next_link = str(request.url.with_query(None)) + "?" + urlencode(params)
    return {"value": page, "nextLink": next_link}


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "false").lower() == "true"


# --- models --------------------------------------------------------------------------------------


@adt_handler(write=True)
async def create_models(request: web.Request, inst: Instance) -> web.StreamResponse:
    return json_ok(inst.add_models(await read_json(request)), status=201)


@adt_handler(write=False)
async def list_models(request: web.Request, inst: Instance) -> web.StreamResponse:
    deps = request.query.getall("dependenciesFor", [])
    include = _flag(request, "includeModelDefinition")
    models = [m.summary(include) for m in inst.list_models(deps)]
    return json_ok(_page(request, models, MODELS_PAGE_SIZE))


@adt_handler(write=False)
async def get_model(request: web.Request, inst: Instance) -> web.StreamResponse:
    model = inst.get_model(request.match_info["model_id"])
    return json_ok(model.summary(_flag(request, "includeModelDefinition")))


@adt_handler(write=True)
async def patch_model(request: web.Request, inst: Instance) -> web.StreamResponse:
    inst.decommission_model(request.match_info["model_id"], await read_json(request))
    return no_content()


@adt_handler(write=True)
async def delete_model(request: web.Request, inst: Instance) -> web.StreamResponse:
    inst.delete_model(request.match_info["model_id"])
    return no_content()


# --- twins ---------------------------------------------------------------------------------------


@adt_handler(write=False)
async def get_twin(request: web.Request, inst: Instance) -> web.StreamResponse:
    twin = inst.get_twin(request.match_info["twin_id"])
    return json_ok(twin, headers={"ETag": twin["$etag"]})


@adt_handler(write=True)
async def put_twin(request: web.Request, inst: Instance) -> web.StreamResponse:
    body = await read_json(request)
    twin = inst.upsert_twin(
        request.match_info["twin_id"], body, request.headers.get("If-None-Match"), request.headers.get("If-Match")
    )
    return json_ok(twin, headers={"ETag": twin["$etag"]})


@adt_handler(write=True)
async def patch_twin(request: web.Request, inst: Instance) -> web.StreamResponse:
    etag = inst.patch_twin(request.match_info["twin_id"], await read_json(request), request.headers.get("If-Match"))
    return no_content({"ETag": etag})


@adt_handler(write=True)
async def delete_twin(request: web.Request, inst: Instance) -> web.StreamResponse:
    inst.delete_twin(request.match_info["twin_id"], request.headers.get("If-Match"))
    return no_content()


@adt_handler(write=False)
async def get_component(request: web.Request, inst: Instance) -> web.StreamResponse:
    twin_id = request.match_info["twin_id"]
    comp = inst.get_component(twin_id, request.match_info["component"])
    return json_ok(comp, headers={"ETag": inst.get_twin(twin_id)["$etag"]})


@adt_handler(write=True)
async def patch_component(request: web.Request, inst: Instance) -> web.StreamResponse:
    etag = inst.patch_twin(
        request.match_info["twin_id"],
        await read_json(request),
        request.headers.get("If-Match"),
        component=request.match_info["component"],
    )
    return no_content({"ETag": etag})


# --- relationships -------------------------------------------------------------------------------


@adt_handler(write=False)
async def list_relationships(request: web.Request, inst: Instance) -> web.StreamResponse:
    rels = inst.list_relationships(request.match_info["twin_id"], request.query.get("relationshipName"))
    return json_ok(_page(request, rels, RELATIONSHIPS_PAGE_SIZE))


@adt_handler(write=False)
async def list_incoming(request: web.Request, inst: Instance) -> web.StreamResponse:
    rels = inst.list_incoming(request.match_info["twin_id"])
    return json_ok(_page(request, rels, RELATIONSHIPS_PAGE_SIZE))


@adt_handler(write=False)
async def get_relationship(request: web.Request, inst: Instance) -> web.StreamResponse:
    rel = inst.get_relationship(request.match_info["twin_id"], request.match_info["rel_id"])
    return json_ok(rel, headers={"ETag": rel["$etag"]})


@adt_handler(write=True)
async def put_relationship(request: web.Request, inst: Instance) -> web.StreamResponse:
    rel = inst.upsert_relationship(
        request.match_info["twin_id"],
        request.match_info["rel_id"],
        await read_json(request),
        request.headers.get("If-None-Match"),
        request.headers.get("If-Match"),
    )
    return json_ok(rel, headers={"ETag": rel["$etag"]})


@adt_handler(write=True)
async def patch_relationship(request: web.Request, inst: Instance) -> web.StreamResponse:
    etag = inst.patch_relationship(
        request.match_info["twin_id"],
        request.match_info["rel_id"],
        await read_json(request),
        request.headers.get("If-Match"),
    )
    return no_content({"ETag": etag})


@adt_handler(write=True)
async def delete_relationship(request: web.Request, inst: Instance) -> web.StreamResponse:
    inst.delete_relationship(request.match_info["twin_id"], request.match_info["rel_id"], request.headers.get("If-Match"))
    return no_content()


# --- telemetry and query -------------------------------------------------------------------------


async def _telemetry(request: web.Request, inst: Instance, component: str | None) -> web.StreamResponse:
    raw = await request.read()
    try:
        data = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise AdtError(400, "InvalidArgument", f"The telemetry body is not valid JSON: {exc}.") from exc
    inst.publish_telemetry(
        request.match_info["twin_id"],
        component,
        request.headers.get("Message-Id"),
        request.headers.get("Telemetry-Source-Time"),
        data,
    )
    return no_content()


@adt_handler(write=True)
async def publish_telemetry(request: web.Request, inst: Instance) -> web.StreamResponse:
    return await _telemetry(request, inst, None)


@adt_handler(write=True)
async def publish_component_telemetry(request: web.Request, inst: Instance) -> web.StreamResponse:
    return await _telemetry(request, inst, request.match_info["component"])


@adt_handler(write=False)
async def query(request: web.Request, inst: Instance) -> web.StreamResponse:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise AdtError(400, "BadRequest", "The request body must be {\"query\": \"...\"}.")
    header = request.headers.get("max-items-per-page")
    page_size = int(header) if header and header.isdigit() else None
    rows, token = inst.query(body.get("query"), body.get("continuationToken"), page_size)
    return json_ok({"value": rows, "continuationToken": token}, headers={"query-charge": f"{1 + len(rows) * 0.1:.2f}"})
