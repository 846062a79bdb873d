"""Must-show 2, 5, 6 on `examples/aws-to-azure` (AWS L1-L3, Azure L4-L5): telemetry published to
AWS IoT reaches DynamoDB through the Lambdas, and the AWS persister calls the ADT Pusher (an Azure
Function App) that writes the Azure twin. One sandbox and deployment for the whole module; the
test that breaks the deployment runs last."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_kit import Deployment, deployment, example, failed_messages, http

from shared.contracts import StorageKey, adt_property_name

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deployment(example("aws-to-azure"), tmp_path_factory.mktemp("aws-to-azure")) as dep:
        yield dep


def _stored_item(d: Deployment, device: str, timestamp: str) -> dict[str, Any]:
    out = d.aws_client("dynamodb").get_item(
        TableName=f"{d.twin}-hot-iot-data", ConsistentRead=True,
        Key={str(StorageKey.PARTITION): {"S": device}, str(StorageKey.SORT): {"S": timestamp}})
    return dict(out.get("Item") or {})


def test_aws_persister_pushes_to_the_azure_twin(d: Deployment) -> None:
    assert d.view["runtimeStatus"] == "Completed", json.dumps(d.view)[:3000]
    pusher_url = d.view["outputs"]["ADT_PUSHER_URL"]["value"]
    mark = d.seq()
    report = d.simulate(count=2)
    assert report["exit_code"] == 0 and failed_messages(report) == [], json.dumps(report)[:3000]

    last: dict[str, dict[str, Any]] = {}
    for m in report["messages"]:
        item = _stored_item(d, m["device_id"], m["timestamp"])
        for name, value in m["values"].items():  # the value itself, not only the key, is in hot storage
            assert float(item[name]["N"]) == pytest.approx(value), (m, item)
        last[m["device_id"]] = m["values"]
    for device, values in last.items():
        twin = d.digital_twin(device)
        for name, value in values.items():
            assert twin[adt_property_name(name)] == pytest.approx(value), (device, twin)

    # The twin was written by the ADT Pusher, called from AWS: one push per message, each
    # patching the twin (the log records a call when it is answered, so a push follows its patch).
    calls = d.requests(mark)
    pushes = [r for r in calls if r["method"] == "POST" and r["url"].split("?")[0] == pusher_url.split("?")[0]]
    patches = [r for r in calls if r["method"] == "PATCH" and "/digitaltwins/" in r["url"]]
    assert len(pushes) == len(report["messages"]), [r["url"] for r in calls if r["cloud"] == "azure"][:40]
    assert all(r["status"] == 200 for r in pushes), pushes
    assert patches and all(r["status"] in (200, 204) for r in patches), patches


def test_the_clouds_hold_each_others_wiring(d: Deployment) -> None:
    """Read back through boto3 and the Azure SDK: the AWS persister knows the Pusher's URL and the
    current token, and the Pusher knows the Digital Twins instance's `hostName` URL."""
    from azure.mgmt.digitaltwins import AzureDigitalTwinsManagementClient
    from azure.mgmt.web import WebSiteManagementClient

    from shared.contracts import Setting
    from shared.naming import AwsNaming

    outputs = d.view["outputs"]
    env = d.aws_client("lambda").get_function_configuration(
        FunctionName=AwsNaming(d.twin).function("persister"))["Environment"]["Variables"]
    assert env[Setting.REMOTE_ADT_PUSHER_URL] == outputs["ADT_PUSHER_URL"]["value"]
    token = env[Setting.INTER_CLOUD_TOKEN]
    assert token and token != outputs["INTER_CLOUD_TOKEN"]["value"], "the view redacts the token"

    az = d.azure()
    instance = AzureDigitalTwinsManagementClient(az.cred, az.sub, **az.kw).digital_twins.get(
        az.rg, az.naming.digital_twins())
    web = WebSiteManagementClient(az.cred, az.sub, **az.kw)
    settings = web.web_apps.list_application_settings(az.rg, az.naming.function_app("L0")).properties
    assert settings[Setting.ADT_INSTANCE_URL] == "https://" + str(instance.host_name)
    # Sender and receiver hold the same token (compared without printing it).
    assert hashlib.sha256(settings[Setting.INTER_CLOUD_TOKEN].encode()).digest() == hashlib.sha256(
        token.encode()).digest()


