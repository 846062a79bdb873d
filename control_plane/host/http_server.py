"""The aiohttp application: HTTP-triggered functions, the Durable API, Event Grid delivery.

Routes:
- `/api/<route>`: the app's HTTP functions (route templates, methods, auth levels);
- `/durabletask/...`: the client's RPC base (no key, loopback only, like the extension);
- `/runtime/webhooks/durabletask/...` and `/runtime/webhooks/eventgrid`: need the key;
- `/admin/host/status`: readiness.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import azure.functions as func
from aiohttp import web

from .app_loader import FunctionRegistry, HttpRoute, build_kwargs
from .durable_api import PUBLIC_PREFIX, RPC_PREFIX, DurableApi
from .eventgrid import EventGridDelivery

log = logging.getLogger("control_plane.host")


def key_matches(request: web.Request, *keys: str) -> bool:
    """The request carries one of `keys` (in `code` or `x-functions-key`), compared in constant time."""
    given = (request.query.get("code") or request.headers.get("x-functions-key") or "").encode()
    return any(hmac.compare_digest(given, key.encode()) for key in keys if key)


class HttpFunctions:
    def __init__(self, registry: FunctionRegistry, durable: DurableApi, pool: ThreadPoolExecutor) -> None:
        self.registry = registry
        self.durable = durable
        self.pool = pool

    async def run_sync(self, fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, functools.partial(fn, **kwargs))

    def _find(self, path: str, method: str) -> tuple[HttpRoute | None, dict[str, str], bool]:
        method_mismatch = False
        for route in self.registry.http_routes:
            params = route.match(path)
            if params is None:
                continue
            if route.methods and method not in route.methods:
                method_mismatch = True
                continue
            return route, params, False
        return None, {}, method_mismatch

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        route, params, method_mismatch = self._find(path.rstrip("/") or "/", request.method)
        if route is None:
            return web.Response(status=405 if method_mismatch else 404)
        if route.auth_level != "ANONYMOUS" and not key_matches(
            request, self.durable.function_key, *self.durable.extra_function_keys
        ):
            return web.Response(status=401)
        body = await request.read()
        req = func.HttpRequest(method=request.method, url=str(request.url), headers=dict(request.headers),
                               params=dict(request.query), route_params=params, body=body)
        given: dict[str, Any] = {route.trigger_param: req}
        if route.client_param:
            given[route.client_param] = self.durable.client_binding(DurableApi.origin(request))
        kwargs = build_kwargs(route.fn, route.function_name, self.registry.app_dir, given, route.extra_outputs)
        started = time.perf_counter()
        try:
            if inspect.iscoroutinefunction(route.fn):
                result = await route.fn(**kwargs)
            else:
                result = await self.run_sync(route.fn, kwargs)
        except Exception as exc:
            log.exception("http function %s failed", route.function_name)
            return web.json_response({"Message": f"function {route.function_name} failed: "
                                                 f"{type(exc).__name__}"}, status=500)
        finally:
            log.info("http %s %s %s duration_ms=%.1f", route.function_name, request.method, request.path,
                     (time.perf_counter() - started) * 1000)
        return to_aiohttp(result)


def to_aiohttp(result: Any) -> web.Response:
    if result is None:
        return web.Response(status=204)
    if isinstance(result, func.HttpResponse):
        headers = {k: v for k, v in result.headers.items() if k.lower() != "content-length"}
        if result.mimetype and "content-type" not in {k.lower() for k in headers}:
            ctype = result.mimetype
            if result.charset and ctype.startswith("text/") or ctype == "application/json":
                ctype = f"{ctype}; charset={result.charset or 'utf-8'}"
            headers["Content-Type"] = ctype
        return web.Response(status=result.status_code, body=result.get_body(), headers=headers)
    if isinstance(result, bytes):
        return web.Response(body=result)
    return web.Response(text=str(result))


def build_app(registry: FunctionRegistry, durable: DurableApi, pool: ThreadPoolExecutor) -> web.Application:
    functions = HttpFunctions(registry, durable, pool)
    eventgrid = EventGridDelivery(registry, lambda req: durable.client_binding(DurableApi.origin(req)),
                                  functions.run_sync)

    @web.middleware
    async def system_key(request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if request.path.startswith("/runtime/webhooks/") and not key_matches(request, durable.function_key):
            return web.json_response({"Message": "a valid key is required (code query parameter or "
                                                 "x-functions-key header)"}, status=401)
        return await handler(request)

    async def host_status(_: web.Request) -> web.StreamResponse:
        return web.json_response({"state": "Running", "functions": len(registry.summary())})

    app = web.Application(middlewares=[system_key], client_max_size=100 * 1024 * 1024)
    durable.add_routes(app, RPC_PREFIX)
    durable.add_routes(app, PUBLIC_PREFIX)
    app.router.add_post("/runtime/webhooks/eventgrid", eventgrid.deliver)
    app.router.add_route("OPTIONS", "/runtime/webhooks/eventgrid", eventgrid.options)
    app.router.add_get("/admin/host/status", host_status)
    app.router.add_route("*", "/api/{tail:.*}", functions.handle)
    return app
