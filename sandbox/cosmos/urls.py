"""Routes of the Cosmos DB data plane, relative to `/cosmos/` (the first segment is the account).

The SDK sends paths with and without a trailing slash (`/dbs/db/colls/c/docs/`), so each route
accepts both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from sandbox.core.context import SandboxContext
from sandbox.core.http import FAULT_RESPONDER_KEY
from sandbox.cosmos import responses as r
from sandbox.cosmos.models import ACCOUNT_TYPE, CONTAINER_TYPE, DATABASE_TYPE, CosmosBackend


def backend(ctx: SandboxContext) -> CosmosBackend:
    """The sandbox's Cosmos DB state (created by `install`)."""
    hooks = ctx.hooks_for(ACCOUNT_TYPE)
    owner = getattr(hooks, "owner", None)
    if not isinstance(owner, CosmosBackend):
        install(ctx)
        owner = getattr(ctx.hooks_for(ACCOUNT_TYPE), "owner", None)
    assert isinstance(owner, CosmosBackend)
    return owner


def install(ctx: SandboxContext) -> None:
    """Register the ARM hooks for accounts, SQL databases and containers (idempotent)."""
    if isinstance(getattr(ctx.hooks_for(ACCOUNT_TYPE), "owner", None), CosmosBackend):
        return
    b = CosmosBackend(ctx)
    ctx.register_hooks(ACCOUNT_TYPE, b.account_hooks)
    ctx.register_hooks(DATABASE_TYPE, b.database_hooks)
    ctx.register_hooks(CONTAINER_TYPE, b.container_hooks)


Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(ctx: SandboxContext) -> web.Application:
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app[r.BACKEND_KEY] = backend(ctx)
    app[FAULT_RESPONDER_KEY] = r.fault_response
    acct = "/{account}"
    coll = acct + "/dbs/{db}/colls/{coll}"

    def add(method: str, path: str, handler: Route) -> None:
        app.router.add_route(method, path, handler)
        app.router.add_route(method, path + "/", handler)

    add("GET", acct, r.get_account)
    add("GET", acct + "/dbs", r.list_databases)
    add("GET", acct + "/dbs/{db}", r.get_database)
    add("GET", acct + "/dbs/{db}/colls", r.list_containers)
    add("GET", coll, r.get_container)
    add("GET", coll + "/pkranges", r.get_pkranges)
    add("GET", coll + "/docs", r.read_feed)
    add("POST", coll + "/docs", r.post_docs)
    add("GET", coll + "/docs/{doc}", r.get_doc)
    add("PUT", coll + "/docs/{doc}", r.put_doc)
    add("DELETE", coll + "/docs/{doc}", r.delete_doc)
    return app
