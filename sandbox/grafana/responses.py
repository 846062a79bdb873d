"""HTTP side of the Managed Grafana data plane: `/api/datasources` with Entra bearer tokens.

A caller needs a token for the Grafana application (audience `ce34e7e5-...`) and an effective
"Grafana Admin" role assignment on the workspace (or above); Editor and Viewer get 403, as
datasource management is an admin permission in Grafana.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from sandbox.core.auth import audience_from_request, principal_from_request
from sandbox.core.context import SandboxContext
from sandbox.grafana.models import (
    GRAFANA_ADMIN_ROLE,
    GRAFANA_AUDIENCES,
    Datasource,
    GrafanaBackend,
    GrafanaError,
    Workspace,
)

BACKEND_KEY: web.AppKey[GrafanaBackend] = web.AppKey("grafana_backend", GrafanaBackend)
CTX_KEY: web.AppKey[SandboxContext] = web.AppKey("grafana_ctx", SandboxContext)

Handler = Callable[[web.Request, Workspace], Awaitable[web.StreamResponse]]


def error_response(err: GrafanaError) -> web.Response:
    return web.Response(body=json.dumps(err.body()).encode(), status=err.status, content_type="application/json")


def fault_response(request: web.Request, status: int, retry_after: int) -> web.StreamResponse:
    message = "Too many requests" if status == 429 else "Service unavailable"
    resp = error_response(GrafanaError(status, message))
    resp.headers["Retry-After"] = str(retry_after)
    return resp


def json_ok(body: Any) -> web.Response:
    return web.Response(body=json.dumps(body).encode(), content_type="application/json")


def _unauthorized(detail: str) -> GrafanaError:
    return GrafanaError(401, "Unauthorized", {"messageId": "auth.unauthorized", "statusCode": 401, "extra": {"reason": detail}})


def _no_workspace(request: web.Request) -> GrafanaError:
    return GrafanaError(
        404,
        f"No Managed Grafana workspace named {request.match_info['workspace']!r} is served here: it does not exist "
        "or was deleted.",
    )


def grafana_handler(permission: str) -> Callable[[Handler], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """Wrap a handler with workspace lookup, token and role checks, and error shaping."""

    def wrap(fn: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            try:
                ws = request.app[BACKEND_KEY].workspace(request.match_info["workspace"])
                if ws is None:
                    raise _no_workspace(request)
                if ws.api_key_valid is not None:  # Amazon Managed Grafana: a workspace API key
                    auth = request.headers.get("Authorization", "")
                    if not auth.startswith("Bearer ") or not ws.api_key_valid(auth[len("Bearer "):]):
                        raise _unauthorized("invalid API key")
                    return await fn(request, ws)
                principal = principal_from_request(request)
                if principal is None:
                    raise _unauthorized("missing, unreadable or expired bearer token")
                audience = audience_from_request(request) or ""
                if audience not in GRAFANA_AUDIENCES:
                    raise _unauthorized(
                        f"the token's audience {audience!r} is not Azure Managed Grafana; request a token for "
                        "ce34e7e5-485f-4d76-964f-b3d2b16d1e4f/.default"
                    )
                ctx = request.app[CTX_KEY]
                if not ctx.role_assignments.allows(principal, ws.resource_id, {GRAFANA_ADMIN_ROLE}):
                    raise GrafanaError(
                        403,
                        "You'll need additional permissions to perform this action. Permissions needed: "
                        f"{permission} (assign the 'Grafana Admin' role on the workspace; role assignments can take "
                        "a while to become effective)",
                        {"title": "Access denied", "accessErrorId": f"ACE{uuid.uuid4().int % 10**10:010d}"},
                    )
                return await fn(request, ws)
            except GrafanaError as err:
                return error_response(err)

        handler.__name__ = fn.__name__
        return handler

    return wrap


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise GrafanaError(400, f"bad request data: the body is not valid JSON: {exc}") from exc


def _lookup(request: web.Request, ws: Workspace) -> Datasource:
    m = request.match_info
    if "uid" in m:
        return ws.find(uid=m["uid"])
    if "name" in m:
        return ws.find(name=m["name"])
    return ws.find(ds_id=int(m["id"]))


async def health(request: web.Request) -> web.StreamResponse:
    if request.app[BACKEND_KEY].workspace(request.match_info["workspace"]) is None:
        return error_response(_no_workspace(request))
    return json_ok({"commit": "sandbox", "database": "ok", "version": "11.6.0"})


@grafana_handler("datasources:read")
async def list_datasources(request: web.Request, ws: Workspace) -> web.StreamResponse:
    return json_ok(ws.list())


@grafana_handler("datasources:read")
async def get_datasource(request: web.Request, ws: Workspace) -> web.StreamResponse:
    return json_ok(_lookup(request, ws).full())


@grafana_handler("datasources:create")
async def create_datasource(request: web.Request, ws: Workspace) -> web.StreamResponse:
    ds = ws.add(await _body(request))
    return json_ok({"datasource": ds.full(), "id": ds.id, "message": "Datasource added", "name": ds.fields["name"]})


@grafana_handler("datasources:write")
async def update_datasource(request: web.Request, ws: Workspace) -> web.StreamResponse:
    ds = ws.update(_lookup(request, ws), await _body(request))
    return json_ok({"datasource": ds.full(), "id": ds.id, "message": "Datasource updated", "name": ds.fields["name"]})


@grafana_handler("datasources:delete")
async def delete_datasource(request: web.Request, ws: Workspace) -> web.StreamResponse:
    ds = _lookup(request, ws)
    ws.delete(ds)
    body: dict[str, Any] = {"message": "Data source deleted"}
    if "id" not in request.match_info:
        body["id"] = ds.id
    return json_ok(body)
