"""Event Grid trigger delivery: `POST /runtime/webhooks/eventgrid?functionName=NAME`.

Like the Functions host: Event Grid schema arrives as an array, CloudEvents 1.0 as one event or a
batch; the function runs once per event with the object the worker's converter builds
(`func.EventGridEvent`, or `func.CloudEvent` when the event carries `specversion`). The
subscription validation handshakes of both schemas are answered.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter

from .app_loader import FunctionRegistry, Invocable, build_kwargs

log = logging.getLogger("local_host")

VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"

RunSync = Callable[[Callable[..., Any], dict[str, Any]], Awaitable[Any]]


class EventGridDelivery:
    def __init__(self, registry: FunctionRegistry, client_binding: Callable[[web.Request], str],
                 run_sync: RunSync) -> None:
        self.registry = registry
        self.client_binding = client_binding
        self.run_sync = run_sync

    async def options(self, request: web.Request) -> web.StreamResponse:
        """CloudEvents abuse-protection handshake (webhook validation)."""
        origin = request.headers.get("WebHook-Request-Origin", "*")
        return web.Response(status=200, headers={"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*"})

    async def deliver(self, request: web.Request) -> web.StreamResponse:
        name = request.query.get("functionName", "")
        target = self.registry.eventgrid.get(name)
        if target is None:
            known = ", ".join(sorted(self.registry.eventgrid)) or "(none)"
            return web.json_response({"Message": f"functionName '{name}' is not an Event Grid triggered "
                                                 f"function of this app; known: {known}"}, status=404)
        try:
            body = json.loads(await request.read())
        except json.JSONDecodeError as exc:
            return web.json_response({"Message": f"request body is not JSON: {exc}"}, status=400)
        events = body if isinstance(body, list) else [body]
        if not all(isinstance(e, dict) for e in events):
            return web.json_response({"Message": "each event must be a JSON object"}, status=400)
        if request.headers.get("aeg-event-type", "").lower() == "subscriptionvalidation" or any(
                e.get("eventType") == VALIDATION_EVENT for e in events):
            code = next((e.get("data", {}).get("validationCode") for e in events
                         if isinstance(e.get("data"), dict)), None)
            return web.json_response({"validationResponse": code})
        for index, evt in enumerate(events):
            problem = _schema_problem(evt)
            if problem:
                return web.json_response({"Message": f"$[{index}]: {problem}"}, status=400)
        for evt in events:
            try:
                await self._invoke(target, evt, request)
            except Exception as exc:
                log.warning("eventgrid function %s failed: %s: %s", name, type(exc).__name__, exc)
                return web.json_response({"Message": f"function {name} failed: {type(exc).__name__}: {exc}"},
                                         status=500)
        return web.Response(status=200)

    async def _invoke(self, target: Invocable, evt: dict[str, Any], request: web.Request) -> None:
        value = EventGridEventInConverter.decode(meta.Datum(type="json", value=json.dumps(evt)),
                                                 trigger_metadata=None)
        given: dict[str, Any] = {target.trigger_param: value}
        if target.client_param:
            given[target.client_param] = self.client_binding(request)
        kwargs = build_kwargs(target.fn, target.function_name, self.registry.app_dir, given)
        started = time.perf_counter()
        if inspect.iscoroutinefunction(target.fn):
            await target.fn(**kwargs)
        else:
            await self.run_sync(target.fn, kwargs)
        log.info("eventgrid %s event=%s duration_ms=%.1f", target.function_name, evt.get("id"),
                 (time.perf_counter() - started) * 1000)


def _schema_problem(evt: dict[str, Any]) -> str | None:
    if "specversion" in evt:
        missing = [k for k in ("id", "source", "type") if not evt.get(k)]
        return f"CloudEvent is missing {', '.join(missing)}" if missing else None
    missing = [k for k in ("id", "eventType", "subject", "eventTime") if not evt.get(k)]
    return f"Event Grid event is missing {', '.join(missing)}" if missing else None
