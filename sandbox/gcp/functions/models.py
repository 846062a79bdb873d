"""Cloud Functions v2 state: functions, their long-running deploys, revisions and front doors.

A create or update answers an operation at once; the deploy runs on the GCP loop: after the
profile's provisioning delay it reads the uploaded source from Cloud Storage, starts the revision
under functions-framework (`sandbox.runtime.gcp_functions`), and for a Pub/Sub `eventTrigger` makes
the Eventarc trigger's subscription. Then the function is ACTIVE with `serviceConfig.uri`: its front
door, one stable `http://127.0.0.1:PORT` per function (Cloud Run's `*.run.app` URL), which applies
`roles/run.invoker` on the Cloud Run service (or the project) to the caller's ID token and forwards
to the serving revision. A deploy that fails leaves the function FAILED with the reason in
`stateMessages` and the operation's error, as Google Cloud does; an update deploys it again.
The `flaky` profile fails a share of deploys once (INTERNAL), `realistic` takes a scaled minute.
Each function's revisions also get a metadata server (`metadata.py`) that issues ID tokens for its
runtime service account, so deployed code calls private functions as it does on Google Cloud.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from sandbox.gcp.common import (
    DEFAULT_COMPUTE_SA,
    PROJECT_ID,
    GoogleError,
    now_rfc3339,
    token_email,
)
from sandbox.gcp.functions.metadata import MetadataServer
from sandbox.gcp.iam.models import INVOKER_ROLES
from sandbox.gcp.operations import Operation
from sandbox.gcp.pubsub.models import EventarcTarget
from sandbox.runtime.gcp_functions import GcpFunctionRunner, RevisionFailed, RevisionSpec

if TYPE_CHECKING:
    from sandbox.gcp.backends import GcpBackends

log = logging.getLogger("sandbox.gcp.functions")

FUNCTION_ID = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
PUBSUB_EVENT = "google.cloud.pubsub.topic.v1.messagePublished"
METADATA_TYPE = "type.googleapis.com/google.cloud.functions.v2.OperationMetadata"
FUNCTION_TYPE = "type.googleapis.com/google.cloud.functions.v2.Function"
EMPTY_TYPE = "type.googleapis.com/google.protobuf.Empty"
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                         "transfer-encoding", "upgrade", "host", "content-length"})


@dataclass
class FunctionRecord:
    body: dict[str, Any]  # canonical Function JSON, as answered
    revisions: itertools.count = field(default_factory=lambda: itertools.count(1))
    busy: Operation | None = None  # the operation in progress
    door: FrontDoor | None = None
    metadata: MetadataServer | None = None  # what its revisions ask for tokens
    subscription: str = ""  # the Eventarc trigger's subscription

    @property
    def name(self) -> str:
        return str(self.body["name"])

    @property
    def service(self) -> str:
        parent, _, fid = self.name.rpartition("/functions/")
        return f"{parent}/services/{fid}"

    def runtime_account(self) -> str:
        return str((self.body.get("serviceConfig") or {}).get("serviceAccountEmail") or DEFAULT_COMPUTE_SA)


class FrontDoor:
    """A function's stable URL: checks the invoker role, then forwards to the serving revision."""

    def __init__(self, backend: FunctionsBackend, function: str) -> None:
        self.backend = backend
        self.function = function
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        return self.url

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await self._handle(request)
            status = response.status
            return response
        finally:
            self.backend.b.ctx.request_log.record(
                "gcp", request.method, f"{self.url}{request.path_qs}", status,
                (time.perf_counter() - started) * 1000, operation="run:Invoke", mutating=False)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        record = self.backend.find(self.function)
        if record is None:
            return _google_page(404, "The requested URL was not found on this server.")
        email = token_email(request.headers.get("Authorization", ""))
        members = ["allUsers"]
        if email is not None:
            kind = "serviceAccount" if email.endswith(".gserviceaccount.com") else "user"
            members += ["allAuthenticatedUsers", f"{kind}:{email}"]
        if not self.backend.b.iam.allows([record.service, f"projects/{PROJECT_ID}"], members, INVOKER_ROLES):
            return _google_page(403, "Your client does not have permission to get URL "
                                     f"{request.path} from this server.")
        worker = await self.backend.serving_url(self.function)
        if worker is None:
            return _google_page(503, "Service Unavailable")
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP)
        body = await request.read()
        timeout = float((record.body.get("serviceConfig") or {}).get("timeoutSeconds") or 60)
        session = self.backend.session()
        try:
            async with session.request(request.method, worker + request.path_qs, headers=headers,
                                       data=body or None, allow_redirects=False,
                                       timeout=aiohttp.ClientTimeout(total=timeout)) as upstream:
                payload = await upstream.read()
                out = CIMultiDict((k, v) for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP)
                return web.Response(status=upstream.status, body=payload, headers=out)
        except TimeoutError:
            return _google_page(504, "upstream request timeout")
        except aiohttp.ClientError:
            return _google_page(503, "Service Unavailable")


