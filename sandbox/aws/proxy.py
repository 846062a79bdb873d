"""The AWS endpoint boto3 talks to: an aiohttp reverse proxy in front of moto's server.

Every call passes the shared sandbox middleware (request log with cloud "aws", injected
429/503 in the calling service's own error shape). Calls signed for a service we emulate
ourselves (IoT TwinMaker, Managed Grafana; moto has no backend for them) are answered here;
everything else is forwarded unchanged to moto, Host header included, so the URLs moto puts
in its answers (S3 locations, queue URLs) point back at the proxy.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from sandbox.aws.execution import Execution
from sandbox.aws.grafana import urls as grafana_urls
from sandbox.aws.grafana.models import GrafanaBackends
from sandbox.aws.grafana.responses import GrafanaResponse
from sandbox.aws.iot_tags import TAG_OPERATIONS, IotTags
from sandbox.aws.lifecycle import Lifecycle
from sandbox.aws.operations import request_labels
from sandbox.aws.protocol import describe_request, error_response, fault_response
from sandbox.aws.routing import RouteTable
from sandbox.aws.twinmaker import urls as twinmaker_urls
from sandbox.aws.twinmaker.models import TwinMakerBackends
from sandbox.aws.twinmaker.responses import TwinMakerResponse
from sandbox.core.context import SandboxContext
from sandbox.core.http import (
    FAULT_EXEMPT_PREDICATE_KEY,
    REQUEST_CLASSIFIER_KEY,
    label_request,
    sandbox_middleware,
)

log = logging.getLogger("sandbox.aws")

# Hop-by-hop headers (RFC 9110 7.6.1): they describe one connection, not the message.
_HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
    )
)

MOTO_URL_KEY: web.AppKey[str] = web.AppKey("aws_moto_url", str)
SESSION_KEY: web.AppKey[aiohttp.ClientSession] = web.AppKey("aws_moto_session", aiohttp.ClientSession)


def create_app(
    ctx: SandboxContext,
    moto_url: str,
    twinmaker: TwinMakerBackends,
    grafana: GrafanaBackends,
    lifecycle: Lifecycle,
    execution: Execution | None = None,
    iot_tags: IotTags | None = None,
) -> web.Application:
    """The proxy application; `moto_url` like `http://127.0.0.1:PORT` (moto's own server).
    With `execution`, Lambda invokes, function URLs and IoT rules run the deployed code; with
    `iot_tags`, IoT rules and policies take tags (moto's IoT has none)."""
    own = {
        twinmaker_urls.SIGNING_NAME: RouteTable(
            twinmaker_urls.url_paths, TwinMakerResponse(twinmaker), twinmaker_urls.SERVICE_NAME
        ),
        grafana_urls.SIGNING_NAME: RouteTable(grafana_urls.url_paths, GrafanaResponse(grafana), grafana_urls.SERVICE_NAME),
    }
    # Bodies up to 256 MB: Lambda zips and S3 objects pass through whole.
    app = web.Application(
        middlewares=[sandbox_middleware(ctx, "aws", fault_responder=fault_response)],
        client_max_size=256 * 1024 * 1024,
    )
    app[MOTO_URL_KEY] = moto_url.rstrip("/")
    # moto's own API (reset, config, canned Lambda results) is test instrumentation, not AWS
    # traffic: never refuse it.
    app[FAULT_EXEMPT_PREDICATE_KEY] = _is_moto_api
    # The request log names each call's operation; from the path and headers here (also for
    # calls refused by an injected fault), refined below once the body has been read.
    app[REQUEST_CLASSIFIER_KEY] = request_labels

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        app[SESSION_KEY] = passthrough_session()
        yield
        await app[SESSION_KEY].close()

    app.cleanup_ctx.append(session_ctx)
    if execution is not None:

        async def start_schedules(app: web.Application) -> None:
            execution.schedules.start()

        async def close_runner(app: web.Application) -> None:
            await execution.schedules.stop()
            await execution.runner.close()  # no worker process outlives the proxy

        app.on_startup.append(start_schedules)
        app.on_cleanup.append(close_runner)

    # AWS gives each account one IoT data endpoint per region and type; moto invents a new one per
    # call, which would make every reconcile see a "changed" IOT_ENDPOINT. Keep the first answer.
    iot_endpoints: dict[tuple[str, str], bytes] = {}

    async def handle(request: web.Request) -> web.StreamResponse:
        info = describe_request(request)
        table = own.get(info.service)
        try:
            if table is not None:
                return await table.dispatch(request, info)
            if execution is not None and execution.is_function_url(request):
                return await execution.function_url(request)
            body = await request.read()
            operation, mutating = request_labels(request, body)
            label_request(request, operation, mutating)
            refused = lifecycle.refuse(request, info, body)
            if refused is not None:
                return refused
            iot_operation = (operation or "").partition(":")[2] if info.service == "iot" else ""
            if iot_tags is not None and iot_operation in TAG_OPERATIONS:
                return iot_tags.answer(request, info, iot_operation, body)
            if execution is not None and info.service == "lambda":
                ran = await execution.invoke(request, info, body)
                if ran is not None:
                    return ran
            response = await _forward(request)
            if operation == "iot:DescribeEndpoint" and response.status == 200 and response.body is not None:
                key = (info.region, request.query.get("endpointType", ""))
                first = iot_endpoints.setdefault(key, bytes(response.body))  # type: ignore[arg-type]
                response = web.Response(body=first, status=200, content_type="application/json")
            lifecycle.observe(request, info, body, response)
            if iot_tags is not None and iot_operation:
                iot_tags.observe(request, info, iot_operation, body, response.status)
            if execution is not None:
                if info.service == "lambda":
                    execution.rewrite_url_config(request, response)
                elif execution.is_publish(request, info) and response.status < 300:
                    execution.after_publish(request, info, body)
            return response
        except Exception as exc:
            log.exception("AWS sandbox failed on %s %s", request.method, request.path)
            return error_response(info, 500, "InternalFailure", f"the AWS sandbox failed: {type(exc).__name__}")

    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def _is_moto_api(request: web.Request) -> bool:
    return request.path.startswith("/moto-api/")


async def _forward(request: web.Request) -> web.Response:
    return await forward(request, request.app[SESSION_KEY], request.app[MOTO_URL_KEY])


async def forward(request: web.Request, session: aiohttp.ClientSession, base_url: str) -> web.Response:
    """Send `request` to `base_url` + its raw path and query, bytes and headers unchanged
    (Host included), and answer with the upstream's status, headers and body."""
    target = URL(base_url + request.raw_path, encoded=True)
    headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP)
    body = await request.read()
    async with session.request(
        request.method,
        target,
        headers=headers,
        data=body if body else None,
        allow_redirects=False,
        skip_auto_headers=("Content-Type", "Accept-Encoding", "User-Agent", "Accept"),
    ) as upstream:
        payload = await upstream.read()
        out = CIMultiDict(
            (k, v)
            for k, v in upstream.headers.items()
            if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"
        )
        if request.method == "HEAD" or upstream.status in (204, 304):
            # No body, but HEAD keeps the length of what it describes (S3 head_object, blob properties).
            if request.method == "HEAD" and "Content-Length" in upstream.headers:
                out["Content-Length"] = upstream.headers["Content-Length"]
            return web.Response(status=upstream.status, headers=out)
        return web.Response(status=upstream.status, body=payload, headers=out)


def passthrough_session() -> aiohttp.ClientSession:
    """A client session that passes bytes and headers through as they are."""
    return aiohttp.ClientSession(
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=120),
    )


class ThreadedAppServer:
    """Serve an aiohttp application on 127.0.0.1 (free port) from its own thread and event loop,
    so synchronous callers (`AwsSandbox.start()`, `Azurite.start()`) can own it."""

    def __init__(self, app: web.Application, name: str) -> None:
        self._app = app
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    def start(self, timeout: float = 30.0) -> int:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name=self._name, daemon=True)
        self._thread.start()

        async def serve() -> int:
            runner = web.AppRunner(self._app, access_log=None)
            await runner.setup()
            self._runner = runner
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            return int(runner.addresses[0][1])

        self.port = asyncio.run_coroutine_threadsafe(serve(), loop).result(timeout)
        return self.port

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        """Run `coro` on the server's loop (objects bound to that loop, e.g. Lambda workers)."""
        if self._loop is None:
            coro.close()
            raise RuntimeError(f"{self._name} is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        loop, thread, runner = self._loop, self._thread, self._runner
        self._loop = self._thread = self._runner = None
        if loop is None or thread is None:
            return
        if runner is not None:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        loop.close()
