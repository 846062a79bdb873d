"""`event-feedback` end to end: AWS publishes through `iot-data` to moto, Azure PATCHes the device
twin's desired properties on the sandbox IoT Hub; and the event checkers' calls match its input."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
import boto3
import pytest
import requests
from aiohttp import web
from moto.core import DEFAULT_ACCOUNT_ID
from moto.iotdata.models import iotdata_backends
from payload_helpers import REGION, ThreadedServer, function_url_event

import sandbox.iothub as iothub
from payload_functions.aws import event_checker as aws_event_checker
from payload_functions.aws import event_feedback as aws_feedback
from payload_functions.aws.runtime import InvocationFailed
from payload_functions.azure import event_checker as azure_event_checker
from payload_functions.azure import event_feedback as azure_feedback
from payload_functions.common.envelope import build_envelope
from payload_functions.common.errors import BadRequest
from payload_functions.core.events import feedback_for, feedback_request, parse_feedback
from sandbox.core.auth import SandboxCredential
from sandbox.server import Sandbox
from shared.contracts import (
    FEEDBACK_DESIRED_PROPERTY,
    INTER_CLOUD_TOKEN_HEADER,
    IOT_HUB_SERVICE_API_VERSION,
    Function,
    Setting,
)
from shared.naming import AwsNaming, AzureNaming

Client = Callable[[str], Any]
FAKE_IOT_ENDPOINT = "a1b2c3d4e5f6g7-ats.iot.eu-central-1.amazonaws.com"
RULE = {"condition": "room-1.s1.temperature > DOUBLE(30)",
        "action": {"type": "function", "functionName": "alert",
                   "feedback": {"type": "mqtt", "iotDeviceId": "s1", "payload": "open the vents"}}}
HOT = {"iotDeviceId": "s1", "time": "2025-01-01T00:00:00Z", "temperature": 31}


# --- the contract between the event checker and event-feedback ---------------------------------


def test_checker_request_is_what_feedback_parses() -> None:
    reading = {"device_id": "s1", "timestamp": "2025-01-01T00:00:00Z"}
    request = feedback_for(RULE, reading, "twin-a")
    assert request == {"detail": {"digitalTwinName": "twin-a", "iotDeviceId": "s1", "payload": "open the vents"}}
    parsed = parse_feedback(request, "twin-a")
    assert (parsed.twin, parsed.device_id, parsed.payload) == ("twin-a", "s1", "open the vents")
    # No device named: the reading's own device gets it.
    bare = {"action": {"type": "function", "feedback": {"type": "mqtt", "payload": {"valve": 1}}}}
    assert parse_feedback(feedback_for(bare, {"device_id": "s9"}, "twin-a"), "twin-a").device_id == "s9"
    assert feedback_for({"action": {"type": "function"}}, reading, "twin-a") is None


@pytest.mark.parametrize(("body", "path"), [
    (None, "body.detail"),
    ({"iotDeviceId": "s1", "payload": "x"}, "body.detail"),
    ({"detail": "s1"}, "body.detail"),
    (feedback_request("twin-a", None, "x"), "body.detail.iotDeviceId"),
    (feedback_request("twin-a", "", "x"), "body.detail.iotDeviceId"),
    (feedback_request("twin-a", "s1/#", "x"), "body.detail.iotDeviceId"),
    (feedback_request("twin-a", "s1", None), "body.detail.payload"),
    (feedback_request("twin-a", "s1", ""), "body.detail.payload"),
    (feedback_request("twin-a", "s1", "x" * 20000), "body.detail.payload"),
    (feedback_request("other-twin", "s1", "x"), "body.detail.digitalTwinName"),
])
def test_bad_feedback_input_is_a_400_naming_the_field(body: Any, path: str) -> None:
    with pytest.raises(BadRequest) as err:
        parse_feedback(body, "twin-a")
    assert err.value.status == 400 and err.value.message.startswith(path + ":"), err.value.message


# --- AWS: iot-data publish against moto --------------------------------------------------------


def _published(topic: str) -> list[dict[str, Any]]:
    """What moto's iot-data backend recorded for `topic` (the server runs in this process)."""
    backend = iotdata_backends[DEFAULT_ACCOUNT_ID][REGION]
    return [json.loads(payload) for t, payload in backend.published_payloads if t == topic]


