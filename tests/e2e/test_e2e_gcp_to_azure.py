"""`examples/gcp-to-azure` (GCP L1-L3, Azure L4-L5), deployed by the local control plane into the
sandbox: a message published to the GCP telemetry topic reaches Firestore through the dispatcher,
processor and persister (Cloud Functions calling each other with ID tokens), and the GCP persister
POSTs it to the ADT Pusher (an Azure Function App) with the inter-cloud token, which writes the
Azure twin. Azure's Grafana reads Firestore through the public GCP hot reader. The token rotates
under continuous traffic without a loss, an unchanged redeploy writes nothing, and destroy leaves
nothing on GCP. One sandbox and deployment for the whole module; destroy runs last."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_kit import Deployment, deployment, example, failed_messages, mutating_calls

from shared.contracts import Function, Setting, adt_property_name
from shared.naming import GcpNaming

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deployment(example("gcp-to-azure"), tmp_path_factory.mktemp("gcp-to-azure")) as dep:
        yield dep


def _gcp(d: Deployment) -> dict[str, Any]:
    return dict(d.sandbox.endpoints["gcp"])


def _function(d: Deployment, fn: Function | str) -> Any:
    """A Function by its contract name, or (a str) by its function id (a device's processor)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import functions_v2

    g = _gcp(d)
    client = functions_v2.FunctionServiceClient(transport="rest", credentials=AnonymousCredentials(),
                                                client_options={"api_endpoint": g["api_endpoint"]})
    region = d.spec["clouds"]["gcp"]["region"]
    return client.get_function(name=f"projects/{g['project_id']}/locations/{region}/functions/"
                                    f"{GcpNaming(d.twin).function(str(fn)) if isinstance(fn, Function) else fn}")


def _stored(d: Deployment, device: str, timestamp: str) -> dict[str, Any] | None:
    """The reading's Firestore document, read with the Firestore client over the emulator host."""
    import grpc
    from google.cloud.firestore_v1.services.firestore import FirestoreClient
    from google.cloud.firestore_v1.services.firestore.transports import FirestoreGrpcTransport

    from payload_functions.gcp.firestore_store import document_id

    g, naming = _gcp(d), GcpNaming(d.twin)
    client = FirestoreClient(transport=FirestoreGrpcTransport(channel=grpc.insecure_channel(g["firestore_emulator_host"])))
    database = f"projects/{g['project_id']}/databases/{naming.firestore_database()}"
    name = f"{database}/documents/{naming.hot_collection()}/{document_id(device, timestamp)}"
    for answer in client.batch_get_documents(request={"database": database, "documents": [name]}):
        if "found" in answer:
            fields = answer.found.fields
            return {k: (v.double_value if "double_value" in v else v.string_value) for k, v in fields.items()}
    return None


def _digest(value: str) -> str:  # tokens are compared by digest: a token never appears in test output
    return hashlib.sha256(value.encode()).hexdigest()


def test_gcp_persister_pushes_to_the_azure_twin(d: Deployment) -> None:
    assert d.view["runtimeStatus"] == "Completed", json.dumps(d.view)[:3000]
    pusher_url = d.view["outputs"]["ADT_PUSHER_URL"]["value"]
    mark = d.seq()
    report = d.simulate(count=2)
    assert report["l1"] == "gcp" and report["hot_storage"] == "gcp" and report["twins"] == "azure"
    assert report["exit_code"] == 0 and failed_messages(report) == [], json.dumps(report)[:3000]
    last: dict[str, dict[str, Any]] = {}
    for m in report["messages"]:
        stored = _stored(d, m["device_id"], m["timestamp"])
        assert stored is not None, m
        for name, value in m["values"].items():  # the value itself, not only the key, is in Firestore
            assert stored[name] == pytest.approx(value), (m, stored)
        last[m["device_id"]] = m["values"]
    for device, values in last.items():
        twin = d.digital_twin(device)
        for name, value in values.items():
            assert twin[adt_property_name(name)] == pytest.approx(value), (device, twin)
    # Each message was published once, went through the four functions once each (Eventarc to the
    # dispatcher, then ID-token calls to the processor, persister and event checker), was pushed once.
    calls = d.requests(mark)
    published = [r for r in calls if r.get("operation") == "pubsub:Publish"]
    pushes = [r for r in calls if r["method"] == "POST" and r["url"].split("?")[0] == pusher_url.split("?")[0]]
    assert len(published) == len(report["messages"]) == len(pushes), [r["url"] for r in calls][:60]
    assert all(r["status"] == 200 for r in pushes), pushes
    doors = {_function(d, fn).service_config.uri: str(fn) for fn in (
        Function.DISPATCHER, Function.PERSISTER, Function.EVENT_CHECKER)}
    expected = dict.fromkeys(doors.values(), len(report["messages"]))
    for device in {m["device_id"] for m in report["messages"]}:  # each device's own processor
        door = _function(d, GcpNaming(d.twin).device_processor(device)).service_config.uri
        doors[door] = f"processor of {device}"
        expected[doors[door]] = sum(1 for m in report["messages"] if m["device_id"] == device)
    invoked = [r for r in calls if r.get("operation") == "run:Invoke"]
    assert all(r["status"] == 200 for r in invoked), invoked
    per_function = {fn: sum(1 for r in invoked if r["url"].rstrip("/") == door) for door, fn in doors.items()}
    assert per_function == expected, per_function


def test_the_clouds_hold_each_others_wiring(d: Deployment) -> None:
    """Read back through the Google and Azure SDKs: the GCP persister has the Pusher's URL and the
    current token, and the Azure Grafana datasource reads the GCP hot reader."""
    from azure.mgmt.web import WebSiteManagementClient

    outputs = d.view["outputs"]
    env = dict(_function(d, Function.PERSISTER).service_config.environment_variables)
    assert env[Setting.REMOTE_ADT_PUSHER_URL] == outputs["ADT_PUSHER_URL"]["value"]
    assert outputs["HOT_READER_URL"]["value"] == _function(d, Function.HOT_READER).service_config.uri
    az = d.azure()
    settings = WebSiteManagementClient(az.cred, az.sub, **az.kw).web_apps.list_application_settings(
        az.rg, az.naming.function_app("L0")).properties
    assert _digest(settings[Setting.INTER_CLOUD_TOKEN]) == _digest(env[Setting.INTER_CLOUD_TOKEN])
    reader_env = dict(_function(d, Function.HOT_READER).service_config.environment_variables)
    assert _digest(reader_env[Setting.INTER_CLOUD_TOKEN]) == _digest(env[Setting.INTER_CLOUD_TOKEN])


def test_the_public_hot_reader_answers_a_time_range_from_firestore(d: Deployment) -> None:
    """What a reader on another cloud sends (the TwinMaker dataReader shape), with the token: the
    query needs Firestore's composite index, which the provider created."""
    report = d.simulate(count=1, devices=["soil-probe-1"])
    assert failed_messages(report) == [], report
    sent = report["messages"][0]
    fn = _function(d, Function.HOT_READER)
    token = dict(fn.service_config.environment_variables)[Setting.INTER_CLOUD_TOKEN]
    body = {"componentName": "soil-probe-1", "selectedProperties": ["moisture"],
            "startTime": "2020-01-01T00:00:00Z", "endTime": "2100-01-01T00:00:00Z", "orderByTime": "DESCENDING",
            "properties": {"moisture": {"definition": {"dataType": {"type": "DOUBLE"}}}}}
    req = urllib.request.Request(fn.service_config.uri, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "X-Inter-Cloud-Token": token})
    with urllib.request.urlopen(req, timeout=60) as resp:
        answer = json.loads(resp.read())
    series = answer["propertyValues"][0]["values"]
    assert series[0]["time"] == sent["timestamp"], series[:3]
    assert series[0]["value"]["doubleValue"] == pytest.approx(sent["values"]["moisture"])


