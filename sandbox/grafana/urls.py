"""Routes of the Managed Grafana data plane, relative to `/grafana/` (the first segment is the workspace)."""

from __future__ import annotations

from aiohttp import web

from sandbox.core.context import SandboxContext
from sandbox.core.http import FAULT_RESPONDER_KEY
from sandbox.grafana import responses as r
from sandbox.grafana.models import RESOURCE_TYPE, GrafanaBackend


def backend(ctx: SandboxContext) -> GrafanaBackend:
    """The sandbox's Managed Grafana state (created by `install`)."""
    owner = getattr(ctx.hooks_for(RESOURCE_TYPE), "owner", None)
    if not isinstance(owner, GrafanaBackend):
        install(ctx)
        owner = getattr(ctx.hooks_for(RESOURCE_TYPE), "owner", None)
    assert isinstance(owner, GrafanaBackend)
    return owner


def install(ctx: SandboxContext) -> None:
    """Register the ARM hook for `Microsoft.Dashboard/grafana` (idempotent)."""
    if not isinstance(getattr(ctx.hooks_for(RESOURCE_TYPE), "owner", None), GrafanaBackend):
        ctx.register_hooks(RESOURCE_TYPE, GrafanaBackend(ctx).hooks)


def create_app(ctx: SandboxContext) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[r.BACKEND_KEY] = backend(ctx)
    app[r.CTX_KEY] = ctx
    app[FAULT_RESPONDER_KEY] = r.fault_response
    base = "/{workspace}/api/datasources"
    app.router.add_get("/{workspace}/api/health", r.health)
    app.router.add_get(base, r.list_datasources)
    app.router.add_post(base, r.create_datasource)
    for key in ("/uid/{uid}", "/name/{name}", "/{id:\\d+}"):
        app.router.add_get(base + key, r.get_datasource)
        app.router.add_delete(base + key, r.delete_datasource)
    app.router.add_put(base + "/uid/{uid}", r.update_datasource)
    app.router.add_put(base + "/{id:\\d+}", r.update_datasource)
    return app