@pytest.fixture
def iot_endpoint(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(str(Setting.IOT_ENDPOINT), FAKE_IOT_ENDPOINT)
    return FAKE_IOT_ENDPOINT


def test_aws_feedback_publishes_to_the_device_topic(
    set_twin: Callable[..., Any], aws: Client, iot_endpoint: str, twin_name: str,
) -> None:
    set_twin()
    topic = AwsNaming(twin_name).feedback_topic("s1")
    assert topic == f"{twin_name}/feedback/s1"
    out = aws_feedback.handler(feedback_request(twin_name, "s1", "open the vents"))
    assert out["published"] == topic and out["qos"] == 1 and out["iotDeviceId"] == "s1"
    messages = _published(topic)
    assert messages == [{"digitalTwinName": twin_name, "iotDeviceId": "s1", "payload": "open the vents",
                         "sentAt": out["sentAt"]}]
    # JSON payloads travel as JSON.
    aws_feedback.handler(feedback_request(twin_name, "s1", {"valve": "open", "percent": 40}))
    assert _published(topic)[-1]["payload"] == {"valve": "open", "percent": 40}


def test_aws_feedback_refuses_bad_input_and_missing_endpoint(
    set_twin: Callable[..., Any], aws: Client, twin_name: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_twin()
    with pytest.raises(InvocationFailed, match="IOT_ENDPOINT is not configured"):
        aws_feedback.handler(feedback_request(twin_name, "s1", "x"))
    monkeypatch.setenv(str(Setting.IOT_ENDPOINT), FAKE_IOT_ENDPOINT)
    with pytest.raises(InvocationFailed, match=r"body\.detail\.iotDeviceId: required"):
        aws_feedback.handler({"detail": {"payload": "x"}})
    with pytest.raises(InvocationFailed, match=r"body\.detail\.payload: required"):
        aws_feedback.handler({"detail": {"iotDeviceId": "s2"}})
    with pytest.raises(InvocationFailed, match="is not a device id"):
        aws_feedback.handler(feedback_request(twin_name, "+", "x"))
    assert _published(AwsNaming(twin_name).feedback_topic("s2")) == []


def test_aws_iot_data_endpoint_is_iot_endpoint_unless_one_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_IOT_DATA_PLANE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    assert aws_feedback.iot_data_client(FAKE_IOT_ENDPOINT).meta.endpoint_url == f"https://{FAKE_IOT_ENDPOINT}"
    assert aws_feedback.iot_data_client("https://other.example").meta.endpoint_url == "https://other.example"
    # The standard endpoint settings win (the sandbox routes every AWS call that way).
    monkeypatch.setenv("AWS_ENDPOINT_URL_IOT_DATA_PLANE", "http://127.0.0.1:9")
    assert aws_feedback.iot_data_client(FAKE_IOT_ENDPOINT).meta.endpoint_url == "http://127.0.0.1:9"
    monkeypatch.delenv("AWS_ENDPOINT_URL_IOT_DATA_PLANE")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:8")
    assert aws_feedback.iot_data_client(FAKE_IOT_ENDPOINT).meta.endpoint_url == "http://127.0.0.1:8"


@pytest.fixture
def lambda_recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, dict[str, str], Any]]]:
    """A Lambda API endpoint (`AWS_ENDPOINT_URL_LAMBDA`, which boto3 honours) that records each
    Invoke (path, headers, JSON payload) and accepts it as an async invoke does."""
    seen: list[tuple[str, dict[str, str], Any]] = []

    async def invoke(request: web.Request) -> web.Response:
        seen.append((request.match_info["name"], dict(request.headers), json.loads(await request.read())))
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/2015-03-31/functions/{name}/invocations", invoke)
    server = ThreadedServer(app).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", server.url)
    try:
        yield seen
    finally:
        server.stop()