def test_token_rotation_under_continuous_telemetry_loses_nothing_and_refuses_nothing(d: Deployment) -> None:
    from twin_cli.cli import main as cli

    def sender_token() -> str:
        return _digest(dict(_function(d, Function.PERSISTER).service_config.environment_variables)[
            Setting.INTER_CLOUD_TOKEN])

    old_token = sender_token()
    mark = d.seq()
    reports: list[dict[str, Any]] = []
    stop = threading.Event()
    problems: list[str] = []

    def send_continuously() -> None:
        deadline = time.monotonic() + 180  # bounded even if the rotation hangs
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                reports.append(d.simulate(count=1, devices=["climate-sensor-1"], timeout=30))
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
        d.idle(timeout=240)
        during = len(reports) - before
        after = len(reports)
        while len(reports) < after + 2 and sender.is_alive():  # and keeps flowing on the new token
            time.sleep(0.05)
    finally:
        stop.set()
        sender.join(timeout=90)
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


def _telemetry_settled(d: Deployment, quiet: float = 1.0, timeout: float = 60) -> None:
    """Until no telemetry call (a function invocation, a push, a twin patch) was answered for
    `quiet` seconds: the request log records a call when it is answered, so the tail of the last
    message sent (the pusher's answer, the functions' answers) may still be arriving."""
    deadline = time.monotonic() + timeout
    while True:
        mark = d.seq()
        time.sleep(quiet)
        traffic = [r for r in d.requests(mark) if r.get("operation") in ("run:Invoke", "pubsub:Publish")
                   or "/api/adt-pusher" in r["url"] or "/digitaltwins/" in r["url"]]
        if not traffic:
            return
        assert time.monotonic() < deadline, f"telemetry still flowing: {traffic[:5]}"


def test_redeploying_the_unchanged_spec_makes_no_mutating_call(d: Deployment) -> None:
    _telemetry_settled(d)
    mark = d.seq()
    view = d.deploy()
    d.idle()
    assert view["runtimeStatus"] == "Completed", json.dumps(view)[:3000]
    assert mutating_calls(d.requests(mark, mutating="true")) == []
    counts = view.get("summary", {}).get("counts", {})
    assert counts.get("created") == 0 and counts.get("updated") == 0 and counts.get("unchanged", 0) > 0, view


def test_destroy_leaves_nothing_on_gcp(d: Deployment) -> None:
    """Runs last: it destroys the module's twin."""
    status, body = d.api("DELETE", f"twins/{d.twin}")
    assert status == 202, body
    done = d.follow(body["id"])
    d.idle()
    assert done["runtimeStatus"] == "Completed", json.dumps(done)[:3000]
    left = {cloud: [r for r in items if d.twin.lower() in json.dumps(r).lower()] for cloud, items in d.resources().items()}
    assert left == {cloud: [] for cloud in left}, json.dumps(left)[:3000]
