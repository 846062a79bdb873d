"""The aiohttp application: HTTP-triggered functions, the Durable API, Event Grid delivery.

Routes:
- `/api/<route>`: the app's HTTP functions (route templates, methods, auth levels);
- `/durabletask/...`: the client's RPC base (no key, loopback only, like the extension);
- `/runtime/webhooks/durabletask/...` and `/runtime/webhooks/eventgrid`: need the key;
- `/admin/host/status`: readiness;
- `POST /admin/functions/{name}` (master key in `x-functions-key`): run a non-HTTP function now,
  as on Azure: body `{"input": "..."}`; a timer runs as a tick, an Event Grid function gets the
  input parsed as one event; answers 202 before the run (its outcome is in the host's log).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import azure.functions as func
from aiohttp import web

from .app_loader import FunctionRegistry, HttpRoute, build_kwargs
from .durable_api import PUBLIC_PREFIX, RPC_PREFIX, DurableApi
from .eventgrid import EventGridDelivery, _schema_problem
from .timers import TimerScheduler

log = logging.getLogger("local_host")


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


class AdminRun:
    """`POST /admin/functions/{name}`: the Functions host's manual run of a non-HTTP function."""

    def __init__(self, registry: FunctionRegistry, durable: DurableApi, timers: TimerScheduler | None,
                 eventgrid: EventGridDelivery) -> None:
        self.registry = registry
        self.durable = durable
        self.timers = timers
        self.eventgrid = eventgrid
        self._background: set[asyncio.Task[None]] = set()

    def _kind(self, name: str) -> tuple[str, str] | None:
        """(registered name, trigger kind) by case-insensitive name, as the host resolves it."""
        tables: list[tuple[str, Any]] = [
            ("timerTrigger", self.registry.timers), ("eventGridTrigger", self.registry.eventgrid),
            ("orchestrationTrigger", self.registry.orchestrators), ("activityTrigger", self.registry.activities),
            ("entityTrigger", {v.function_name: v for v in self.registry.entities.values()}),
            ("httpTrigger", {r.function_name: r for r in self.registry.http_routes}),
        ]
        tables += [(kind, {n: kind}) for n, kind in self.registry.skipped.items()]
        for kind, table in tables:
            for registered in table:
                if registered.lower() == name.lower():
                    return registered, kind
        return None

    async def run(self, request: web.Request) -> web.StreamResponse:
        # Only the master key opens /admin, never a function key.
        if not key_matches(request, self.durable.function_key):
            return web.json_response({"Message": "the master key is required (x-functions-key header)"},
                                     status=401)
        name = request.match_info["name"]
        found = self._kind(name)
        if found is None:
            return web.json_response({"Message": f"function '{name}' does not exist in this app"}, status=404)
        registered, kind = found
        raw = await request.read()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as exc:
            return web.json_response({"Message": f"body: not valid JSON ({exc})"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"Message": 'body: must be a JSON object such as {"input": "..."}'},
                                     status=400)
        if kind == "timerTrigger":
            if self.timers is None or registered not in self.registry.timer_functions:
                why = self.registry.timer_errors.get(registered, "timers are not running")
                return web.json_response({"Message": f"function '{registered}' is in error: {why}"}, status=400)
            self.timers.run_now(registered)
            return web.Response(status=202)
        if kind == "eventGridTrigger":
            value = body.get("input")
            try:
                event = json.loads(value) if isinstance(value, str) else value
            except json.JSONDecodeError as exc:
                return web.json_response({"Message": f"input: not a JSON Event Grid event ({exc})"}, status=400)
            problem = _schema_problem(event) if isinstance(event, dict) else "expected one event (a JSON object)"
            if problem or not isinstance(event, dict):
                return web.json_response({"Message": f"input: {problem}"}, status=400)
            task = asyncio.create_task(self._deliver(registered, event, request))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return web.Response(status=202)
        return web.json_response({"Message": f"function '{registered}' has a {kind}, which the local host "
                                             "does not run manually (timer and Event Grid functions only)"},
                                 status=400)

    async def _deliver(self, name: str, event: dict[str, Any], request: web.Request) -> None:
        try:
            await self.eventgrid._invoke(self.registry.eventgrid[name], event, request)
        except Exception as exc:
            log.warning("eventgrid %s (manual run) failed: %s: %s", name, type(exc).__name__, exc)

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)


def build_app(registry: FunctionRegistry, durable: DurableApi, pool: ThreadPoolExecutor,
              timers: TimerScheduler | None = None) -> web.Application:
    functions = HttpFunctions(registry, durable, pool)
    eventgrid = EventGridDelivery(registry, lambda req: durable.client_binding(DurableApi.origin(req)),
                                  functions.run_sync)
    admin = AdminRun(registry, durable, timers, eventgrid)

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
    app.router.add_post("/admin/functions/{name}", admin.run)

    async def stop_admin(_: web.Application) -> None:
        await admin.stop()

    app.on_shutdown.append(stop_admin)
    app.router.add_route("*", "/api/{tail:.*}", functions.handle)
    return app
