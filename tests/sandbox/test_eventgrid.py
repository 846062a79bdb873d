"""The sandbox's Event Grid: topics and subscriptions through azure-mgmt-eventgrid, publishing with the
real `EventGridPublisherClient` (key, SAS and bearer credentials), delivery to a webhook and to a
local Function host stand-in (small aiohttp servers in this module that record what they get).
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from aiohttp import web
from azure.core.credentials import AzureKeyCredential, AzureSasCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent, EventGridPublisherClient, generate_sas
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.models import RoleAssignmentCreateParameters
from azure.mgmt.eventgrid import EventGridManagementClient
from azure.mgmt.eventgrid.models import (
    AzureFunctionEventSubscriptionDestination,
    EventSubscription,
    EventSubscriptionFilter,
    NumberGreaterThanAdvancedFilter,
    RetryPolicy,
    SystemTopic,
    Topic,
    WebHookEventSubscriptionDestination,
)
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.web import WebSiteManagementClient
from azure.mgmt.web.models import AppServicePlan, Site, SiteConfig, SkuDescription

import sandbox.eventgrid as eg
from sandbox.core.auth import SandboxCredential
from sandbox.server import Sandbox

DATA_SENDER = "d5a91429-5739-47e2-a06b-3470a27159e7"


class Receiver:
    """A webhook and a Function host stand-in on plain HTTP, recording every request.

    `script(name, [503, 503])` makes `/hook/<name>` answer those statuses first, then 200.
    `/hook/<name>` does Event Grid's validation handshakes unless the name starts with `nohs`
    (refuses) or `manual` (answers 200 without the code: manual validation).
    """

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.scripts: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="eg-receiver", daemon=True)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook/{name}", self._hook)
        app.router.add_route("OPTIONS", "/hook/{name}", self._options)
        app.router.add_post("/runtime/webhooks/eventgrid", self._function)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def url(self, name: str, query: str = "") -> str:
        return f"{self.base_url}/hook/{name}" + (f"?{query}" if query else "")

    def script(self, name: str, statuses: list[int]) -> None:
        with self._lock:
            self.scripts[name] = list(statuses)

    async def _record(self, request: web.Request, kind: str) -> dict[str, Any]:
        raw = await request.read()
        import json

        call = {
            "kind": kind,
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "headers": dict(request.headers),
            "body": json.loads(raw) if raw else None,
        }
        with self._lock:
            self.calls.append(call)
        return call

    async def _hook(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        call = await self._record(request, name)
        if call["headers"].get("aeg-event-type") == "SubscriptionValidation":
            if name.startswith("manual"):
                return web.Response(status=200)  # validates later through validationUrl
            if name.startswith("nohs"):
                return web.Response(status=403)
            return web.json_response({"validationResponse": call["body"][0]["data"]["validationCode"]})
        with self._lock:
            script = self.scripts.get(name) or []
            status = script.pop(0) if script else 200
        return web.Response(status=status)

    async def _options(self, request: web.Request) -> web.StreamResponse:
        await self._record(request, request.match_info["name"])
        if request.match_info["name"].startswith("nohs"):
            return web.Response(status=403)
        return web.Response(headers={"WebHook-Allowed-Origin": request.headers.get("WebHook-Request-Origin", "")})

    async def _function(self, request: web.Request) -> web.StreamResponse:
        await self._record(request, "function")
        return web.Response(status=202)

    def notifications(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [
                c for c in self.calls if c["kind"] == name and c["method"] == "POST" and c["headers"].get("aeg-event-type") == "Notification"
            ]

    def of_kind(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [c for c in self.calls if c["kind"] == name]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    yield r
    r.stop()


@dataclass
class Env:
    sb: Sandbox
    rg: str
    mgmt: EventGridManagementClient

    @property
    def verify(self) -> dict[str, str]:
        # azure-eventgrid 4.22's EventGridPublisherClient drops client-level transport kwargs for
        # basic topics, so the CA file goes with each send().
        return {"connection_verify": self.sb.ca_file}

    def topic(self, schema: str = "EventGridSchema") -> Any:
        name = f"topic-{uuid.uuid4().hex[:8]}"
        return self.mgmt.topics.begin_create_or_update(self.rg, name, Topic(location="westeurope", input_schema=schema)).result()

    def subscribe(self, topic: Any, name: str, **kwargs: Any) -> Any:
        return self.mgmt.event_subscriptions.begin_create_or_update(topic.id, name, EventSubscription(**kwargs)).result()

    def keys(self, topic: Any) -> Any:
        return self.mgmt.topics.list_shared_access_keys(self.rg, topic.name)


def _mgmt(sb: Sandbox, cls: Any) -> Any:
    e = sb.endpoints["azure"]
    return cls(
        SandboxCredential(e["deployer_principal_id"]), e["subscription_id"], base_url=e["arm"], connection_verify=e["ca_file"], polling_interval=0
    )


@pytest.fixture(scope="module")
def env(sandbox: Sandbox) -> Iterator[Env]:
    rg = f"rg-eg-{uuid.uuid4().hex[:6]}"
    _mgmt(sandbox, ResourceManagementClient).resource_groups.create_or_update(rg, {"location": "westeurope"})
    yield Env(sandbox, rg, _mgmt(sandbox, EventGridManagementClient))
    _mgmt(sandbox, ResourceManagementClient).resource_groups.begin_delete(rg).result()


def _uid(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def _eg_event(event_type: str = "twin.output.changed", subject: str = "/twins/t1", data: Any = None) -> EventGridEvent:
    return EventGridEvent(subject=subject, event_type=event_type, data=data if data is not None else {"v": 1}, data_version="1.0")


# --- topics through ARM, publishing, webhook delivery ---------------------------------------------


def test_cloudevents_topic_delivers_to_a_webhook_after_the_options_handshake(env: Env, receiver: Receiver) -> None:
    topic = env.topic("CloudEventSchemaV1_0")
    port = env.sb.arm_url.rsplit(":", 1)[1]
    assert topic.endpoint == f"https://127.0.0.1:{port}/eventgrid/{topic.name}/api/events"
    assert topic.input_schema == "CloudEventSchemaV1_0"
    keys = env.keys(topic)
    assert keys.key1 and keys.key2 and keys.key1 != keys.key2

    hook = _uid("ce")
    sub = env.subscribe(
        topic, "to-hook",
        destination=WebHookEventSubscriptionDestination(endpoint_url=receiver.url(hook, "secret=abc")),
        event_delivery_schema="CloudEventSchemaV1_0",
    )
    assert sub.destination.endpoint_base_url == receiver.url(hook)
    assert sub.destination.endpoint_url is None, "ARM never returns the full webhook URL"
    assert eg.backend(env.sb.ctx).validation_state(sub.id, timeout=5) == "validated"
    assert [c["method"] for c in receiver.of_kind(hook)] == ["OPTIONS"]

    client = EventGridPublisherClient(topic.endpoint, AzureKeyCredential(keys.key1))
    sent = [CloudEvent(source="/twins/demo", type="twin.output.changed", data={"name": "ADT_INSTANCE_URL", "version": i}) for i in range(3)]
    client.send(sent, **env.verify)
    delivered = eg.wait_for_deliveries(env.sb.ctx, topic.id, 3)
    assert [d["events"][0]["id"] for d in delivered] == [e.id for e in sent], "in order per subscription"
    calls = receiver.notifications(hook)
    assert len(calls) == 3
    first = calls[0]
    assert first["headers"]["Content-Type"].startswith("application/cloudevents+json")
    assert first["headers"]["aeg-subscription-name"] == "TO-HOOK"
    assert first["query"] == {"secret": "abc"}
    assert first["body"]["type"] == "twin.output.changed" and first["body"]["data"] == {"name": "ADT_INSTANCE_URL", "version": 0}
    assert first["body"]["specversion"] == "1.0" and first["body"]["source"] == "/twins/demo"
    assert delivered[0]["destination"] == receiver.url(hook), "the recorded destination leaves out the query"


def test_eventgrid_schema_topic_validation_handshake_and_bearer_publishing(env: Env, receiver: Receiver) -> None:
    topic = env.topic()
    hook = _uid("egs")
    sub = env.subscribe(topic, "eg-hook", destination=WebHookEventSubscriptionDestination(endpoint_url=receiver.url(hook)))
    assert eg.backend(env.sb.ctx).validation_state(sub.id, timeout=5) == "validated"
    handshake = receiver.of_kind(hook)[0]
    assert handshake["headers"]["aeg-event-type"] == "SubscriptionValidation"
    assert handshake["body"][0]["eventType"] == "Microsoft.EventGrid.SubscriptionValidationEvent"

    principal = str(uuid.uuid4())
    client = EventGridPublisherClient(topic.endpoint, SandboxCredential(principal))
    with pytest.raises(HttpResponseError) as denied:
        client.send([_eg_event()], **env.verify)
    assert denied.value.status_code == 403
    auth = _mgmt(env.sb, AuthorizationManagementClient)
    sub_id = env.sb.endpoints["azure"]["subscription_id"]
    auth.role_assignments.create(
        topic.id,
        str(uuid.uuid4()),
        RoleAssignmentCreateParameters(
            role_definition_id=f"/subscriptions/{sub_id}/providers/Microsoft.Authorization/roleDefinitions/{DATA_SENDER}",
            principal_id=principal,
        ),
    )
    event = _eg_event(data={"x": 1})
    client.send([event], **env.verify)
    delivered = eg.wait_for_deliveries(env.sb.ctx, topic.id, 1)
    body = receiver.notifications(hook)[0]["body"]
    assert isinstance(body, list) and body[0]["id"] == str(event.id)
    assert body[0]["topic"] == topic.id and body[0]["eventType"] == "twin.output.changed"
    assert delivered[0]["attempts"] == 1 and delivered[0]["status"] == 200


def test_publish_authentication_and_schema_errors(env: Env) -> None:
    topic = env.topic()
    keys = env.keys(topic)
    with pytest.raises(ClientAuthenticationError):
        EventGridPublisherClient(topic.endpoint, AzureKeyCredential("d3Jvbmc=")).send([_eg_event()], **env.verify)
    good = generate_sas(topic.endpoint, keys.key2, datetime.now(UTC) + timedelta(hours=1))
    EventGridPublisherClient(topic.endpoint, AzureSasCredential(good)).send([_eg_event()], **env.verify)
    expired = generate_sas(topic.endpoint, keys.key2, datetime.now(UTC) - timedelta(minutes=1))
    with pytest.raises(ClientAuthenticationError):
        EventGridPublisherClient(topic.endpoint, AzureSasCredential(expired)).send([_eg_event()], **env.verify)
    forged = generate_sas(topic.endpoint, "Zm9yZ2Vk", datetime.now(UTC) + timedelta(hours=1))
    with pytest.raises(ClientAuthenticationError):
        EventGridPublisherClient(topic.endpoint, AzureSasCredential(forged)).send([_eg_event()], **env.verify)

    key_client = EventGridPublisherClient(topic.endpoint, AzureKeyCredential(keys.key1))
    with pytest.raises(HttpResponseError) as wrong_schema:
        key_client.send([CloudEvent(source="/x", type="t", data={})], **env.verify)
    assert wrong_schema.value.status_code == 400
    with pytest.raises(HttpResponseError) as incomplete:
        key_client.send([{"id": "1", "eventType": "t", "data": {}, "dataVersion": "1", "eventTime": "2026-01-01T00:00:00Z"}], **env.verify)
    assert incomplete.value.status_code == 400
    assert "subject" in str(incomplete.value)
    assert len(eg.backend(env.sb.ctx).published(topic.id)) == 1, "only the SAS-signed publish was accepted"


def test_filters_select_what_each_subscription_gets(env: Env, receiver: Receiver) -> None:
    topic = env.topic()
    hook = _uid("flt")
    env.subscribe(
        topic, "filtered",
        destination=WebHookEventSubscriptionDestination(endpoint_url=receiver.url(hook)),
        filter=EventSubscriptionFilter(
            included_event_types=["twin.output.changed"],
            subject_begins_with="/twins/A/",
            advanced_filters=[NumberGreaterThanAdvancedFilter(key="data.version", value=1)],
        ),
    )
    client = EventGridPublisherClient(topic.endpoint, AzureKeyCredential(env.keys(topic).key1))
    events = [
        _eg_event(subject="/twins/a/outputs", data={"version": 2}),  # subject match is case-insensitive by default
        _eg_event(subject="/twins/A/outputs", data={"version": 1}),  # advanced filter fails
        _eg_event(event_type="twin.layer.completed", subject="/twins/A/x", data={"version": 5}),  # type excluded
        _eg_event(subject="/twins/B/outputs", data={"version": 9}),  # subject excluded
        _eg_event(subject="/twins/A/outputs", data={"version": 3}),
    ]
    client.send(events, **env.verify)
    delivered = eg.wait_for_deliveries(env.sb.ctx, topic.id, 2)
    time.sleep(0.2)
    assert [d["events"][0]["id"] for d in eg.deliveries(env.sb.ctx, topic.id)] == [str(events[0].id), str(events[4].id)]
    assert len(delivered) == 2


def test_eventgrid_events_are_converted_for_a_cloudevents_subscription(env: Env, receiver: Receiver) -> None:
    topic = env.topic()
    hook = _uid("conv")
    env.subscribe(
        topic, "as-ce",
        destination=WebHookEventSubscriptionDestination(endpoint_url=receiver.url(hook)),
        event_delivery_schema="CloudEventSchemaV1_0",
    )
    event = _eg_event(data={"k": "v"})
    EventGridPublisherClient(topic.endpoint, AzureKeyCredential(env.keys(topic).key1)).send([event], **env.verify)
    eg.wait_for_deliveries(env.sb.ctx, topic.id, 1)
    ce = receiver.notifications(hook)[0]["body"]
    assert ce == {
        "id": str(event.id), "source": topic.id, "specversion": "1.0", "type": "twin.output.changed",
        "subject": "/twins/t1", "time": ce["time"], "data": {"k": "v"}, "dataschema": "#1.0",
    }


def test_manual_validation_through_the_validation_url(env: Env, receiver: Receiver) -> None:
    topic = env.topic()
    hook = _uid("manual")
    sub = env.subscribe(topic, "manual", destination=WebHookEventSubscriptionDestination(endpoint_url=receiver.url(hook)))
    deadline = time.monotonic() + 5
    while not receiver.of_kind(hook):
        assert time.monotonic() < deadline, "no validation request came"
        time.sleep(0.02)
    validation_url = receiver.of_kind(hook)[0]["body"][0]["data"]["validationUrl"]
    assert eg.backend(env.sb.ctx).validation_state(sub.id) == "pending"
    event = _eg_event()
    EventGridPublisherClient(topic.endpoint, AzureKeyCredential(env.keys(topic).key1)).send([event], **env.verify)
    time.sleep(0.1)
    assert receiver.notifications(hook) == [], "events wait for the validation"
    r = requests.get(validation_url, verify=env.sb.ca_file, timeout=10)
    assert r.status_code == 200
    assert eg.backend(env.sb.ctx).validation_state(sub.id, timeout=5) == "validated"
    eg.wait_for_deliveries(env.sb.ctx, topic.id, 1)
    assert receiver.notifications(hook)[0]["body"][0]["id"] == str(event.id)


def test_batches_up_to_max_events_per_batch(env: Env, receiver: Receiver) -> None:
    topic = env.topic("CloudEventSchemaV1_0")
    hook = _uid("batch")
    env.subscribe(
        topic, "batched",
        destination=WebHookEventSubscriptionDestination(endpoint_url=receiver.url(hook), max_events_per_batch=2),
        event_delivery_schema="CloudEventSchemaV1_0",
    )
    events = [CloudEvent(source="/twins/b", type="twin.layer.completed", data={"i": i}) for i in range(3)]
    EventGridPublisherClient(topic.endpoint, AzureKeyCredential(env.keys(topic).key1)).send(events, **env.verify)
    delivered = eg.wait_for_deliveries(env.sb.ctx, topic.id, 2)
    assert [len(d["events"]) for d in delivered] == [2, 1]
    calls = receiver.notifications(hook)
    assert all(c["headers"]["Content-Type"].startswith("application/cloudevents-batch+json") for c in calls)
    assert [e["id"] for c in calls for e in c["body"]] == [e.id for e in events]


# --- retries, ordering, dead letters --------------------------------------------------------------


def test_retries_keep_order_and_undeliverable_events_are_dead_lettered(env: Env, receiver: Receiver) -> None:
    topic = env.topic()
    flaky, rejecting, down, unvalidated = _uid("flaky"), _uid("rej"), _uid("down"), _uid("nohs")
    receiver.script(flaky, [503, 429])
    receiver.script(rejecting, [400])
    receiver.script(down, [503] * 20)
    for name, hook in (("flaky", flaky), ("rejecting", rejecting), ("down", down), ("unvalidated", unvalidated)):
        env.subscribe(
            topic, name,
            destination=WebHookEventSubscriptionDestination(endpoint_url=receiver.url(hook)),
            retry_policy=RetryPolicy(max_delivery_attempts=30, event_time_to_live_in_minutes=1440),
        )
    assert eg.backend(env.sb.ctx).validation_state(f"{topic.id}/providers/Microsoft.EventGrid/eventSubscriptions/unvalidated", 5) == "failed"

    client = EventGridPublisherClient(topic.endpoint, AzureKeyCredential(env.keys(topic).key1))
    events = [_eg_event(data={"n": i}) for i in range(3)]
    client.send(events, **env.verify)

    eg.wait_for_deliveries(env.sb.ctx, topic.id, 5)  # 3 for "flaky", 2 for "rejecting" (only its 1st is refused)
    ok = [d for d in eg.deliveries(env.sb.ctx, topic.id) if d["subscription"] == "flaky"]
    assert [d["events"][0]["id"] for d in ok] == [str(e.id) for e in events], "a retried event still comes first"
    assert [d["attempts"] for d in ok] == [3, 1, 1]
    counts = [c["headers"]["aeg-delivery-count"] for c in receiver.notifications(flaky)]
    assert counts == ["0", "1", "2", "0", "0"]

    dead = eg.wait_for_deliveries(env.sb.ctx, topic.id, 7, timeout=30, outcome="dead-lettered")
    by_sub: dict[str, list[dict[str, Any]]] = {}
    for d in dead:
        by_sub.setdefault(d["subscription"], []).append(d)
    assert [d["attempts"] for d in by_sub["rejecting"]] == [1], "a 400 is not retried"
    assert len(by_sub["down"]) == 3 and len(by_sub["unvalidated"]) == 3
    assert "400" in by_sub["rejecting"][0]["reason"]
    assert all(d["attempts"] == eg.models.SANDBOX_MAX_ATTEMPTS for d in by_sub["down"])
    assert "503" in by_sub["down"][0]["reason"]
    assert all("validation failed" in d["reason"] for d in by_sub["unvalidated"])
    assert eg.dead_letters(env.sb.ctx, topic.id) == dead


# --- system topics and Azure Function destinations ------------------------------------------------


FUNCTION_APP = b"""import azure.functions as func