def test_aws_event_checker_invokes_feedback_with_what_it_publishes(
    set_twin: Callable[..., Any], aws: Client, twin_name: str, monkeypatch: pytest.MonkeyPatch,
    lambda_recorder: list[tuple[str, dict[str, str], Any]], iot_endpoint: str,
) -> None:
    set_twin()
    monkeypatch.setenv(str(Setting.EVENT_RULES), json.dumps([RULE]))
    names = AwsNaming(twin_name)
    feedback_lambda = names.function(str(Function.EVENT_FEEDBACK))
    assert aws_event_checker.handler(HOT)["fired"] == [RULE["condition"]]
    assert [name for name, _, _ in lambda_recorder] == [names.event_action("alert")]  # feedback off
    monkeypatch.setenv(str(Setting.USE_FEEDBACK), "true")
    aws_event_checker.handler(HOT)
    calls = [(headers, body) for name, headers, body in lambda_recorder if name == feedback_lambda]
    assert len(calls) == 1 and calls[0][0]["X-Amz-Invocation-Type"] == "Event"
    assert calls[0][1] == feedback_request(twin_name, "s1", "open the vents")
    # The very payload the checker sent, handled by the feedback Lambda, reaches the device topic.
    aws_feedback.handler(calls[0][1])
    assert _published(names.feedback_topic("s1"))[-1]["payload"] == "open the vents"


