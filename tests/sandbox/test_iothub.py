"""The sandbox's IoT Hub data plane over plain HTTPS with SAS tokens computed here, as the deployer's
registry calls and an HTTPS device do (no azure-iot-hub / AMQP stack).

The hub is created through ARM with azure-mgmt-iothub; its `hostName` and `iothubowner` key come
from ARM. Telemetry is followed through an Event Grid system topic (made with
azure-mgmt-eventgrid) to a webhook.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import importlib
import json
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from aiohttp import web
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.models import RoleAssignmentCreateParameters
from azure.mgmt.eventgrid import EventGridManagementClient
from azure.mgmt.eventgrid.models import (
    EventSubscription,
    EventSubscriptionFilter,
    SystemTopic,
    WebHookEventSubscriptionDestination,
)
from azure.mgmt.iothub import IotHubClient
from azure.mgmt.iothub.models import IotHubDescription, IotHubSkuInfo
from azure.mgmt.resource.resources import ResourceManagementClient

import sandbox.eventgrid as eg
import sandbox.iothub as iothub
from sandbox.core.auth import SandboxCredential, make_token
from sandbox.server import AZURE_SERVICES, Sandbox

API = "2021-04-12"
D2C_API = "2020-03-13"
REGISTRY_CONTRIBUTOR = "4ea46cd5-c1b2-4a8e-910b-273211f9ce47"
MINE = (("sandbox.cosmos", "/cosmos"), ("sandbox.iothub", "/iothub"), ("sandbox.grafana", "/grafana"))


class ServicesSandbox(Sandbox):
    """The sandbox with this task's data planes mounted one line each, as `sandbox/server.py`
    mounts its services (skipped where the server already mounts them)."""

    def build_azure_app(self) -> Any:
        root = super().build_azure_app()
        mounted = {prefix for _, prefix in AZURE_SERVICES}
        for name, prefix in MINE:
            if prefix not in mounted:
                module = importlib.import_module(name)
                module.install(self.ctx)
                root.add_subapp(prefix + "/", module.create_app(self.ctx))
        return root


def mgmt(sb: Sandbox, cls: Any) -> Any:
    e = sb.endpoints["azure"]
    return cls(
        SandboxCredential(e["deployer_principal_id"]), e["subscription_id"], base_url=e["arm"], connection_verify=e["ca_file"], polling_interval=0
    )


def sas(resource: str, key: str, policy: str | None = None, ttl: int = 3600, expiry: int | None = None) -> str:
    """An IoT Hub SAS token, computed as the Azure IoT SDKs do."""
    se = expiry if expiry is not None else int(time.time()) + ttl
    sr = urllib.parse.quote(resource.lower(), safe="")
    sig = base64.b64encode(hmac.new(base64.b64decode(key), f"{sr}\n{se}".encode(), hashlib.sha256).digest()).decode()
    token = f"SharedAccessSignature sr={sr}&sig={urllib.parse.quote(sig, safe='')}&se={se}"
    return token + (f"&skn={policy}" if policy else "")


class Webhook:
    """A plain-HTTP webhook that answers Event Grid's validation handshake and records notifications."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="iothub-webhook", daemon=True)
        self._runner: web.AppRunner | None = None
        self.url = ""

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/hook"

    async def _hook(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if request.headers.get("aeg-event-type") == "SubscriptionValidation":
            return web.json_response({"validationResponse": body[0]["data"]["validationCode"]})
        with self._lock:
            self.events.extend(body)
        return web.Response(status=200)

    def wait(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.events) >= count:
                    return list(self.events)
            time.sleep(0.05)
        raise AssertionError(f"expected {count} events, got {len(self.events)}")

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@dataclass
class Env:
    sb: ServicesSandbox
    rg: str
    hub: str
    hub_id: str
    host: str
    owner_key: str
    registry_key: str
    service_key: str

    def url(self, path: str, api: str = API) -> str:
        return f"https://{self.host}{path}?api-version={api}"

    def owner(self) -> dict[str, str]:
        return {"Authorization": sas(self.host, self.owner_key, "iothubowner")}

    def call(self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> requests.Response:
        return requests.request(
            method, self.url(path, kwargs.pop("api", API)), headers={**self.owner(), **(headers or {})}, verify=self.sb.ca_file, timeout=10, **kwargs
        )

    def create_device(self, device_id: str) -> dict[str, Any]:
        r = self.call("PUT", f"/devices/{device_id}", json={"deviceId": device_id, "status": "enabled", "authentication": {"type": "sas"}})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def send(self, device_id: str, key: str, body: bytes, headers: dict[str, str] | None = None) -> requests.Response:
        auth = sas(f"{self.host}/devices/{device_id}", key)
        return requests.post(
            self.url(f"/devices/{device_id}/messages/events", D2C_API),
            data=body,
            headers={"Authorization": auth, **(headers or {})},
            verify=self.sb.ca_file,
            timeout=10,
        )


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    sb = ServicesSandbox(Path(tmp_path_factory.mktemp("iothub")), with_aws=False, with_blob=False)
    sb.start()
    try:
        rg = "rg-iot"
        mgmt(sb, ResourceManagementClient).resource_groups.create_or_update(rg, {"location": "westeurope"})
        client = mgmt(sb, IotHubClient)
        name = f"hub-{uuid.uuid4().hex[:8]}"
        hub = client.iot_hub_resource.begin_create_or_update(
            rg, name, IotHubDescription(location="westeurope", sku=IotHubSkuInfo(name="S1", capacity=1))
        ).result()
        keys = {k: client.iot_hub_resource.get_keys_for_key_name(rg, name, k).primary_key for k in ("iothubowner", "registryReadWrite", "service")}
        yield Env(sb, rg, name, hub.id, hub.properties.host_name, keys["iothubowner"], keys["registryReadWrite"], keys["service"])
    finally:
        sb.stop()


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    w = Webhook()
    w.start()
    yield w
    w.stop()


def test_host_name_from_arm_points_at_the_sandbox(env: Env) -> None:
    assert env.host == f"{env.sb.arm_url.split('://')[1]}/iothub/{env.hub}"
    # The connection string form the deployer builds works as is.
    cs = f"HostName={env.host};SharedAccessKeyName=iothubowner;SharedAccessKey={env.owner_key}"
    host = dict(p.split("=", 1) for p in cs.split(";"))["HostName"]
    r = requests.get(f"https://{host}/devices/nope?api-version={API}", headers=env.owner(), verify=env.sb.ca_file, timeout=10)
    assert r.status_code == 404 and r.headers["iothub-errorcode"] == "DeviceNotFound"
    assert r.json()["Message"].startswith("ErrorCode:DeviceNotFound;")


def test_registry_create_get_conflict_update_delete(env: Env) -> None:
    doc = env.create_device("dev-a")
    keys = doc["authentication"]["symmetricKey"]
    assert len(base64.b64decode(keys["primaryKey"])) == 32 and keys["primaryKey"] != keys["secondaryKey"]
    assert doc["status"] == "enabled" and doc["connectionState"] == "Disconnected" and doc["etag"]

    again = env.call("PUT", "/devices/dev-a", json={"deviceId": "dev-a"})
    assert again.status_code == 409 and again.headers["iothub-errorcode"] == "DeviceAlreadyExists"

    got = env.call("GET", "/devices/dev-a")
    assert got.status_code == 200 and got.json()["authentication"]["symmetricKey"] == keys

    # An update with the etag keeps the keys it does not mention; a stale etag is refused.
    upd = env.call("PUT", "/devices/dev-a", headers={"If-Match": f'"{doc["etag"]}"'}, json={"deviceId": "dev-a", "status": "disabled"})
    assert upd.status_code == 200 and upd.json()["status"] == "disabled"
    assert upd.json()["authentication"]["symmetricKey"] == keys
    stale = env.call("PUT", "/devices/dev-a", headers={"If-Match": f'"{doc["etag"]}"'}, json={"deviceId": "dev-a"})
    assert stale.status_code == 412

    # Given keys are kept.
    mine = base64.b64encode(b"k" * 32).decode()
    own = env.call("PUT", "/devices/dev-own", json={"deviceId": "dev-own", "authentication": {"type": "sas", "symmetricKey": {"primaryKey": mine, "secondaryKey": mine}}})
    assert own.status_code == 200 and own.json()["authentication"]["symmetricKey"]["primaryKey"] == mine

    assert env.call("DELETE", "/devices/dev-a").status_code == 400  # If-Match is required
    assert env.call("DELETE", "/devices/dev-a", headers={"If-Match": '"*"'}).status_code == 204
    assert env.call("GET", "/devices/dev-a").status_code == 404
    assert env.call("DELETE", "/devices/dev-a", headers={"If-Match": "*"}).status_code == 404
    listed = env.call("GET", "/devices")
    assert [d["deviceId"] for d in listed.json()] == ["dev-own"]


def test_sas_errors_are_401(env: Env) -> None:
    def get(auth: str | None) -> requests.Response:
        headers = {"Authorization": auth} if auth else {}
        return requests.get(env.url("/devices/x"), headers=headers, verify=env.sb.ca_file, timeout=10)

    wrong_key = base64.b64encode(b"w" * 32).decode()
    cases = {
        "missing": None,
        "bad signature": sas(env.host, wrong_key, "iothubowner"),
        "expired": sas(env.host, env.owner_key, "iothubowner", expiry=int(time.time()) - 10),
        "other hub": sas(env.host + "x", env.owner_key, "iothubowner"),
        "unknown policy": sas(env.host, env.owner_key, "nobody"),
        "policy without RegistryRead": sas(env.host, env.service_key, "service"),
        "device token on the registry": sas(env.host, env.owner_key),
        "garbage": "Bearer abc",
    }
    for label, auth in cases.items():
        r = get(auth)
        assert r.status_code == 401, label
        assert r.headers["iothub-errorcode"] == "IotHubUnauthorizedAccess", label
        assert env.owner_key not in r.text
    # The least-privileged registry policy works.
    ok = requests.get(env.url("/devices/x"), headers={"Authorization": sas(env.host, env.registry_key, "registryReadWrite")}, verify=env.sb.ca_file, timeout=10)
    assert ok.status_code == 404
    # Missing api-version.
    r = requests.get(f"https://{env.host}/devices/x", headers=env.owner(), verify=env.sb.ca_file, timeout=10)
    assert r.status_code == 400 and r.headers["iothub-errorcode"] == "InvalidProtocolVersion"


def test_entra_tokens_need_an_iot_hub_data_role(env: Env) -> None:
    principal = str(uuid.uuid4())
    url = env.url("/devices/entra-dev")

    def put(scope: str = "https://iothubs.azure.net/.default") -> requests.Response:
        auth = {"Authorization": f"Bearer {make_token(principal, scope)}"}
        return requests.put(url, json={"deviceId": "entra-dev"}, headers=auth, verify=env.sb.ca_file, timeout=10)

    assert put().status_code == 401  # no role yet
    sub = env.sb.endpoints["azure"]["subscription_id"]
    mgmt(env.sb, AuthorizationManagementClient).role_assignments.create(
        env.hub_id,
        str(uuid.uuid4()),
        RoleAssignmentCreateParameters(  # type: ignore[call-arg]
            role_definition_id=f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{REGISTRY_CONTRIBUTOR}",
            principal_id=principal,
            principal_type="ServicePrincipal",
        ),
    )
    assert put("https://management.azure.com/.default").status_code == 401  # wrong audience
    created = put()
    assert created.status_code == 200 and created.json()["deviceId"] == "entra-dev"


def test_telemetry_reaches_a_webhook_subscribed_to_the_hub_system_topic(env: Env, webhook: Webhook) -> None:
    eg_client = mgmt(env.sb, EventGridManagementClient)
    st = f"st-{uuid.uuid4().hex[:6]}"
    eg_client.system_topics.begin_create_or_update(
        env.rg, st, SystemTopic(location="westeurope", source=env.hub_id, topic_type="Microsoft.Devices.IoTHubs")
    ).result()
    eg_client.system_topic_event_subscriptions.begin_create_or_update(
        env.rg,
        st,
        "to-webhook",
        EventSubscription(
            destination=WebHookEventSubscriptionDestination(endpoint_url=webhook.url, max_events_per_batch=1),
            filter=EventSubscriptionFilter(included_event_types=["Microsoft.Devices.DeviceTelemetry"]),
        ),
    ).result()

    device = env.create_device("sensor-1")
    key = device["authentication"]["symmetricKey"]["primaryKey"]
    reading = {"iotDeviceId": "sensor-1", "time": "2025-01-01T00:00:00Z", "temperature": 28}
    json_headers = {"iothub-contenttype": "application/json", "iothub-contentencoding": "utf-8", "iothub-messageid": "m-1", "iothub-app-kind": "reading"}
    assert env.send("sensor-1", key, json.dumps(reading).encode(), json_headers).status_code == 204
    # Without content type and encoding, IoT Hub hands Event Grid the body as base64.
    assert env.send("sensor-1", key, b'{"temperature": 29}', {"Content-Type": "application/json"}).status_code == 204

    events = webhook.wait(2)
    first, second = events[0], events[1]
    assert first["eventType"] == "Microsoft.Devices.DeviceTelemetry" and first["subject"] == "devices/sensor-1"
    assert first["topic"].lower() == env.hub_id.lower()
    assert first["data"]["body"] == reading
    assert first["data"]["properties"] == {"kind": "reading"}
    sysprops = first["data"]["systemProperties"]
    assert sysprops["iothub-connection-device-id"] == "sensor-1"
    assert sysprops["iothub-content-type"] == "application/json" and sysprops["iothub-content-encoding"] == "utf-8"
    assert sysprops["iothub-connection-auth-generation-id"] == device["generationId"]
    assert second["data"]["body"] == base64.b64encode(b'{"temperature": 29}').decode()
    assert "iothub-content-type" not in second["data"]["systemProperties"]
    assert len(iothub.messages(env.sb.ctx, env.hub)) == 2
    assert len(eg.wait_for_deliveries(env.sb.ctx, st, 2)) == 2

    # Registry changes raise their own event types (filtered out of the telemetry subscription above).
    eg_client.system_topic_event_subscriptions.begin_create_or_update(
        env.rg,
        st,
        "lifecycle",
        EventSubscription(
            destination=WebHookEventSubscriptionDestination(endpoint_url=webhook.url, max_events_per_batch=1),
            filter=EventSubscriptionFilter(included_event_types=["Microsoft.Devices.DeviceCreated", "Microsoft.Devices.DeviceDeleted"]),
        ),
    ).result()
    env.create_device("sensor-9")
    assert env.call("DELETE", "/devices/sensor-9", headers={"If-Match": "*"}).status_code == 204
    lifecycle = webhook.wait(4)[2:]
    assert [(e["eventType"], e["data"]["deviceId"], e["data"]["opType"]) for e in lifecycle] == [
        ("Microsoft.Devices.DeviceCreated", "sensor-9", "DeviceCreated"),
        ("Microsoft.Devices.DeviceDeleted", "sensor-9", "DeviceDeleted"),
    ]


def test_telemetry_auth_and_device_errors(env: Env) -> None:
    device = env.create_device("sensor-2")
    key = device["authentication"]["symmetricKey"]["secondaryKey"]
    other = env.create_device("sensor-3")["authentication"]["symmetricKey"]["primaryKey"]
    assert env.send("sensor-2", key, b"x").status_code == 204  # the secondary key works too
    assert env.send("sensor-2", other, b"x").status_code == 401  # another device's key
    # A token for another device does not cover this one.
    r = requests.post(
        env.url("/devices/sensor-2/messages/events", D2C_API), data=b"x",
        headers={"Authorization": sas(f"{env.host}/devices/sensor-3", other)}, verify=env.sb.ca_file, timeout=10,
    )
    assert r.status_code == 401
    # A hub policy with DeviceConnect may send for any device.
    r = requests.post(
        env.url("/devices/sensor-2/messages/events", D2C_API), data=b"x", headers=env.owner(), verify=env.sb.ca_file, timeout=10
    )
    assert r.status_code == 204
    assert env.send("ghost", key, b"x").status_code == 401
    too_big = env.send("sensor-2", key, b"x" * (256 * 1024 + 1))
    assert too_big.status_code == 413 and too_big.headers["iothub-errorcode"] == "MessageTooLarge"
    etag = env.call("GET", "/devices/sensor-2").json()["etag"]
    env.call("PUT", "/devices/sensor-2", headers={"If-Match": etag}, json={"deviceId": "sensor-2", "status": "disabled"})
    assert env.send("sensor-2", key, b"x").status_code == 401


def test_hub_deleted_through_arm_is_gone(env: Env) -> None:
    client = mgmt(env.sb, IotHubClient)
    name = f"hub-{uuid.uuid4().hex[:8]}"
    hub = client.iot_hub_resource.begin_create_or_update(env.rg, name, IotHubDescription(location="westeurope", sku=IotHubSkuInfo(name="S1", capacity=1))).result()
    key = client.iot_hub_resource.get_keys_for_key_name(env.rg, name, "iothubowner").primary_key
    host = hub.properties.host_name
    auth = {"Authorization": sas(host, key, "iothubowner")}
    put = requests.put(f"https://{host}/devices/d?api-version={API}", json={"deviceId": "d"}, headers=auth, verify=env.sb.ca_file, timeout=10)
    assert put.status_code == 200
    client.iot_hub_resource.begin_delete(env.rg, name).result()
    r = requests.get(f"https://{host}/devices/d?api-version={API}", headers=auth, verify=env.sb.ca_file, timeout=10)
    assert r.status_code == 404 and r.headers["iothub-errorcode"] == "IotHubNotFound"


DATA_CONTRIBUTOR = "4fc6c259-987e-4a07-842e-c321cc9d413f"


def _service(env: Env) -> dict[str, str]:
    return {"Authorization": sas(env.host, env.service_key, "service")}


def test_twin_get_and_patch_merge_desired_properties_with_versions_and_etags(env: Env) -> None:
    env.create_device("twin-a")
    got = env.call("GET", "/twins/twin-a", headers=_service(env))
    assert got.status_code == 200, got.text
    twin = got.json()
    assert twin["deviceId"] == "twin-a" and twin["version"] == 1 and got.headers["ETag"] == f'"{twin["etag"]}"'
    assert twin["properties"]["desired"]["$version"] == 1 and twin["properties"]["reported"]["$version"] == 1
    assert "tags" not in twin

    patch = {"properties": {"desired": {"feedback": {"payload": "open", "detail": {"level": 2}}, "mode": "eco"}}}
    first = env.call("PATCH", "/twins/twin-a", headers=_service(env), json=patch)
    assert first.status_code == 200, first.text
    desired = first.json()["properties"]["desired"]
    assert desired["feedback"] == {"payload": "open", "detail": {"level": 2}} and desired["mode"] == "eco"
    assert desired["$version"] == 2 and first.json()["version"] == 2 and first.json()["etag"] != twin["etag"]
    assert desired["$metadata"]["feedback"]["$lastUpdatedVersion"] == 2

    # A merge patch: nested objects merge, null removes, untouched keys stay.
    second = env.call("PATCH", "/twins/twin-a", headers=_service(env),
                      json={"properties": {"desired": {"feedback": {"detail": None, "payload": "close"}, "mode": None}}})
    desired = second.json()["properties"]["desired"]
    assert desired["feedback"] == {"payload": "close"} and "mode" not in desired and "mode" not in desired["$metadata"]
    assert desired["$version"] == 3

    # Tags bump the twin version only; the helper tests use reads the same twin.
    tagged = env.call("PATCH", "/twins/twin-a", headers=_service(env), json={"tags": {"site": "north"}})
    assert tagged.json()["tags"] == {"site": "north"} and tagged.json()["version"] == 4
    assert tagged.json()["properties"]["desired"]["$version"] == 3
    assert iothub.device_twin(env.sb.ctx, env.hub, "twin-a") == tagged.json()
    assert iothub.device_twin(env.sb.ctx, env.hub, "nobody") is None
    assert iothub.device_twin(env.sb.ctx, "no-such-hub", "twin-a") is None

    # Optimistic concurrency with the twin's etag.
    stale = env.call("PATCH", "/twins/twin-a", headers={**_service(env), "If-Match": f'"{twin["etag"]}"'},
                     json={"tags": {"site": "south"}})
    assert stale.status_code == 412 and stale.headers["iothub-errorcode"] == "PreconditionFailed"
    fresh = env.call("PATCH", "/twins/twin-a", headers={**_service(env), "If-Match": tagged.headers["ETag"]},
                     json={"tags": {"site": "south"}})
    assert fresh.status_code == 200 and fresh.json()["tags"] == {"site": "south"}

    # Updating the device identity keeps its twin; deleting the device removes it.
    device = env.call("GET", "/devices/twin-a").json()
    env.call("PUT", "/devices/twin-a", headers={"If-Match": f'"{device["etag"]}"'}, json={"deviceId": "twin-a", "status": "disabled"})
    kept = env.call("GET", "/twins/twin-a", headers=_service(env)).json()
    assert kept["status"] == "disabled" and kept["properties"]["desired"]["feedback"] == {"payload": "close"}
    assert env.call("DELETE", "/devices/twin-a", headers={"If-Match": "*"}).status_code == 204
    gone = env.call("GET", "/twins/twin-a", headers=_service(env))
    assert gone.status_code == 404 and gone.headers["iothub-errorcode"] == "DeviceNotFound"


def test_twin_patch_errors(env: Env) -> None:
    env.create_device("twin-b")

    def patch(body: Any, device: str = "twin-b", headers: dict[str, str] | None = None) -> requests.Response:
        return env.call("PATCH", f"/twins/{device}", headers=headers or _service(env), json=body)

    missing = patch({"properties": {"desired": {"a": 1}}}, device="ghost")
    assert missing.status_code == 404 and missing.headers["iothub-errorcode"] == "DeviceNotFound"
    for body, fragment in (
        ({"properties": {"reported": {"a": 1}}}, "reported properties are written by the device"),
        ({"properties": {"desired": {"a.b": 1}}}, "key 'a.b' is not allowed"),
        ({"properties": {"desired": {"$version": 7}}}, "key '$version' is not allowed"),
        ({"properties": {"desired": "x"}}, "properties.desired: must be a JSON object"),
        ({"status": "disabled"}, "tags and properties.desired only"),
        ([1, 2], "must be a JSON twin patch object"),
        ({"properties": {"desired": {"big": "x" * (33 * 1024)}}}, "at most 32768"),
    ):
        r = patch(body)
        assert r.status_code == 400, (body, r.text)
        assert fragment in r.json()["Message"], r.json()["Message"]
    deep: dict[str, Any] = {"v": 1}
    for _ in range(11):
        deep = {"n": deep}
    assert "nested deeper than 10" in patch({"properties": {"desired": deep}}).json()["Message"]
    bad_json = requests.patch(env.url("/twins/twin-b"), data=b"{nope", headers=_service(env), verify=env.sb.ca_file, timeout=10)
    assert bad_json.status_code == 400
    # Nothing above changed the twin.
    assert env.call("GET", "/twins/twin-b", headers=_service(env)).json()["properties"]["desired"]["$version"] == 1


def test_twin_calls_need_service_connect(env: Env) -> None:
    env.create_device("twin-c")
    body = {"properties": {"desired": {"feedback": "x"}}}
    # registryReadWrite has no ServiceConnect; a device's own key is not a service credential.
    registry = {"Authorization": sas(env.host, env.registry_key, "registryReadWrite")}
    r = env.call("PATCH", "/twins/twin-c", headers=registry, json=body)
    assert r.status_code == 401 and "ServiceConnect" in r.json()["Message"]
    device_key = env.call("GET", "/devices/twin-c").json()["authentication"]["symmetricKey"]["primaryKey"]
    as_device = {"Authorization": sas(f"{env.host}/devices/twin-c", device_key)}
    assert env.call("GET", "/twins/twin-c", headers=as_device).status_code == 401
    expired = {"Authorization": sas(env.host, env.service_key, "service", expiry=int(time.time()) - 5)}
    assert env.call("PATCH", "/twins/twin-c", headers=expired, json=body).status_code == 401
    assert env.call("PATCH", "/twins/twin-c", headers=_service(env), json=body).status_code == 200
    # iothubowner holds ServiceConnect too.
    assert env.call("GET", "/twins/twin-c").status_code == 200

    # Entra: IoT Hub Data Contributor grants twin access.
    principal = str(uuid.uuid4())
    bearer = {"Authorization": f"Bearer {make_token(principal, 'https://iothubs.azure.net/.default')}"}
    assert requests.get(env.url("/twins/twin-c"), headers=bearer, verify=env.sb.ca_file, timeout=10).status_code == 401
    sub = env.sb.endpoints["azure"]["subscription_id"]
    mgmt(env.sb, AuthorizationManagementClient).role_assignments.create(
        env.hub_id,
        str(uuid.uuid4()),
        RoleAssignmentCreateParameters(  # type: ignore[call-arg]
            role_definition_id=f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{DATA_CONTRIBUTOR}",
            principal_id=principal,
            principal_type="ServicePrincipal",
        ),
    )
    ok = requests.get(env.url("/twins/twin-c"), headers=bearer, verify=env.sb.ca_file, timeout=10)
    assert ok.status_code == 200 and ok.json()["properties"]["desired"]["feedback"] == "x"