def test_token_rotation_under_continuous_telemetry_loses_nothing_and_refuses_nothing(d: Deployment) -> None:
    from twin_cli.cli import main as cli

    def sender_token() -> str:  # compared by digest: a token never appears in test output
        env = d.aws_client("lambda").get_function_configuration(FunctionName=f"{d.twin}-persister")["Environment"]
        return hashlib.sha256(env["Variables"]["INTER_CLOUD_TOKEN"].encode()).hexdigest()

    old_token = sender_token()
    mark = d.seq()
    reports: list[dict[str, Any]] = []
    stop = threading.Event()
    problems: list[str] = []

    def send_continuously() -> None:
        deadline = time.monotonic() + 120  # bounded even if the rotation hangs
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                reports.append(d.simulate(count=1, devices=["climate-sensor-1"], timeout=20))
            except Exception as exc:  # surfaced by the assertions below
                problems.append(f"{type(exc).__name__}: {exc}")
                return

    sender = threading.Thread(target=send_continuously, name="e2e-sender", daemon=True)
    sender.start()
    try:
        while len(reports) < 2 and sender.is_alive():  # traffic flows before the rotation starts
            time.sleep(0.05)
        before = len(reports)
        code = cli(["rotate-token", d.twin, "--url", d.target.base, "--key", d.target.key, "--grace-seconds", "2"])
        d.idle()
        during = len(reports) - before
        after = len(reports)
        while len(reports) < after + 2 and sender.is_alive():  # and keeps flowing on the new token
            time.sleep(0.05)
    finally:
        stop.set()
        sender.join(timeout=60)
    assert code == 0
    assert not sender.is_alive() and problems == []
    messages = [m for r in reports for m in r["messages"]]
    lost = [m for m in messages if m["errors"] or m["stored_at"] is None or m["twin_at"] is None]
    assert lost == [], json.dumps(lost)[:3000]
    refused = [f"{r['method']} {r['url'].split('?')[0]}" for r in d.requests(mark) if r["status"] == 401]
    assert refused == [], refused[:10]
    assert during >= 1, "no message was sent while the rotation ran"
    assert sender_token() != old_token, "the persister still sends the old token"
    status, twin = d.api("GET", f"twins/{d.twin}")
    assert status == 200 and twin["outputs"]["INTER_CLOUD_TOKEN"]["version"] >= 2, twin


def test_no_secret_value_is_in_durable_history_or_state(d: Deployment) -> None:
    """Secret outputs live in the control plane's Key Vault: Durable's management API (every
    instance of the twin with input, history and history output, and the state entity) holds
    references only. Runs after the rotation, so both tokens and the previous-token phase count."""
    from azure.mgmt.web import WebSiteManagementClient

    from shared.naming import AwsNaming

    env = d.aws_client("lambda").get_function_configuration(
        FunctionName=AwsNaming(d.twin).function("persister"))["Environment"]["Variables"]
    az = d.azure()
    settings = WebSiteManagementClient(az.cred, az.sub, **az.kw).web_apps.list_application_settings(
        az.rg, az.naming.function_app("L0")).properties
    secrets = {"the inter-cloud token": env["INTER_CLOUD_TOKEN"],
               "the storage connection string": settings.get("AzureWebJobsStorage") or settings.get("AZURE_STORAGE_CONNECTION_STRING")}
    secrets = {what: value for what, value in secrets.items() if value and len(value) >= 16}
    assert "the inter-cloud token" in secrets

    base = f"{d.target.base}/runtime/webhooks/durabletask"
    status, instances = http("GET", f"{base}/instances/?instanceIdPrefix=twin:{d.twin}:&showInput=true&code={d.target.key}")
    assert status == 200 and instances, instances
    documents = [json.dumps(instances)]
    for inst in instances:
        status, full = http("GET", f"{base}/instances/{inst['instanceId']}?showHistory=true&showHistoryOutput=true"
                                   f"&showInput=true&code={d.target.key}")
        assert status == 200, full
        documents.append(json.dumps(full))
    status, entity = http("GET", f"{base}/entities/twin_state/{d.twin}?code={d.target.key}")
    assert status == 200, entity
    documents.append(json.dumps(entity))
    leaks = [what for what, value in secrets.items() for doc in documents if value in doc]
    assert leaks == [], sorted(set(leaks))
    assert "keyvault:" in json.dumps(entity), "secret outputs are recorded as Key Vault references"


def test_a_failed_adt_push_keeps_the_message_stored_and_reports_the_failure(d: Deployment) -> None:
    """Runs last: it deletes the Digital Twins instance the ADT Pusher writes to."""
    from azure.mgmt.digitaltwins import AzureDigitalTwinsManagementClient

    az = d.azure()
    mgmt = AzureDigitalTwinsManagementClient(az.cred, az.sub, **az.kw)
    mgmt.digital_twins.begin_delete(az.rg, az.naming.digital_twins()).result()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.123Z", time.gmtime())
    reading = {"iotDeviceId": "climate-sensor-1", "time": stamp, "temperature": 99.5, "humidity": 12.0}
    mark = d.seq()
    # The processor hands readings to the persister; invoke it the same way and read its result.
    answer = d.aws_client("lambda").invoke(FunctionName=f"{d.twin}-persister", Payload=json.dumps(reading).encode())
    result = json.loads(answer["Payload"].read())
    assert answer.get("FunctionError"), result
    message = str(result.get("errorMessage"))
    assert f"climate-sensor-1@{stamp} is stored, but the twin update failed" in message, result
    assert "InstanceNotFound" in message, result
    item = _stored_item(d, "climate-sensor-1", stamp)
    assert float(item["temperature"]["N"]) == 99.5, item
    # Only calls to the Pusher itself: the ARM watch's refresh after the delete also POSTs under
    # `/sites/` (listing the L0 app's keys and settings), which succeeds. A push of an earlier
    # test's reading that was in flight during the delete may still be logged after the mark (a
    # call is logged when it ends), so this reading's push is the refused one, not every push.
    pushes = [r for r in d.requests(mark) if r["method"] == "POST" and r["url"].split("?")[0].endswith("/api/adt-pusher")]
    assert any(r["status"] >= 400 for r in pushes), [(r["url"], r["status"]) for r in pushes]
