"""Routes of the IoT Hub data plane, relative to `/iothub/` (the first segment is the hub)."""

from __future__ import annotations

from aiohttp import web

from sandbox.core.context import SandboxContext
from sandbox.core.http import FAULT_RESPONDER_KEY
from sandbox.iothub import responses as r
from sandbox.iothub.models import RESOURCE_TYPE, IotHubBackend


def backend(ctx: SandboxContext) -> IotHubBackend:
    """The sandbox's IoT Hub state (created by `install`)."""
    owner = getattr(ctx.hooks_for(RESOURCE_TYPE), "owner", None)
    if not isinstance(owner, IotHubBackend):
        install(ctx)
        owner = getattr(ctx.hooks_for(RESOURCE_TYPE), "owner", None)
    assert isinstance(owner, IotHubBackend)
    return owner


def install(ctx: SandboxContext) -> None:
    """Register the ARM hook for `Microsoft.Devices/IotHubs` (idempotent)."""
    if not isinstance(getattr(ctx.hooks_for(RESOURCE_TYPE), "owner", None), IotHubBackend):
        ctx.register_hooks(RESOURCE_TYPE, IotHubBackend(ctx).hooks)


def create_app(ctx: SandboxContext) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[r.BACKEND_KEY] = backend(ctx)
    app[r.CTX_KEY] = ctx
    app[FAULT_RESPONDER_KEY] = r.fault_response
    base = "/{hub}/devices"
    app.router.add_get(base, r.list_devices)
    app.router.add_get(base + "/{device}", r.get_device)
    app.router.add_put(base + "/{device}", r.put_device)
    app.router.add_delete(base + "/{device}", r.delete_device)
    app.router.add_post(base + "/{device}/messages/events", r.send_event)
    app.router.add_get("/{hub}/twins/{device}", r.get_twin)
    app.router.add_patch("/{hub}/twins/{device}", r.patch_twin)
    return app
