"""The aiohttp applications: the public listener and the Durable client's RPC listener.

Public listener (127.0.0.1, the host's port):
- `/api/<route>`: the app's HTTP functions (route templates, methods, auth levels);
- `/runtime/webhooks/durabletask/...`: the Durable HTTP API (master key or the
  `durabletask_extension` system key); `/runtime/webhooks/eventgrid` (master key or
  `eventgrid_extension`);
- `/admin/host/status` and `POST /admin/functions/{name}` (master key): readiness, and running a
  non-HTTP function now as on Azure: body `{"input": "..."}`; a timer runs as a tick, an Event
  Grid function gets the input parsed as one event; answers 202 before the run.
Requests from a browser (an `Origin` header) or addressed to a name other than a loopback one
(DNS rebinding) are refused with 403. Errors the host itself answers (401, 403, 404, 405 with
`Allow`, 413) have the API's shape `{"errors": [{"path", "message"}]}`.

RPC listener (127.0.0.1, a port of its own): `/{secret}/durabletask/...`, the binding's
`rpcBaseUrl`; only code in this process knows the secret (see `durable_api.py`).
"""

from __future__ import annotations

import asyncio
import functools
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
from .durable_api import PUBLIC_PREFIX, DurableApi, rpc_prefix
from .eventgrid import EventGridDelivery, _schema_problem
from .keys import HostKeys, Scope, request_key
from .timers import TimerScheduler

log = logging.getLogger("local_host")

MAX_REQUEST_BYTES = 100 * 1024 * 1024  # the Functions host's default request size limit
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"errors": [{"path": "", "message": message}]}, status=status, headers=headers)


def for_log(text: str, limit: int = 300) -> str:
    """Request-supplied text for a log line: control characters (CR, LF, ESC ...) escaped, so a
    path such as `/api/x%0D%0Aforged line` cannot start a line of its own or colour a terminal."""
    escaped = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text[:limit])
    return escaped + ("..." if len(text) > limit else "")


class EscapeArguments(logging.Filter):
    """Escapes control characters in the arguments of the host's log records (never in the
    format strings, which are ours)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(for_log(a, 2000) if isinstance(a, str) else a for a in record.args)
        return True


_ESCAPE = EscapeArguments()
if _ESCAPE not in log.filters:
    log.addFilter(_ESCAPE)


class HttpFunctions:
    def __init__(self, registry: FunctionRegistry, durable: DurableApi, pool: ThreadPoolExecutor) -> None:
        self.registry = registry
        self.durable = durable
        self.pool = pool

    @property
    def keys(self) -> HostKeys:
        return self.durable.keys

    async def run_sync(self, fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, functools.partial(fn, **kwargs))

    def _find(self, path: str, method: str) -> tuple[HttpRoute | None, dict[str, str], list[str]]:
        """(route, its parameters, []) or (None, {}, the methods the path allows)."""
        allowed: list[str] = []
        for route in self.registry.http_routes:
            params = route.match(path)
            if params is None:
                continue
            if route.methods and method not in route.methods:
                allowed += [m for m in route.methods if m not in allowed]
                continue
            return route, params, []
        return None, {}, allowed

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        route, params, allowed = self._find(path.rstrip("/") or "/", request.method)
        if route is None:
            if allowed:
                return error_response(405, f"{request.method} is not allowed here; allowed: {', '.join(allowed)}",
                                      headers={"Allow": ", ".join(allowed)})
            return error_response(404, "no function of this app serves this route")
        if route.auth_level != "ANONYMOUS":
            scope = Scope.ADMIN if route.auth_level == "ADMIN" else Scope.FUNCTION
            if not self.keys.allows(request_key(request.headers, request.query), scope):
                what = "the master key" if scope is Scope.ADMIN else "a function key"
                return error_response(401, f"{what} is required (x-functions-key header or code query parameter)")
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


def _scope(path: str) -> Scope | None:
    """The key a host path needs (None: the route decides, as /api does, or it needs none)."""
    if path.startswith(PUBLIC_PREFIX + "/") or path == PUBLIC_PREFIX:
        return Scope.DURABLE
    if path.startswith("/runtime/webhooks/eventgrid"):
        return Scope.EVENTGRID
    if path.startswith("/runtime/") or path.startswith("/admin/"):
        return Scope.ADMIN
    return None


@web.middleware
async def host_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors aiohttp raises itself (unknown path, method, body over the limit) in the API's shape."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        if exc.status == 413:
            message = f"the request body is larger than the host's limit of {MAX_REQUEST_BYTES:,} bytes"
        elif exc.status == 404:
            message = "no route of this host serves this path"
        elif exc.status == 405:
            message = f"{request.method} is not allowed here; allowed: {exc.headers.get('Allow', '')}"
        else:
            message = exc.reason
        return error_response(exc.status, message, headers)


@web.middleware
async def refuse_browsers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A web page the developer visits can send requests to 127.0.0.1: refuse what a browser
    marks as such (Origin), and names other than loopback ones (a DNS-rebound page's)."""
    if "Origin" in request.headers:
        return error_response(403, "requests from a browser page (with an Origin header) are refused")
    host = (request.host or "").lower()
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if name not in LOOPBACK_HOSTS:
        return error_response(403, "the Host header must name this machine (127.0.0.1 or localhost)")
    return await handler(request)


def build_app(registry: FunctionRegistry, durable: DurableApi, pool: ThreadPoolExecutor,
              timers: TimerScheduler | None = None) -> web.Application:
    """The public listener's application."""
    functions = HttpFunctions(registry, durable, pool)
    eventgrid = EventGridDelivery(registry, lambda req: durable.client_binding(DurableApi.origin(req)),
                                  functions.run_sync)
    admin = AdminRun(registry, durable, timers, eventgrid)

    @web.middleware
    async def host_keys(request: web.Request, handler: Handler) -> web.StreamResponse:
        scope = _scope(request.path)
        if scope is not None and not durable.keys.allows(request_key(request.headers, request.query), scope):
            needed = {Scope.DURABLE: "the master key or the durabletask_extension system key",
                      Scope.EVENTGRID: "the master key or the eventgrid_extension system key"}.get(scope, "the master key")
            return error_response(401, f"{needed} is required (x-functions-key header or code query parameter)")
        return await handler(request)

    async def host_status(_: web.Request) -> web.StreamResponse:
        return web.json_response({"state": "Running", "functions": len(registry.summary())})

    app = web.Application(middlewares=[host_errors, refuse_browsers, host_keys], client_max_size=MAX_REQUEST_BYTES)
    durable.add_routes(app, PUBLIC_PREFIX)
    app.router.add_post("/runtime/webhooks/eventgrid", eventgrid.deliver)
    app.router.add_route("OPTIONS", "/runtime/webhooks/eventgrid", eventgrid.options)
    app.router.add_get("/admin/host/status", host_status)
    app.router.add_post("/admin/functions/{name}", admin.run)

    async def stop_admin(_: web.Application) -> None:
        await admin.stop()

    app.on_shutdown.append(stop_admin)
    app.router.add_route("*", r"/api/{tail:[\s\S]*}", functions.handle)  # any path, CR and LF too
    return app


def build_rpc_app(durable: DurableApi, secret: str) -> web.Application:
    """The RPC listener's application: the Durable API under the secret prefix, nothing else."""
    app = web.Application(middlewares=[host_errors, refuse_browsers], client_max_size=MAX_REQUEST_BYTES)
    durable.add_routes(app, rpc_prefix(secret))
    return app
