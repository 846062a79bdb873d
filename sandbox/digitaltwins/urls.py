"""Routes of the Digital Twins data plane, relative to `/digitaltwins-instances/`."""

from __future__ import annotations

from aiohttp import web

from sandbox.core.context import SandboxContext
from sandbox.digitaltwins import responses as r
from sandbox.digitaltwins.models import RESOURCE_TYPE, URL_PREFIX, DigitalTwinsBackend


def backend(ctx: SandboxContext) -> DigitalTwinsBackend:
    """The sandbox's Digital Twins state (created by `install`)."""
    hooks = ctx.hooks_for(RESOURCE_TYPE)
    if not isinstance(hooks, DigitalTwinsBackend):
        install(ctx)
        hooks = ctx.hooks_for(RESOURCE_TYPE)
    assert isinstance(hooks, DigitalTwinsBackend)
    return hooks


def install(ctx: SandboxContext) -> None:
    """Register the ARM hook for `Microsoft.DigitalTwins/digitalTwinsInstances` (idempotent)."""
    if not isinstance(ctx.hooks_for(RESOURCE_TYPE), DigitalTwinsBackend):
        ctx.register_hooks(RESOURCE_TYPE, DigitalTwinsBackend(ctx))


def create_app(ctx: SandboxContext) -> web.Application:
    @web.middleware
    async def record_exchange(request: web.Request, handler: r.RouteHandler) -> web.StreamResponse:
        response = await handler(request)
        instance = request.match_info.get("instance", "")
        await ctx.exchanges.record("digitaltwins", request, response, mount=f"{URL_PREFIX}/{instance}")
        return response

    app = web.Application(client_max_size=32 * 1024 * 1024, middlewares=[record_exchange])
    app[r.BACKEND_KEY] = backend(ctx)
    app[r.CTX_KEY] = ctx
    base = "/{instance}"
    twin = base + "/digitaltwins/{twin_id}"
    app.router.add_post(base + "/models", r.create_models)
    app.router.add_get(base + "/models", r.list_models)
    app.router.add_get(base + "/models/{model_id}", r.get_model)
    app.router.add_patch(base + "/models/{model_id}", r.patch_model)
    app.router.add_delete(base + "/models/{model_id}", r.delete_model)
    app.router.add_get(twin, r.get_twin)
    app.router.add_put(twin, r.put_twin)
    app.router.add_patch(twin, r.patch_twin)
    app.router.add_delete(twin, r.delete_twin)
    app.router.add_get(twin + "/components/{component}", r.get_component)
    app.router.add_patch(twin + "/components/{component}", r.patch_component)
    app.router.add_post(twin + "/components/{component}/telemetry", r.publish_component_telemetry)
    app.router.add_get(twin + "/relationships", r.list_relationships)
    app.router.add_get(twin + "/incomingrelationships", r.list_incoming)
    app.router.add_get(twin + "/relationships/{rel_id}", r.get_relationship)
    app.router.add_put(twin + "/relationships/{rel_id}", r.put_relationship)
    app.router.add_patch(twin + "/relationships/{rel_id}", r.patch_relationship)
    app.router.add_delete(twin + "/relationships/{rel_id}", r.delete_relationship)
    app.router.add_post(twin + "/telemetry", r.publish_telemetry)
    app.router.add_post(base + "/query", r.query)
    return app