def test_aws_chain_in_the_sandbox_checker_to_feedback_lambda_to_the_device_topic(
    tmp_path: Path, twin_name: str,
) -> None:
    """The packaged checker and feedback Lambdas run by the sandbox's Lambda runtime (AWS calls
    through its proxy, so `IOT_ENDPOINT` names a host that only exists in the real cloud): a hot
    reading makes the checker invoke the feedback Lambda asynchronously, which publishes to moto."""
    from payload_functions.packaging import LAMBDA_HANDLER, build_lambda_package
    from shared.contracts import DigitalTwinInfo

    sb = Sandbox(tmp_path / "sandbox", with_aws=True, with_blob=False)
    sb.start()
    try:
        e = sb.endpoints["aws"]
        creds = {"endpoint_url": e["endpoint_url"], "region_name": e["region"],
                 "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        role = boto3.client("iam", **creds).create_role(RoleName=f"{twin_name}-role", AssumeRolePolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                    "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
        info = DigitalTwinInfo(twin_name, "DEBUG", 30, 90, {"L1": "aws", "L2": "aws", "L4": "aws"}).to_json()
        names = AwsNaming(twin_name)
        lam = boto3.client("lambda", **creds)
        env = {
            Function.EVENT_CHECKER: {str(Setting.DIGITAL_TWIN_INFO): info, str(Setting.EVENT_RULES): json.dumps([RULE]),
                                     str(Setting.USE_FEEDBACK): "true"},
            Function.EVENT_FEEDBACK: {str(Setting.DIGITAL_TWIN_INFO): info, str(Setting.IOT_ENDPOINT): FAKE_IOT_ENDPOINT},
        }
        for fn, variables in env.items():
            lam.create_function(FunctionName=names.function(str(fn)), Runtime="python3.12", Role=role,
                                Handler=LAMBDA_HANDLER, Code={"ZipFile": build_lambda_package(fn).data},
                                Environment={"Variables": variables})
            lam.get_waiter("function_active_v2").wait(FunctionName=names.function(str(fn)),
                                                      WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
        reading = {"iotDeviceId": "s1", "time": "2025-01-01T00:00:00Z", "temperature": 31}
        answer = lam.invoke(FunctionName=names.function(str(Function.EVENT_CHECKER)), Payload=json.dumps(reading).encode())
        assert "FunctionError" not in answer, answer["Payload"].read()
        assert json.loads(answer["Payload"].read())["fired"] == [RULE["condition"]]
        topic = names.feedback_topic("s1")
        deadline = time.monotonic() + 30
        while not _published(topic) and time.monotonic() < deadline:
            time.sleep(0.1)
        published = _published(topic)
        assert [m["payload"] for m in published] == ["open the vents"]
        assert published[0]["digitalTwinName"] == twin_name and published[0]["iotDeviceId"] == "s1"
    finally:
        sb.stop()


# --- Azure: device twin desired properties on the sandbox IoT Hub ------------------------------


def _sas(host: str, key: str, policy: str) -> str:
    expiry = int(time.time()) + 600
    resource = urllib.parse.quote(host.lower(), safe="")
    sig = base64.b64encode(hmac.new(base64.b64decode(key), f"{resource}\n{expiry}".encode(), hashlib.sha256).digest())
    return f"SharedAccessSignature sr={resource}&sig={urllib.parse.quote(sig.decode(), safe='')}&se={expiry}&skn={policy}"


@dataclass
class Hub:
    sb: Sandbox
    name: str
    host: str
    owner_key: str
    service_key: str

    def connection_string(self, key: str | None = None, policy: str = "service") -> str:
        return f"HostName={self.host};SharedAccessKeyName={policy};SharedAccessKey={key or self.service_key}"

    def register(self, registry_id: str) -> None:
        r = requests.put(f"https://{self.host}/devices/{registry_id}?api-version={IOT_HUB_SERVICE_API_VERSION}",
                         json={"deviceId": registry_id, "authentication": {"type": "sas"}},
                         headers={"Authorization": _sas(self.host, self.owner_key, "iothubowner")},
                         verify=self.sb.ca_file, timeout=10)
        assert r.status_code == 200, r.text

    def twin(self, registry_id: str) -> dict[str, Any]:
        doc = iothub.device_twin(self.sb.ctx, self.name, registry_id)
        assert doc is not None
        return doc


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    from azure.mgmt.iothub import IotHubClient
    from azure.mgmt.iothub.models import IotHubDescription, IotHubSkuInfo
    from azure.mgmt.resource.resources import ResourceManagementClient

    sb = Sandbox(Path(tmp_path_factory.mktemp("feedback-sandbox")), with_aws=False, with_blob=False)
    sb.start()
    try:
        e = sb.endpoints["azure"]
        kwargs: dict[str, Any] = {"base_url": e["arm"], "connection_verify": e["ca_file"], "polling_interval": 0}
        credential = SandboxCredential(e["deployer_principal_id"])
        ResourceManagementClient(credential, e["subscription_id"], **kwargs).resource_groups.create_or_update(
            "rg-feedback", {"location": "westeurope"})
        client = IotHubClient(credential, e["subscription_id"], **kwargs)
        name = f"hub-{uuid.uuid4().hex[:8]}"
        created = client.iot_hub_resource.begin_create_or_update(
            "rg-feedback", name, IotHubDescription(location="westeurope", sku=IotHubSkuInfo(name="S1", capacity=1))
        ).result()
        keys = {k: client.iot_hub_resource.get_keys_for_key_name("rg-feedback", name, k).primary_key
                for k in ("iothubowner", "service")}
        yield Hub(sb, name, created.properties.host_name, keys["iothubowner"], keys["service"])
    finally:
        sb.stop()


@pytest.fixture
def azure_feedback_env(hub: Hub, set_twin: Callable[..., Any], twin_name: str,
                       monkeypatch: pytest.MonkeyPatch) -> str:
    """Twin on Azure, device `s1` registered as `{twin}-s1`, the service connection string set."""
    set_twin(default="azure")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", hub.sb.ca_file)
    monkeypatch.setenv(str(Setting.IOT_HUB_SERVICE_CONNECTION_STRING), hub.connection_string())
    monkeypatch.setenv(str(Setting.INTER_CLOUD_TOKEN), FEEDBACK_TOKEN)
    registry_id = AzureNaming(twin_name).iot_device("s1")
    hub.register(registry_id)
    return registry_id


FEEDBACK_TOKEN = "feedback-token-" + "x" * 24


def _call(body: Any, token: str | None = FEEDBACK_TOKEN) -> tuple[int, dict[str, Any]]:
    """`event-feedback` over HTTP, as an event checker on another cloud calls it (token, envelope or not)."""
    app = func.FunctionApp()
    app.register_functions(azure_feedback.bp)
    (fn,) = [f for f in app.get_functions() if f.get_function_name() == str(Function.EVENT_FEEDBACK)]
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {INTER_CLOUD_TOKEN_HEADER: token} if token is not None else {}
    res = fn.get_user_function()(func.HttpRequest("POST", "/api/event-feedback", body=raw, headers=headers))
    return res.status_code, json.loads(res.get_body())


def test_azure_feedback_over_http_needs_the_token_and_takes_the_envelope(
    hub: Hub, azure_feedback_env: str, twin_name: str,
) -> None:
    registry_id = azure_feedback_env
    for token in (None, "wrong"):
        status, out = _call(feedback_request(twin_name, "s1", "x"), token=token)
        assert status == 401 and "X-Inter-Cloud-Token" in out["error"]
    assert hub.twin(registry_id)["properties"]["desired"]["$version"] == 1
    wrapped = build_envelope(feedback_request(twin_name, "s1", "from aws"), "aws", "L1", message_type="feedback")
    status, out = _call(wrapped)
    assert status == 200, out
    assert hub.twin(registry_id)["properties"]["desired"][FEEDBACK_DESIRED_PROPERTY]["payload"] == "from aws"


def test_azure_feedback_writes_the_device_twin_desired_property(
    hub: Hub, azure_feedback_env: str, twin_name: str,
) -> None:
    registry_id = azure_feedback_env
    status, out = _call(feedback_request(twin_name, "s1", "open the vents"))
    assert status == 200, out
    assert out["registryId"] == registry_id and out["desiredVersion"] == 2 and out["delivered"] == "device-twin"
    desired = hub.twin(registry_id)["properties"]["desired"]
    assert desired[FEEDBACK_DESIRED_PROPERTY] == {"digitalTwinName": twin_name, "iotDeviceId": "s1",
                                                  "payload": "open the vents", "sentAt": out["sentAt"]}
    # A later feedback replaces the whole value (no stale keys from an older object payload).
    _call(feedback_request(twin_name, "s1", {"valve": "open"}))
    status, out = _call(feedback_request(twin_name, "s1", "close"))
    desired = hub.twin(registry_id)["properties"]["desired"]
    assert status == 200 and desired["$version"] == 4 and desired[FEEDBACK_DESIRED_PROPERTY]["payload"] == "close"


def test_azure_event_checker_delivers_feedback_in_process(
    hub: Hub, azure_feedback_env: str, twin_name: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry_id = azure_feedback_env
    monkeypatch.setenv(str(Setting.EVENT_RULES), json.dumps([RULE]))
    off = azure_event_checker.check_reading(HOT)
    assert off["fired"] == [RULE["condition"]] and "feedback" not in off
    assert hub.twin(registry_id)["properties"]["desired"]["$version"] == 1
    monkeypatch.setenv(str(Setting.USE_FEEDBACK), "true")
    on = azure_event_checker.check_reading(HOT)
    assert [f["registryId"] for f in on["feedback"]] == [registry_id]
    assert hub.twin(registry_id)["properties"]["desired"][FEEDBACK_DESIRED_PROPERTY]["payload"] == "open the vents"
    cool = azure_event_checker.check_reading({**HOT, "temperature": 20})
    assert cool["fired"] == [] and hub.twin(registry_id)["properties"]["desired"]["$version"] == 2


def test_azure_feedback_errors_are_clear_and_never_show_the_key(
    hub: Hub, azure_feedback_env: str, twin_name: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry_id = azure_feedback_env
    status, out = _call({"detail": {"payload": "x"}})
    assert status == 400 and out["error"].startswith("body.detail.iotDeviceId: required")
    status, out = _call(feedback_request(twin_name, "s1", None))
    assert status == 400 and out["error"].startswith("body.detail.payload: required")
    status, out = _call(b"{not json")
    assert status == 400 and out["error"].startswith("body: not valid JSON")
    # A device the hub does not know: the hub's 404 becomes a 502 naming the device.
    status, out = _call(feedback_request(twin_name, "ghost", "x"))
    assert status == 502 and AzureNaming(twin_name).iot_device("ghost") in out["error"]
    assert "not registered" in out["error"]
    # A wrong key: refused by the hub; neither key appears in the answer.
    wrong = base64.b64encode(b"w" * 32).decode()
    monkeypatch.setenv(str(Setting.IOT_HUB_SERVICE_CONNECTION_STRING), hub.connection_string(wrong))
    status, out = _call(feedback_request(twin_name, "s1", "x"))
    assert status == 502 and "refused the service policy 'service'" in out["error"]
    assert wrong not in json.dumps(out) and hub.service_key not in json.dumps(out)
    # A malformed setting: 500 naming the setting, not its value.
    monkeypatch.setenv(str(Setting.IOT_HUB_SERVICE_CONNECTION_STRING), f"HostName={hub.host};SharedAccessKey=%%%")
    status, out = _call(feedback_request(twin_name, "s1", "x"))
    assert status == 500 and "IOT_HUB_SERVICE_CONNECTION_STRING is invalid" in out["error"]
    assert "SharedAccessKeyName" in out["error"] and "%%%" not in out["error"]
    monkeypatch.delenv(str(Setting.IOT_HUB_SERVICE_CONNECTION_STRING))
    status, out = _call(feedback_request(twin_name, "s1", "x"))
    assert status == 500 and out["error"] == "setting IOT_HUB_SERVICE_CONNECTION_STRING is not configured"
    assert hub.twin(registry_id)["properties"]["desired"]["$version"] == 1


def test_service_sas_token_is_what_the_hub_verifies(hub: Hub) -> None:
    from sandbox.iothub.models import parse_sas, verify_sas

    connection = azure_feedback.ServiceConnection.parse(hub.connection_string())
    token = parse_sas(connection.sas_token(ttl=60))
    assert token.key_name == "service" and int(token.expiry) <= time.time() + 61
    verify_sas(token, [hub.service_key], f"{hub.host}/twins/x".lower())
    expired = parse_sas(connection.sas_token(ttl=60, now=time.time() - 120))
    with pytest.raises(iothub.IotHubError, match="expired"):
        verify_sas(expired, [hub.service_key], f"{hub.host}/twins/x".lower())


def test_azure_l2_app_deployed_in_the_sandbox_delivers_feedback_to_the_twin(hub: Hub, twin_name: str) -> None:
    """The generated L2 package (event-checker + event-feedback), zip-deployed through Kudu and
    run by the sandbox's Function App host with its app settings: a hot reading posted to the
    checker ends up in the device twin's desired properties."""
    from azure.core import PipelineClient
    from azure.core.pipeline.policies import BearerTokenCredentialPolicy, RetryPolicy
    from azure.core.rest import HttpRequest
    from azure.mgmt.web import WebSiteManagementClient
    from azure.mgmt.web.models import AppServicePlan, NameValuePair, Site, SiteConfig, SkuDescription

    from payload_functions.packaging import build_azure_app_package
    from shared.contracts import DigitalTwinInfo

    sb = hub.sb
    e = sb.endpoints["azure"]
    credential = SandboxCredential(e["deployer_principal_id"])
    web_client = WebSiteManagementClient(credential, e["subscription_id"], base_url=e["arm"],
                                         connection_verify=e["ca_file"], polling_interval=0)
    name = f"{twin_name}-l2-functions"
    plan = web_client.app_service_plans.begin_create_or_update(
        "rg-feedback", f"{name}-plan", AppServicePlan(location="westeurope", kind="functionapp", reserved=True,
                                                      sku=SkuDescription(name="EP1", tier="ElasticPremium"))).result()
    info = DigitalTwinInfo(twin_name, "DEBUG", 30, 90, {"L1": "azure", "L2": "azure", "L4": "azure"}).to_json()
    settings = {"FUNCTIONS_WORKER_RUNTIME": "python", str(Setting.DIGITAL_TWIN_INFO): info,
                str(Setting.EVENT_RULES): json.dumps([RULE]), str(Setting.USE_FEEDBACK): "true",
                str(Setting.IOT_HUB_SERVICE_CONNECTION_STRING): hub.connection_string(),
                str(Setting.INTER_CLOUD_TOKEN): FEEDBACK_TOKEN}
    site = web_client.web_apps.begin_create_or_update("rg-feedback", name, Site(
        location="westeurope", kind="functionapp,linux", reserved=True, server_farm_id=plan.id,
        site_config=SiteConfig(linux_fx_version="Python|3.11",
                               app_settings=[NameValuePair(name=k, value=v) for k, v in settings.items()]))).result()
    scm = "https://" + next(s.name for s in site.host_name_ssl_states if s.host_type == "Repository")
    kudu: Any = PipelineClient(scm, policies=[RetryPolicy(), BearerTokenCredentialPolicy(
        credential, "https://management.azure.com/.default")], connection_verify=sb.ca_file)
    package = build_azure_app_package(name, [Function.EVENT_CHECKER, Function.EVENT_FEEDBACK])
    started = kudu.send_request(HttpRequest("POST", f"{scm}/api/zipdeploy", params={"isAsync": "true"},
                                            content=package.data, headers={"Content-Type": "application/zip"}))
    assert started.status_code == 202, started.text()
    deadline = time.monotonic() + 30
    while not kudu.send_request(HttpRequest("GET", started.headers["Location"])).json().get("complete"):
        assert time.monotonic() < deadline, "the Kudu deployment did not complete in 30 s"
        time.sleep(0.05)
    sb.function_apps.wait_running(name)
    # The sandbox host checks the master key (FUNCTIONS_HOST_KEY), not the default function key.
    key = web_client.web_apps.list_host_keys("rg-feedback", name).master_key
    registry_id = AzureNaming(twin_name).iot_device("s1")
    hub.register(registry_id)

    def post(function: Function, body: Any) -> requests.Response:
        return requests.post(f"https://{site.default_host_name}/api/{function}", json=body, timeout=30,
                             headers={"x-functions-key": key, INTER_CLOUD_TOKEN_HEADER: FEEDBACK_TOKEN},
                             verify=sb.ca_file)

    checked = post(Function.EVENT_CHECKER, HOT)
    assert checked.status_code == 200, checked.text
    assert [f["registryId"] for f in checked.json()["feedback"]] == [registry_id]
    desired = hub.twin(registry_id)["properties"]["desired"]
    assert desired[FEEDBACK_DESIRED_PROPERTY]["payload"] == "open the vents" and desired["$version"] == 2
    direct = post(Function.EVENT_FEEDBACK, feedback_request(twin_name, "s1", {"valve": "closed"}))
    assert direct.status_code == 200 and direct.json()["desiredVersion"] == 3
    assert hub.twin(registry_id)["properties"]["desired"][FEEDBACK_DESIRED_PROPERTY]["payload"] == {"valve": "closed"}
    refused = post(Function.EVENT_FEEDBACK, {"detail": {"iotDeviceId": "s1"}})
    assert refused.status_code == 400 and refused.json()["error"].startswith("body.detail.payload")
    web_client.web_apps.delete("rg-feedback", name)


# --- feedback across clouds: the event checker on L2, event-feedback on L1's cloud --------------


def test_aws_feedback_receiver_takes_a_remote_checkers_call_with_the_token_only(
    set_twin: Callable[..., Any], aws: Client, iot_endpoint: str, twin_name: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """L1 on AWS, L2 on Azure: the Azure checker POSTs to this Lambda's Function URL."""
    set_twin(L2="azure")
    monkeypatch.setenv(str(Setting.INTER_CLOUD_TOKEN), FEEDBACK_TOKEN)
    topic = AwsNaming(twin_name).feedback_topic("s1")
    body = json.dumps(build_envelope(feedback_request(twin_name, "s1", "vent"), "azure", "L1", message_type="feedback"))
    for headers in ({}, {INTER_CLOUD_TOKEN_HEADER: "wrong"}):
        refused = aws_feedback.handler(function_url_event("/", headers, body.encode()))
        assert refused["statusCode"] == 401
    assert _published(topic) == []
    sent = aws_feedback.handler(function_url_event("/", {INTER_CLOUD_TOKEN_HEADER: FEEDBACK_TOKEN}, body.encode()))
    assert sent["statusCode"] == 200, sent
    assert [m["payload"] for m in _published(topic)] == ["vent"]


def test_checkers_send_feedback_to_l1s_cloud_when_l2_is_elsewhere(
    set_twin: Callable[..., Any], twin_name: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The AWS checker (L1 on Azure) and the Azure checker (L1 on AWS) both POST the request, in
    the envelope, with the token, to REMOTE_FEEDBACK_URL, and invoke no local event-feedback."""
    received: list[tuple[str | None, Any]] = []

    async def feedback(request: web.Request) -> web.Response:
        received.append((request.headers.get(INTER_CLOUD_TOKEN_HEADER), await request.json()))
        return web.json_response({"published": "ok"})

    app = web.Application()
    app.router.add_post("/event-feedback", feedback)
    server = ThreadedServer(app).start()
    try:
        monkeypatch.setenv(str(Setting.REMOTE_FEEDBACK_URL), f"{server.url}/event-feedback")
        monkeypatch.setenv(str(Setting.INTER_CLOUD_TOKEN), FEEDBACK_TOKEN)
        # An action with nothing to start here: only the feedback travels.
        rule = {**RULE, "action": {**RULE["action"], "type": "step_function"}}
        monkeypatch.setenv(str(Setting.EVENT_RULES), json.dumps([rule]))
        monkeypatch.setenv(str(Setting.USE_FEEDBACK), "true")
        set_twin(default="aws", L1="azure")
        aws_event_checker.handler(HOT)
        set_twin(default="azure", L1="aws", L4="aws")
        out = azure_event_checker.check_reading(HOT)
        assert out["feedback"] == [{"published": "ok"}]
    finally:
        server.stop()
    assert [token for token, _ in received] == [FEEDBACK_TOKEN, FEEDBACK_TOKEN]
    for (_, body), source in zip(received, ("aws", "azure"), strict=True):
        assert body["source_cloud"] == source and body["target_layer"] == "L1" and body["message_type"] == "feedback"
        assert parse_feedback(body["payload"], twin_name).payload == "open the vents"