def _google_page(status: int, text: str) -> web.Response:
    titles = {403: "Forbidden", 404: "Not Found", 503: "Service Unavailable", 504: "Gateway Timeout"}
    html = (f"<html><head><title>{status} {titles.get(status, 'Error')}</title></head><body>"
            f"<h1>Error: {titles.get(status, 'Error')}</h1><h2>{text}</h2></body></html>")
    return web.Response(status=status, text=html, content_type="text/html")


class FunctionsBackend:
    def __init__(self, b: GcpBackends, runner: GcpFunctionRunner,
                 read_source: Callable[[str, str], Awaitable[bytes]],
                 sandbox_env: Callable[[], dict[str, str]]) -> None:
        self.b = b
        self.runner = runner
        self.read_source = read_source
        self.sandbox_env = sandbox_env
        self._lock = threading.Lock()
        self._functions: dict[str, FunctionRecord] = {}
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    # --- queries ------------------------------------------------------------------------------------

    def find(self, name: str) -> FunctionRecord | None:
        with self._lock:
            return self._functions.get(name)

    def get(self, name: str) -> dict[str, Any]:
        record = self.find(name)
        if record is None:
            raise GoogleError("NOT_FOUND", f"Resource '{name}' was not found")
        return record.body

    def list_functions(self, parent: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r.body for n, r in sorted(self._functions.items())
                    if parent.endswith("/locations/-") and n.startswith(parent[: -len("locations/-")])
                    or n.startswith(parent + "/functions/")]

    def service_exists(self, service: str) -> bool:
        with self._lock:
            return any(r.service == service and (r.body.get("serviceConfig") or {}).get("service")
                       for r in self._functions.values())

    async def serving_url(self, name: str, wait: float = 60.0) -> str | None:
        """The serving revision's URL; waits while a first deploy or a restart is under way."""
        deadline = time.monotonic() + wait
        while True:
            url = self.runner.url(name)
            record = self.find(name)
            if url is not None or record is None or record.busy is None or time.monotonic() > deadline:
                return url
            await asyncio.sleep(0.05)

    def door_url(self, name: str) -> str | None:
        record = self.find(name)
        return record.door.url if record is not None and record.door is not None else None

    # --- changes ----------------------------------------------------------------------------------

    def create(self, parent: str, function_id: str, body: dict[str, Any]) -> Operation:
        _check_parent(parent)
        if not FUNCTION_ID.fullmatch(function_id or ""):
            raise GoogleError("INVALID_ARGUMENT", f"functionId: {function_id!r} must be 1-63 characters: lower case "
                              "letters, digits and hyphens, starting with a letter and not ending with a hyphen")
        name = f"{parent}/functions/{function_id}"
        self._check_body(body)
        op = self.b.operations.start(parent, METADATA_TYPE, _metadata(name, "create"), end_field="endTime")
        with self._lock:
            if name in self._functions:
                # Reported by the operation, as the API does (op.result() raises AlreadyExists).
                self.b.operations.fail(op, GoogleError("ALREADY_EXISTS", f"Function {function_id} in region "
                                                       f"{parent.rsplit('/', 1)[-1]} in project {PROJECT_ID} "
                                                       "already exists"))
                return op
            fn = {**body, "name": name, "environment": "GEN_2", "state": "DEPLOYING", "updateTime": now_rfc3339(),
                  "createTime": now_rfc3339()}
            fn.setdefault("buildConfig", {}).setdefault("entryPoint", function_id)
            record = FunctionRecord(fn, busy=op)
            self._functions[name] = record
        self._spawn(self._deploy(record, op))
        return op

    def update(self, name: str, merged: dict[str, Any]) -> Operation:
        record = self.find(name)
        if record is None:
            raise GoogleError("NOT_FOUND", f"Resource '{name}' was not found")
        self._check_body(merged)
        with self._lock:
            if record.busy is not None:
                raise GoogleError("ABORTED", f"An operation on function {name} is already in progress. Please try "
                                  "again later.")
            op = self.b.operations.start(name.rsplit("/functions/", 1)[0], METADATA_TYPE, _metadata(name, "update"),
                                         end_field="endTime")
            record.body = {**merged, "name": name, "state": "DEPLOYING", "updateTime": now_rfc3339()}
            record.busy = op
        self._spawn(self._deploy(record, op))
        return op

    def delete(self, name: str) -> Operation:
        record = self.find(name)
        if record is None:
            raise GoogleError("NOT_FOUND", f"Resource '{name}' was not found")
        with self._lock:
            if record.busy is not None:
                raise GoogleError("ABORTED", f"An operation on function {name} is already in progress. Please try "
                                  "again later.")
            op = self.b.operations.start(name.rsplit("/functions/", 1)[0], METADATA_TYPE, _metadata(name, "delete"),
                                         end_field="endTime")
            record.body = {**record.body, "state": "DELETING"}
            record.busy = op
        self._spawn(self._delete(record, op))
        return op

    def _check_body(self, body: dict[str, Any]) -> None:
        build = body.get("buildConfig") or {}
        runtime = str(build.get("runtime") or "")
        if not runtime:
            raise GoogleError("INVALID_ARGUMENT", "function.build_config.runtime: required")
        if not runtime.startswith("python3"):
            raise GoogleError("INVALID_ARGUMENT", f"function.build_config.runtime: the sandbox runs Python functions "
                              f"only (python3xx), got {runtime!r}")
        storage = (build.get("source") or {}).get("storageSource") or {}
        if not storage.get("bucket") or not storage.get("object"):
            raise GoogleError("INVALID_ARGUMENT", "function.build_config.source.storage_source: bucket and object "
                              "are required (from generateUploadUrl)")
        trigger = body.get("eventTrigger")
        if trigger is not None:
            if trigger.get("eventType") != PUBSUB_EVENT:
                raise GoogleError("INVALID_ARGUMENT", f"function.event_trigger.event_type: the sandbox delivers "
                                  f"{PUBSUB_EVENT} only, got {trigger.get('eventType')!r}")
            if not trigger.get("pubsubTopic"):
                raise GoogleError("INVALID_ARGUMENT", "function.event_trigger.pubsub_topic: required")

    def _spawn(self, coro: Awaitable[None]) -> None:
        assert self.b.loop is not None

        def start() -> None:
            task = asyncio.ensure_future(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self.b.loop.call_soon_threadsafe(start)

    async def _deploy(self, record: FunctionRecord, op: Operation) -> None:
        name = record.name
        try:
            await asyncio.sleep(self.b.ctx.faults.provisioning_seconds("gcp/cloudfunctions"))
            if self.b.ctx.faults.fail_once(f"gcp-function:{name}"):
                raise GoogleError("INTERNAL", "Build failed with status: INTERNAL_ERROR. A transient error occurred; "
                                  "please retry the deployment.")
            body = record.body
            build, service_config = body.get("buildConfig") or {}, dict(body.get("serviceConfig") or {})
            for email in {service_config.get("serviceAccountEmail"), (body.get("eventTrigger") or {}).get(
                    "serviceAccountEmail")} - {None, ""}:
                if not self.b.iam.account_exists(str(email)):
                    raise GoogleError("INVALID_ARGUMENT", f"Service account {email} does not exist.")
            trigger = body.get("eventTrigger")
            if trigger is not None:
                self.b.pubsub.get_topic(str(trigger["pubsubTopic"]))
            storage = build["source"]["storageSource"]
            try:
                source = await self.read_source(str(storage["bucket"]), str(storage["object"]))
            except KeyError as exc:
                raise GoogleError("INVALID_ARGUMENT", f"Build failed: the source object gs://{storage['bucket']}/"
                                  f"{storage['object']} does not exist") from exc
            fid = name.rsplit("/", 1)[-1]
            if record.metadata is None:
                record.metadata = MetadataServer(record.runtime_account)
                await record.metadata.start()
            revision = f"{fid}-{next(record.revisions):05d}-{secrets.token_hex(2)[:3]}"
            env = {str(k): str(v) for k, v in (service_config.get("environmentVariables") or {}).items()}
            spec = RevisionSpec(
                function=name, service=fid, revision=revision, source_zip=source,
                entry_point=str(build.get("entryPoint") or fid),
                signature_type="cloudevent" if trigger is not None else "http",
                environment=tuple(sorted(env.items())),
                timeout_seconds=int(service_config.get("timeoutSeconds") or 60),
                sandbox_env=tuple(sorted({**self.sandbox_env(), **record.metadata.environment()}.items())),
            )
            try:
                await self.runner.deploy(spec)
            except RevisionFailed as exc:
                raise GoogleError("FAILED_PRECONDITION", str(exc)) from exc
            if record.door is None:
                record.door = FrontDoor(self, name)
                await record.door.start()
            service_config.update({
                "service": record.service, "uri": record.door.url, "revision": revision,
                "timeoutSeconds": int(service_config.get("timeoutSeconds") or 60),
                "availableMemory": service_config.get("availableMemory") or "256M",
                "serviceAccountEmail": service_config.get("serviceAccountEmail") or DEFAULT_COMPUTE_SA,
                "ingressSettings": service_config.get("ingressSettings") or "ALLOW_ALL",
                "allTrafficOnLatestRevision": True,
            })
            done = {**body, "serviceConfig": service_config, "state": "ACTIVE", "url": record.door.url,
                    "updateTime": now_rfc3339()}
            done.pop("stateMessages", None)
            if trigger is not None:
                done["eventTrigger"] = self._ensure_trigger(record, trigger)
            elif record.subscription:
                self._drop_trigger(record)
            with self._lock:
                record.body = done
                record.busy = None
            self.b.operations.finish(op, FUNCTION_TYPE, done)
        except GoogleError as exc:
            self._failed(record, op, exc)
        except Exception as exc:  # a sandbox bug still ends the operation, never leaves it pending
            log.exception("Cloud Function %s: deploy failed", name)
            self._failed(record, op, GoogleError("INTERNAL", f"deploy failed in the sandbox: {type(exc).__name__}"))

    def _failed(self, record: FunctionRecord, op: Operation, error: GoogleError) -> None:
        with self._lock:
            record.body = {**record.body, "state": "FAILED", "updateTime": now_rfc3339(),
                           "stateMessages": [{"severity": "ERROR", "type": "DeploymentFailed",
                                              "message": error.message}]}
            record.busy = None
        self.b.operations.fail(op, error)

    def _ensure_trigger(self, record: FunctionRecord, trigger: dict[str, Any]) -> dict[str, Any]:
        """The Eventarc trigger: a push subscription on the topic delivering CloudEvents to the door."""
        fid = record.name.rsplit("/", 1)[-1]
        location = record.name.split("/")[3]
        trigger_name = trigger.get("trigger") or f"projects/{PROJECT_ID}/locations/{location}/triggers/{fid}-" \
                                                 f"{secrets.token_hex(3)}"
        retry = trigger.get("retryPolicy") == "RETRY_POLICY_RETRY"
        target = EventarcTarget(record.name, trigger_name, retry,
                                str(trigger.get("serviceAccountEmail") or DEFAULT_COMPUTE_SA),
                                lambda: self.door_url(record.name))
        topic = str(trigger["pubsubTopic"])
        current = self.b.pubsub.find_subscription(record.subscription) if record.subscription else None
        if current is not None and current.body.get("topic") == topic:
            current.eventarc = target  # same topic: the trigger's settings change in place
        else:
            if record.subscription:
                self._drop_trigger(record)
            sub_name = f"projects/{PROJECT_ID}/subscriptions/eventarc-{location}-{fid}-{secrets.token_hex(3)}-sub-" \
                       f"{secrets.randbelow(1000):03d}"
            self.b.pubsub.create_subscription(
                {"name": sub_name, "topic": topic, "ackDeadlineSeconds": 600,
                 "pushConfig": {"pushEndpoint": record.door.url if record.door else ""},
                 "retryPolicy": {"minimumBackoff": "10s", "maximumBackoff": "600s"}}, eventarc=target)
            record.subscription = sub_name
        return {**trigger, "trigger": trigger_name, "triggerRegion": trigger.get("triggerRegion") or location,
                "serviceAccountEmail": target.service_account,
                "retryPolicy": trigger.get("retryPolicy") or "RETRY_POLICY_DO_NOT_RETRY"}

    def _drop_trigger(self, record: FunctionRecord) -> None:
        if record.subscription:
            with contextlib.suppress(GoogleError):
                self.b.pubsub.delete_subscription(record.subscription)
            record.subscription = ""

    async def _delete(self, record: FunctionRecord, op: Operation) -> None:
        try:
            await asyncio.sleep(self.b.ctx.faults.provisioning_seconds("gcp/cloudfunctions") / 3)
            await self._teardown(record)
            self.b.operations.finish(op, EMPTY_TYPE, {})
        except Exception as exc:
            log.exception("Cloud Function %s: delete failed", record.name)
            with self._lock:
                record.busy = None
            self.b.operations.fail(op, GoogleError("INTERNAL", f"delete failed in the sandbox: {type(exc).__name__}"))

    async def _teardown(self, record: FunctionRecord) -> None:
        self._drop_trigger(record)
        await self.runner.stop(record.name)
        if record.door is not None:
            await record.door.close()
        if record.metadata is not None:
            await record.metadata.close()
        self.b.iam.drop_policy(record.name)
        self.b.iam.drop_policy(record.service)
        with self._lock:
            self._functions.pop(record.name, None)

    # --- sandbox ------------------------------------------------------------------------------------

    def resources(self) -> list[dict[str, str]]:
        with self._lock:
            return [{"type": "cloudfunctions.function", "name": n, "state": str(r.body.get("state")),
                     "uri": str((r.body.get("serviceConfig") or {}).get("uri") or "")}
                    for n, r in sorted(self._functions.items())]

    async def reset(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        with self._lock:
            records = list(self._functions.values())
        for record in records:
            await self._teardown(record)

    async def close(self) -> None:
        await self.reset()
        await self.runner.close()
        if self._session is not None:
            await self._session.close()
            self._session = None


def _check_parent(parent: str) -> None:
    parts = parent.split("/")
    if len(parts) != 4 or parts[0] != "projects" or parts[2] != "locations":
        raise GoogleError("INVALID_ARGUMENT", f"parent: {parent!r} is not projects/*/locations/*")
    if parts[1] != PROJECT_ID:
        raise GoogleError("PERMISSION_DENIED", f"Permission 'cloudfunctions.functions.create' denied on "
                          f"'projects/{parts[1]}' (the sandbox has one project, {PROJECT_ID})")


def _metadata(target: str, verb: str) -> dict[str, Any]:
    return {"createTime": now_rfc3339(), "target": target, "verb": verb, "apiVersion": "v2"}
