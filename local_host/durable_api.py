"""The Durable HTTP management API and the durable client binding (research sections 3 and 4).

Served twice: under the binding's `rpcBaseUrl`, what the SDK client calls, on a listener of its
own (127.0.0.1, a port of its own, a per-process secret as the first path segment: like the
extension's in-worker listener, nothing outside this process can call it), and under
`/runtime/webhooks/durabletask/` on the public listener (the URLs in `statusQueryGetUri` etc.,
which carry the `durabletask_extension` system key, as on Azure).
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any
from urllib.parse import quote

from aiohttp import web

from .durable import history as h
from .durable.scheduler import TERMINAL, DurableEngine, EngineError
from .durable.store import Instance
from .keys import HostKeys

RPC_PREFIX = "/durabletask"
PUBLIC_PREFIX = "/runtime/webhooks/durabletask"
RUNNING_LIKE = frozenset({"Running", "Pending", "ContinuedAsNew", "Suspended"})


def _flag(request: web.Request, name: str, default: bool = False) -> bool:
    value = request.query.get(name)
    if value is None:
        return default
    return value.strip().lower() == "true"  # the Python client sends `True` (research 3.2)


def _azure_time(stamp: str) -> str:
    return stamp[:19] + "Z"


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _body_to_input(raw: bytes) -> str | None:
    """The SDK double-encodes (a JSON string holding JSON text); raw callers send plain JSON."""
    if not raw.strip():
        return None
    parsed = json.loads(raw)
    if isinstance(parsed, str):
        try:
            json.loads(parsed)
            return parsed
        except json.JSONDecodeError:
            return json.dumps(parsed)
    return json.dumps(parsed)


def rpc_prefix(secret: str) -> str:
    """The RPC routes' prefix on their own listener: the secret first, then `/durabletask`."""
    return f"/{secret}{RPC_PREFIX}"


