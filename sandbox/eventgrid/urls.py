"""Routes of the Event Grid data plane, relative to `/eventgrid/`, and the ARM hook registration."""

from __future__ import annotations

from aiohttp import web

from sandbox.core.context import SandboxContext
from sandbox.core.http import no_faults
from sandbox.eventgrid import responses as r
from sandbox.eventgrid.models import (
    SUBSCRIPTION_TYPES,
    SYSTEM_TOPIC_TYPE,
    TOPIC_TYPE,
    EventGridBackend,
    _Hooks,
)


def backend(ctx: SandboxContext) -> EventGridBackend:
    """The sandbox's Event Grid state (created by `install`)."""
    hooks = ctx.hooks_for(TOPIC_TYPE)
    if not isinstance(hooks, _Hooks):
        install(ctx)
        hooks = ctx.hooks_for(TOPIC_TYPE)
    assert isinstance(hooks, _Hooks)
    owner = hooks.owner
    assert isinstance(owner, EventGridBackend)
    return owner


def install(ctx: SandboxContext) -> None:
    """Register the ARM hooks for topics, system topics and event subscriptions (idempotent)."""
    if isinstance(ctx.hooks_for(TOPIC_TYPE), _Hooks):
        return
    b = EventGridBackend(ctx)
    ctx.register_hooks(TOPIC_TYPE, b.topic_hooks)
    ctx.register_hooks(SYSTEM_TOPIC_TYPE, b.system_topic_hooks)
    for t in SUBSCRIPTION_TYPES:
        ctx.register_hooks(t, b.subscription_hooks)
    ctx.resource_event_listeners.append(b.publish_resource_event)


def create_app(ctx: SandboxContext) -> web.Application:
    b = backend(ctx)
    app = web.Application(client_max_size=2 * 1024 * 1024)
    app[r.BACKEND_KEY] = b
    app[r.CTX_KEY] = ctx
    app.router.add_post("/{topic}/api/events", r.publish)
    app.router.add_get("/_validate/{code}", no_faults(r.manual_validation))

    async def start(_: web.Application) -> None:
        await b.attach()

    async def stop(_: web.Application) -> None:
        await b.detach()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return app