app = func.FunctionApp()


@app.event_grid_trigger(arg_name="event")
def ingest(event: func.EventGridEvent) -> None:
    pass
"""


def _deploy_function_app(env: Env) -> str:
    """A Function App with an Event Grid triggered `ingest`, deployed through ARM and Kudu and
    indexed (sync triggers), as Event Grid requires before it accepts the subscription."""
    web_client = _mgmt(env.sb, WebSiteManagementClient)
    name = f"func-{uuid.uuid4().hex[:6]}"
    plan = web_client.app_service_plans.begin_create_or_update(
        env.rg, f"plan-{name}", AppServicePlan(location="westeurope", kind="functionapp", reserved=True, sku=SkuDescription(name="EP1", tier="ElasticPremium"))
    ).result()
    site = web_client.web_apps.begin_create_or_update(
        env.rg, name,
        Site(location="westeurope", kind="functionapp,linux", reserved=True, server_farm_id=plan.id, site_config=SiteConfig(linux_fx_version="Python|3.11")),
    ).result()
    scm = next(s.name for s in site.host_name_ssl_states if s.host_type == "Repository")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("function_app.py", FUNCTION_APP)
        zf.writestr("host.json", '{"version": "2.0"}')
        zf.writestr("requirements.txt", "azure-functions\n")
    token = SandboxCredential(env.sb.endpoints["azure"]["deployer_principal_id"]).get_token("https://management.azure.com/.default").token
    auth = {"Authorization": f"Bearer {token}"}
    r = requests.post(
        f"https://{scm}/api/zipdeploy", params={"isAsync": "true"}, data=buf.getvalue(),
        headers={**auth, "Content-Type": "application/zip"}, verify=env.sb.ca_file, timeout=30,
    )
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 20
    while True:
        status = requests.get(r.headers["Location"], headers=auth, verify=env.sb.ca_file, timeout=10).json()
        if status.get("complete") or status.get("status") in (3, 4):
            assert status["status"] == 4, status
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    web_client.web_apps.sync_function_triggers(env.rg, name)
    return str(site.id)


def test_system_topic_event_reaches_a_registered_function_host(env: Env, receiver: Receiver) -> None:
    sub_id = env.sb.endpoints["azure"]["subscription_id"]
    hub_id = f"/subscriptions/{sub_id}/resourceGroups/{env.rg}/providers/Microsoft.Devices/IotHubs/hub-{uuid.uuid4().hex[:6]}"
    site_id = _deploy_function_app(env)
    st_name = _uid("st-")
    env.mgmt.system_topics.begin_create_or_update(
        env.rg, st_name, SystemTopic(location="westeurope", source=hub_id, topic_type="Microsoft.Devices.IoTHubs")
    ).result()
    env.mgmt.system_topic_event_subscriptions.begin_create_or_update(
        env.rg, st_name, "to-func",
        EventSubscription(
            destination=AzureFunctionEventSubscriptionDestination(resource_id=f"{site_id}/functions/ingest", max_events_per_batch=1),
            filter=EventSubscriptionFilter(included_event_types=["Microsoft.Devices.DeviceTelemetry"]),
        ),
    ).result()

    # No host registered yet: the event is retried, then dead-lettered with the reason.
    reached = eg.publish_system_event(env.sb.ctx, hub_id, "Microsoft.Devices.DeviceTelemetry", "devices/d0", {"body": {"t": 0}})
    assert len(reached) == 1 and reached[0].endswith(st_name)
    dead = eg.wait_for_deliveries(env.sb.ctx, reached[0], 1, timeout=15, outcome="dead-lettered")
    assert "no local Function host is registered" in dead[0]["reason"]

    r = requests.post(
        env.sb.control_url + "/hosts", json={"site": site_id, "base_url": receiver.base_url, "master_key": "mk-123"}, timeout=10
    )
    assert r.status_code < 300, r.text
    eg.publish_device_telemetry(env.sb.ctx, hub_id, "d1", {"t": 21.5}, {"kind": "reading"})
    eg.publish_system_event(env.sb.ctx, hub_id, "Microsoft.Devices.DeviceConnected", "devices/d1", {})  # filtered out
    delivered = eg.wait_for_deliveries(env.sb.ctx, reached[0], 1)
    assert delivered[0]["destination"] == receiver.base_url + "/runtime/webhooks/eventgrid"
    calls = receiver.of_kind("function")
    assert len(calls) == 1
    call = calls[0]
    assert call["query"] == {"functionName": "ingest", "code": "mk-123"}
    assert call["headers"]["aeg-event-type"] == "Notification"
    assert call["body"][0]["eventType"] == "Microsoft.Devices.DeviceTelemetry"
    assert call["body"][0]["subject"] == "devices/d1" and call["body"][0]["topic"] == hub_id
    data = call["body"][0]["data"]
    assert data["body"] == {"t": 21.5} and data["properties"] == {"kind": "reading"}
    assert data["systemProperties"]["iothub-connection-device-id"] == "d1"
    assert "mk-123" not in str(eg.deliveries(env.sb.ctx)), "the master key never shows in records"


def test_deleting_a_topic_or_subscription_stops_delivery(env: Env, receiver: Receiver) -> None:
    topic = env.topic()
    hook = _uid("del")
    env.subscribe(topic, "gone-soon", destination=WebHookEventSubscriptionDestination(endpoint_url=receiver.url(hook)))
    keys = env.keys(topic)
    client = EventGridPublisherClient(topic.endpoint, AzureKeyCredential(keys.key1))
    env.mgmt.event_subscriptions.begin_delete(topic.id, "gone-soon").result()
    client.send([_eg_event()], **env.verify)
    time.sleep(0.2)
    assert receiver.notifications(hook) == []
    env.mgmt.topics.begin_delete(env.rg, topic.name).result()
    with pytest.raises(ResourceNotFoundError):
        client.send([_eg_event()], **env.verify)


# --- the control endpoint's reset ----------------------------------------------------------------


def test_control_reset_drops_topics_subscriptions_and_digital_twins_data(sandbox_factory: Any) -> None:
    sb: Sandbox = sandbox_factory()
    rg = "rg-reset"
    _mgmt(sb, ResourceManagementClient).resource_groups.create_or_update(rg, {"location": "westeurope"})
    mgmt = _mgmt(sb, EventGridManagementClient)
    topic = mgmt.topics.begin_create_or_update(rg, "t-reset", Topic(location="westeurope")).result()
    key = mgmt.topics.list_shared_access_keys(rg, "t-reset").key1
    client = EventGridPublisherClient(topic.endpoint, AzureKeyCredential(key))
    client.send([_eg_event()], connection_verify=sb.ca_file)
    assert eg.backend(sb.ctx).published(topic.id)

    from azure.mgmt.digitaltwins import AzureDigitalTwinsManagementClient
    from azure.mgmt.digitaltwins.models import DigitalTwinsDescription

    from sandbox.digitaltwins import backend as adt_backend

    inst = _mgmt(sb, AzureDigitalTwinsManagementClient).digital_twins.begin_create_or_update(
        rg, "adt-reset", DigitalTwinsDescription(location="westeurope")
    ).result()
    assert adt_backend(sb.ctx).instance_for_resource(inst.id) is not None

    r = requests.post(sb.control_url + "/reset", timeout=10)
    assert r.status_code < 300, r.text
    assert adt_backend(sb.ctx).instances() == []
    with pytest.raises(ResourceNotFoundError):
        client.send([_eg_event()], connection_verify=sb.ca_file)
    with pytest.raises(KeyError):
        eg.backend(sb.ctx).find_topic(topic.id)


# --- Azure Resource Manager's own events ---------------------------------------------------------


def test_resource_group_topic_carries_arm_write_and_delete_events_of_its_resources(env: Env, receiver: Receiver) -> None:
    """`Microsoft.Resources.ResourceGroups` system topic: a write (after its long operation ends)
    and a delete of a resource in the group raise `ResourceWriteSuccess` / `ResourceDeleteSuccess`
    with the resource id as subject and `data.resourceUri`; another group's resources raise none."""
    sub_id = env.sb.endpoints["azure"]["subscription_id"]
    resources = _mgmt(env.sb, ResourceManagementClient)
    watched, other = _uid("rg-w-"), _uid("rg-o-")
    for rg in (watched, other):
        resources.resource_groups.create_or_update(rg, {"location": "westeurope"})
    st_name = _uid("st-arm-")
    env.mgmt.system_topics.begin_create_or_update(
        watched, st_name,
        SystemTopic(location="global", source=f"/subscriptions/{sub_id}/resourceGroups/{watched}",
                    topic_type="Microsoft.Resources.ResourceGroups"),
    ).result()
    hook = _uid("arm")
    env.mgmt.system_topic_event_subscriptions.begin_create_or_update(
        watched, st_name, "arm-events",
        EventSubscription(destination=WebHookEventSubscriptionDestination(endpoint_url=receiver.url(hook)),
                          filter=EventSubscriptionFilter(included_event_types=[
                              "Microsoft.Resources.ResourceWriteSuccess", "Microsoft.Resources.ResourceDeleteSuccess"])),
    ).result()
    try:
        for rg in (other, watched):
            env.mgmt.topics.begin_create_or_update(rg, "watched-topic", Topic(location="westeurope")).result()
        env.mgmt.topics.begin_delete(watched, "watched-topic").result()
        deadline = time.monotonic() + 10
        while len(receiver.notifications(hook)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # nothing else (the other group's topic) follows
        events = [c["body"][0] for c in receiver.notifications(hook)]
        # The event subscription's own creation is a write in the group too (queued until validated).
        assert events[0]["subject"].endswith(f"/systemTopics/{st_name}/eventSubscriptions/arm-events"), events
        events = events[1:]
        topic_id = f"/subscriptions/{sub_id}/resourceGroups/{watched}/providers/Microsoft.EventGrid/topics/watched-topic"
        assert [(e["eventType"], e["subject"]) for e in events] == [
            ("Microsoft.Resources.ResourceWriteSuccess", topic_id),
            ("Microsoft.Resources.ResourceDeleteSuccess", topic_id),
        ], events
        assert events[0]["data"]["resourceUri"] == topic_id
        assert events[0]["data"]["operationName"] == "Microsoft.EventGrid/topics/write"
        assert events[0]["data"]["status"] == "Succeeded" and events[0]["topic"].endswith(f"/resourceGroups/{watched}")
    finally:
        for rg in (watched, other):
            resources.resource_groups.begin_delete(rg).result()