class DurableApi:
    def __init__(self, engine: DurableEngine, task_hub: str, keys: HostKeys) -> None:
        self.engine = engine
        self.task_hub = task_hub
        self.keys = keys
        self.rpc_base_url = ""  # set once the RPC listener has its port

    # -- binding ---------------------------------------------------------------------------------

    def management_urls(self, origin: str, instance_id: str) -> dict[str, str]:
        base = f"{origin}{PUBLIC_PREFIX}/instances/{instance_id}"
        tail = f"taskHub={self.task_hub}&connection=Storage&code={self.keys.durable}"
        return {
            "id": instance_id,
            "statusQueryGetUri": f"{base}?{tail}",
            "sendEventPostUri": f"{base}/raiseEvent/{{eventName}}?{tail}",
            "terminatePostUri": f"{base}/terminate?reason={{text}}&{tail}",
            "rewindPostUri": f"{base}/rewind?reason={{text}}&{tail}",
            "purgeHistoryDeleteUri": f"{base}?{tail}",
            "restartPostUri": f"{base}/restart?{tail}",
            "suspendPostUri": f"{base}/suspend?reason={{text}}&{tail}",
            "resumePostUri": f"{base}/resume?reason={{text}}&{tail}",
        }

    def client_binding(self, origin: str) -> str:
        """The JSON the extension injects into `durableClient` parameters (research 3.1)."""
        create = f"{origin}{PUBLIC_PREFIX}/orchestrators/{{functionName}}[/{{instanceId}}]"
        code = self.keys.durable
        return json.dumps({
            "taskHubName": self.task_hub,
            "connectionName": "Storage",
            "creationUrls": {
                "createNewInstancePostUri": f"{create}?code={code}",
                "createAndWaitOnNewInstancePostUri":
                    f"{create}?timeout={{timeoutInSeconds}}&pollingInterval={{intervalInSeconds}}&code={code}",
            },
            "managementUrls": self.management_urls(origin, "INSTANCEID"),
            "baseUrl": f"{origin}{PUBLIC_PREFIX}",
            "requiredQueryStringParameters": f"code={code}",
            "rpcBaseUrl": self.rpc_base_url,
            "httpBaseUrl": None,
            "maxGrpcMessageSizeInBytes": None,
        })

    # -- routing ---------------------------------------------------------------------------------

    def add_routes(self, app: web.Application, prefix: str) -> None:
        r = app.router
        r.add_post(prefix + "/orchestrators/{function}", self.start)
        r.add_post(prefix + "/orchestrators/{function}/{instance}", self.start)
        r.add_get(prefix + "/instances", self.list_instances)
        r.add_get(prefix + "/instances/", self.list_instances)
        r.add_delete(prefix + "/instances", self.purge_by_filter)
        r.add_delete(prefix + "/instances/", self.purge_by_filter)
        r.add_get(prefix + "/instances/{instance}", self.status)
        r.add_delete(prefix + "/instances/{instance}", self.purge)
        r.add_post(prefix + "/instances/{instance}/raiseEvent/{event}", self.raise_event)
        r.add_post(prefix + "/instances/{instance}/{operation}", self.operation)
        r.add_get(prefix + "/entities/{name}", self.list_entities)
        r.add_get(prefix + "/entities/{name}/{key}", self.entity_state)
        r.add_post(prefix + "/entities/{name}/{key}", self.entity_signal)
        r.add_delete(prefix + "/entities/{name}/{key}", self.entity_delete)

    @staticmethod
    def origin(request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    # -- orchestration instances -----------------------------------------------------------------

    async def start(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["function"]
        try:
            input_text = _body_to_input(await request.read())
        except json.JSONDecodeError as exc:
            return web.json_response({"Message": f"Invalid JSON in the request body: {exc}"}, status=400)
        try:
            iid = self.engine.start_orchestration(name, request.match_info.get("instance"), input_text)
        except EngineError as exc:
            return web.json_response({"Message": "One or more of the arguments submitted is incorrect",
                                      "ExceptionMessage": str(exc)}, status=400)
        if "timeout" in request.query:
            try:
                timeout = float(request.query["timeout"])
                interval = float(request.query.get("pollingInterval", "1"))
            except ValueError:
                return web.json_response({"Message": "timeout and pollingInterval must be numbers"}, status=400)
            deadline = asyncio.get_running_loop().time() + timeout
            while asyncio.get_running_loop().time() < deadline:
                inst = self.engine.store.get_instance(iid)
                if inst is not None and inst.status in TERMINAL:
                    if inst.status == "Completed":
                        return web.json_response(_loads(inst.output))
                    return web.json_response(self._status_json(inst, show_input=True), status=200)
                await asyncio.sleep(min(interval, 0.1))
        return self.check_status_response(self.origin(request), iid)

    def check_status_response(self, origin: str, iid: str) -> web.Response:
        urls = self.management_urls(origin, iid)
        return web.json_response(urls, status=202, headers={"Location": urls["statusQueryGetUri"],
                                                            "Retry-After": "10"})

    def _status_json(self, inst: Instance, *, show_input: bool, show_history: bool = False,
                     show_history_output: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": inst.name, "instanceId": inst.instance_id, "runtimeStatus": inst.status,
            "input": inst.input if show_input else None,
            "customStatus": _loads(inst.custom_status), "output": _loads(inst.output),
            "createdTime": _azure_time(inst.created_time), "lastUpdatedTime": _azure_time(inst.last_updated_time),
        }
        if show_history:
            names = {int(k): v for k, v in inst.state.get("names", {}).items()}
            body["historyEvents"] = [
                h.friendly_event(e, names, show_history_output) for e in self.engine.history(inst.instance_id)
                if e["EventType"] not in (h.ORCHESTRATOR_STARTED, h.ORCHESTRATOR_COMPLETED, h.TASK_SCHEDULED,
                                          h.TIMER_CREATED, h.SUB_ORCHESTRATION_CREATED, h.EVENT_SENT)]
        return body

    async def status(self, request: web.Request) -> web.StreamResponse:
        inst = self.engine.store.get_instance(request.match_info["instance"])
        if inst is None:
            return web.Response(status=404)
        body = self._status_json(inst, show_input=_flag(request, "showInput", True),
                                 show_history=_flag(request, "showHistory"),
                                 show_history_output=_flag(request, "showHistoryOutput"))
        if inst.status in RUNNING_LIKE:
            return web.json_response(body, status=202, headers={"Location": str(request.url), "Retry-After": "5"})
        if inst.status == "Failed" and _flag(request, "returnInternalServerErrorOnFailure"):
            return web.json_response(body, status=500)
        return web.json_response(body, status=200)

    def _filtered(self, request: web.Request) -> list[Instance]:
        statuses = [s.strip() for s in request.query.get("runtimeStatus", "").split(",") if s.strip()]
        return self.engine.store.list_instances(
            created_from=_normalise_time(request.query.get("createdTimeFrom")),
            created_to=_normalise_time(request.query.get("createdTimeTo")),
            statuses=statuses or None, prefix=request.query.get("instanceIdPrefix"))

    async def list_instances(self, request: web.Request) -> web.StreamResponse:
        try:
            found = self._filtered(request)
        except ValueError as exc:
            return web.json_response({"Message": str(exc)}, status=400)
        try:
            start = int(request.headers.get("x-ms-continuation-token") or 0)
            top = int(request.query.get("top") or 0)
        except ValueError:
            return web.json_response({"Message": "top and x-ms-continuation-token must be integers"}, status=400)
        page = found[start:start + top] if top > 0 else found[start:]
        headers = {}
        if top > 0 and start + top < len(found):
            headers["x-ms-continuation-token"] = str(start + top)
        show_input = _flag(request, "showInput", False)
        return web.json_response([self._status_json(i, show_input=show_input) for i in page], headers=headers)

    async def purge(self, request: web.Request) -> web.StreamResponse:
        if not self.engine.purge(request.match_info["instance"]):
            return web.Response(status=404)
        return web.json_response({"instancesDeleted": 1})

    async def purge_by_filter(self, request: web.Request) -> web.StreamResponse:
        if not request.query.get("createdTimeFrom"):
            return web.json_response({"Message": "createdTimeFrom is required"}, status=400)
        try:
            found = self._filtered(request)
        except ValueError as exc:
            return web.json_response({"Message": str(exc)}, status=400)
        deleted = sum(1 for i in found if self.engine.purge(i.instance_id))
        if deleted == 0:
            return web.Response(status=404)
        return web.json_response({"instancesDeleted": deleted})

    async def raise_event(self, request: web.Request) -> web.StreamResponse:
        iid = request.match_info["instance"]
        inst = self.engine.store.get_instance(iid)
        if inst is None:
            return web.json_response({"Message": f"No instance with ID '{iid}' found."}, status=404)
        if inst.status in TERMINAL:
            return web.json_response({"Message": f"The instance '{iid}' is {inst.status} and cannot receive "
                                                 "events."}, status=410)
        if request.content_type != "application/json":
            return web.json_response({"Message": "Only application/json request content is supported"},
                                     status=400)
        try:
            input_text = _body_to_input(await request.read()) or "null"
        except json.JSONDecodeError as exc:
            return web.json_response({"Message": f"Invalid JSON in the request body: {exc}"}, status=400)
        self.engine.raise_event(iid, request.match_info["event"], input_text)
        return web.Response(status=202)

    async def operation(self, request: web.Request) -> web.StreamResponse:
        iid = request.match_info["instance"]
        op = request.match_info["operation"].lower()
        inst = self.engine.store.get_instance(iid)
        if op not in ("terminate", "suspend", "resume", "restart", "rewind"):
            return web.Response(status=404)
        if inst is None:
            return web.json_response({"Message": f"No instance with ID '{iid}' found."}, status=404)
        reason = request.query.get("reason")
        if op == "restart":
            new_id = None if _flag(request, "restartWithNewInstanceId", True) else iid
            try:
                started = self.engine.start_orchestration(inst.name, new_id, inst.input)
            except EngineError as exc:
                return web.json_response({"Message": str(exc)}, status=410)
            return self.check_status_response(self.origin(request), started)
        if op == "rewind":
            if inst.status in ("Completed", "Terminated", "Canceled"):
                return web.json_response({"Message": f"The instance '{iid}' is {inst.status}."}, status=410)
            return web.json_response({"Message": "Rewind is not supported by the local host; restart the "
                                                 "instance instead."}, status=501)
        if inst.status in TERMINAL:
            return web.json_response({"Message": f"The instance '{iid}' is already {inst.status}."}, status=410)
        if op == "terminate":
            self.engine.terminate(iid, reason)
        elif op == "suspend":
            self.engine.suspend(iid)
        else:
            self.engine.resume(iid)
        return web.Response(status=202)

    # -- entities --------------------------------------------------------------------------------

    async def entity_state(self, request: web.Request) -> web.StreamResponse:
        entity_id = f"@{request.match_info['name'].lower()}@{request.match_info['key']}"
        found = self.engine.store.get_entity(entity_id)
        if found is None:
            return web.Response(status=404)
        return web.json_response(_loads(found[0]))

    async def list_entities(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"].lower()
        rows = self.engine.store.list_entities(name)
        return web.json_response([{"entityId": {"name": name, "key": key}, "lastOperationTime": _azure_time(when),
                                   "state": _loads(state)} for key, state, when in rows])

    async def entity_signal(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"].lower()
        if name not in self.engine.registry.entities:
            return web.json_response({"Message": f"No entity function named '{name}' was found."}, status=404)
        op = request.query.get("op")
        if not op:
            return web.json_response({"Message": "The op query parameter is required."}, status=400)
        try:
            input_text = _body_to_input(await request.read())
        except json.JSONDecodeError as exc:
            return web.json_response({"Message": f"Invalid JSON in the request body: {exc}"}, status=400)
        self.engine.signal_entity(f"@{name}@{request.match_info['key']}", op, input_text)
        return web.Response(status=202)

    async def entity_delete(self, request: web.Request) -> web.StreamResponse:
        entity_id = f"@{request.match_info['name'].lower()}@{request.match_info['key']}"
        if self.engine.store.get_entity(entity_id) is None:
            return web.Response(status=404)
        self.engine.store.delete_entity(entity_id)
        return web.Response(status=202)


def _normalise_time(value: str | None) -> str | None:
    """Accept ISO times from the client (`...000000Z`) and compare them in the store's format."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"invalid time {quote(value)!s}: expected ISO 8601") from exc
    return h.fmt_ts(moment)
