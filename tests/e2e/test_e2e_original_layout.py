"""Issue 17 on `examples/original-layout`, deployed as the original project's folders with its own
code (`deploy FOLDER`) and its own placement: L1 GCP, L2 Azure, hot AWS, cold GCP, archive Azure,
L4 Azure, L5 AWS.

- a reading published to the GCP telemetry topic from temperature-sensor-1 passes through that
  device's own processor (run by the Azure user-functions app): the corrected value is in
  DynamoDB and on the Azure twin;
- it meets an event's condition, so the event action's code runs (user-functions app) and its
  feedback crosses back to GCP, where the token-checked `event-feedback` publishes it to the
  feedback topic: it is in the device's own filtered subscription, and only there;
- changing one device's processor and deploying again writes only the user-functions app: one
  package upload (and that app's own trigger sync and package-hash tag), nothing else.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from e2e_kit import Deployment, deployment, mutating_calls

from shared.bundle import load_bundle_folder
from shared.contracts import PUBSUB_DEVICE_ID_ATTRIBUTE, StorageKey
from shared.naming import AwsNaming, AzureNaming, GcpNaming

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 45.0


def project_copy(tmp: Path, providers: dict[str, str] | None = None) -> Path:
    """A copy of the example (the test changes a processor); `providers` replaces its placement."""
    import shutil

    target = tmp / "original-layout"
    shutil.copytree(ROOT / "examples" / "original-layout", target, ignore=shutil.ignore_patterns("__pycache__"))
    if providers is not None:
        (target / "config_providers.json").write_text(json.dumps(providers, indent=2))
    return target


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return project_copy(tmp_path_factory.mktemp("original-layout-project"))


@pytest.fixture(scope="module")
def d(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    spec = load_bundle_folder(project).spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    with deployment(spec, tmp_path_factory.mktemp("original-layout"), deploy=False, with_blob=True,
                    spec_file=project) as dep:
        dep.view = dep.deploy_bundle(project)
        assert dep.view["runtimeStatus"] == "Completed", json.dumps(dep.view)[:3000]
        dep.idle()
        dep.wait_for_function_hosts()
        yield dep


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _gcp(d: Deployment) -> dict[str, Any]:
    return dict(d.sandbox.endpoints["gcp"])


def publish(d: Deployment, reading: dict[str, Any]) -> None:
    """What a device does on GCP: Pub/Sub Publish to the telemetry topic, its id as the attribute."""
    from google.auth.credentials import AnonymousCredentials
    from google.pubsub_v1.services.publisher import PublisherClient
    from google.pubsub_v1.services.publisher.transports import PublisherRestTransport

    g = _gcp(d)
    client = PublisherClient(transport=PublisherRestTransport(host=g["api_endpoint"],
                                                              credentials=AnonymousCredentials()))
    client.publish(request={"topic": f"projects/{g['project_id']}/topics/{GcpNaming(d.twin).telemetry_topic()}",
                            "messages": [{"data": json.dumps(reading).encode(),
                                          "attributes": {PUBSUB_DEVICE_ID_ATTRIBUTE: reading["iotDeviceId"]}}]})


def feedback_messages(d: Deployment, device: str) -> list[dict[str, Any]]:
    """What reached `device`'s own feedback subscription, pulled (and acknowledged) the way
    `simulate` receives it."""
    from twin_cli.commands.simulate import Endpoints, Gcp

    return [{**m["message"], "attributes": m["attributes"]}
            for m in Gcp(Endpoints(d.sandbox_dir), d.twin).feedback(device)]


def wait_for(what: str, probe: Any, d: Deployment, since: int, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what} after {timeout:g} s:\n{d.diagnose(since)}"
        time.sleep(0.2)


def stored(d: Deployment, device: str, timestamp: str) -> dict[str, Any]:
    out = d.aws_client("dynamodb").get_item(
        TableName=AwsNaming(d.twin).hot_table(), ConsistentRead=True,
        Key={str(StorageKey.PARTITION): {"S": device}, str(StorageKey.SORT): {"S": timestamp}})
    return dict(out.get("Item") or {})


def user_code_logged(d: Deployment, text: str) -> bool:
    return any(text in log.read_text(errors="replace") for log in d.sandbox_dir.glob("**/*.log"))


def test_a_reading_passes_through_its_devices_own_processor_into_storage_and_the_twin(d: Deployment) -> None:
    mark = d.seq()
    stamp = now_iso()
    publish(d, {"iotDeviceId": "temperature-sensor-1", "time": stamp, "temperature": 21.25})
    item = wait_for("the reading in DynamoDB", lambda: stored(d, "temperature-sensor-1", stamp), d, mark)
    # The device's own processor ran: corrected by its calibration module (a relative import).
    assert float(item["temperature"]["N"]) == pytest.approx(22.75)
    assert float(item["rawTemperature"]["N"]) == pytest.approx(21.25)
    assert float(item["calibrationOffset"]["N"]) == pytest.approx(1.5)
    twin = wait_for("the corrected value on the twin",
                    lambda: (t := d.digital_twin("temperature-sensor-1")).get("lastTemperature") == pytest.approx(22.75)
                    and t, d, mark)
    assert twin["lastTemperature"] == pytest.approx(22.75)
    # The processor ran in the user-functions app, called by the L2 processor with its key.
    user_app = AzureNaming(d.twin).function_app("L2-user")
    calls = [r for r in d.requests(mark) if "/api/user-processor" in r["url"]]
    assert calls and all(r["status"] == 200 and user_app in r["url"] for r in calls), calls
    # Another device's own code (pressure-sensor-1: idle density stored as 0).
    stamp2 = now_iso()
    publish(d, {"iotDeviceId": "pressure-sensor-1", "time": stamp2, "pressure": 1001.0, "density": -3.0,
                "hardness": 7.0})
    item = wait_for("pressure-sensor-1's reading", lambda: stored(d, "pressure-sensor-1", stamp2), d, mark)
    assert float(item["density"]["N"]) == 0 and float(item["pressure"]["N"]) == pytest.approx(1001.0)
    # `simulate` sends from GCP and receives the devices' feedback (none for this reading).
    # (Its twin check fails here: the payloads file's density and hardness are not twin properties.)
    report = d.simulate(devices=["pressure-sensor-1"], timeout=3, feedback_wait=0.5)
    assert report["l1"] == "gcp" and all(m["stored_at"] for m in report["messages"]), json.dumps(report)[:2000]
    assert report["feedback"] == {"pressure-sensor-1": []}


def test_a_reading_meeting_a_condition_runs_the_action_and_its_feedback_reaches_the_device_on_gcp(
    d: Deployment,
) -> None:
    for device in ("temperature-sensor-1", "temperature-sensor-2"):
        feedback_messages(d, device)  # nothing left from earlier tests
    mark = d.seq()
    # 28.5 is corrected to 30.0 by the device's processor: `temperature == DOUBLE(30)` holds.
    stamp = now_iso()
    publish(d, {"iotDeviceId": "temperature-sensor-1", "time": stamp, "temperature": 28.5})
    messages = wait_for("the feedback in the device's subscription",
                        lambda: feedback_messages(d, "temperature-sensor-1"), d, mark)
    assert [m["payload"] for m in messages] == ["High Temp Warning"]
    assert messages[0]["iotDeviceId"] == "temperature-sensor-1" and messages[0]["digitalTwinName"] == d.twin
    assert messages[0]["attributes"] == {PUBSUB_DEVICE_ID_ATTRIBUTE: "temperature-sensor-1"}
    # Filtered on the device: another device's subscription got nothing.
    assert feedback_messages(d, "temperature-sensor-2") == []
    calls = d.requests(mark)
    # The action ran in the user-functions app, by name, and its own code logged what it saw.
    actions = [r for r in calls if "/api/event-action" in r["url"]]
    assert [r["status"] for r in actions] == [200], actions
    assert "name=high-temperature-callback" in actions[0]["url"]
    wait_for("the action's own log line", lambda: user_code_logged(d, "high temperature on temperature-sensor-1: 30.0"),
             d, mark)
    # The feedback crossed clouds through the token-checked receiver on L1's cloud (GCP).
    feedback_url = d.view["outputs"]["FEEDBACK_URL"]["value"].split("?")[0].rstrip("/")
    crossings = [r for r in calls if r["method"] == "POST" and r["url"].split("?")[0].rstrip("/") == feedback_url]
    assert [r["status"] for r in crossings] == [200], [r["url"] for r in calls][-40:]
    # A reading that does not meet it runs nothing.
    mark = d.seq()
    stamp = now_iso()
    publish(d, {"iotDeviceId": "temperature-sensor-1", "time": stamp, "temperature": 10.0})
    wait_for("the reading in DynamoDB", lambda: stored(d, "temperature-sensor-1", stamp), d, mark)
    d.idle()
    assert not [r for r in d.requests(mark) if "/api/event-action" in r["url"]]


def test_changing_one_processor_redeploys_only_the_user_functions_app(d: Deployment, project: Path) -> None:
    d.idle()
    process = project / "azure_functions" / "processors" / "temperature-sensor-2" / "process.py"
    process.write_text(process.read_text().replace('event["overRated"] = temperature > RATED_MAX_C',
                                                   'event["overRated"] = temperature > RATED_MAX_C\n'
                                                   '        event["ratedMax"] = RATED_MAX_C'))
    mark = d.seq()
    view = d.deploy_bundle(project)
    assert view["runtimeStatus"] == "Completed", json.dumps(view)[:3000]
    d.idle()
    # The control plane's own writes aside (the new bundle in its store), every write is to the
    # user-functions app: its package, its trigger sync, its package-hash tag.
    calls = d.requests(mark, mutating="true")
    kept = [r for r in calls if r["cloud"] == "blob" and "/twin-bundles/" in r["url"]]
    assert len(kept) == 1, mutating_calls(calls)
    writes = [r for r in calls if r not in kept and "/runtime/webhooks/" not in r["url"]]
    user_app = AzureNaming(d.twin).function_app("L2-user").lower()
    assert writes and all(user_app in r["url"].lower() for r in writes), mutating_calls(writes)
    uploads = [r for r in writes if r["url"].split("?")[0].endswith(("/api/publish", "/api/zipdeploy"))]
    assert len(uploads) == 1, mutating_calls(writes)
    counts = view["summary"]["counts"]
    assert counts.get("updated") == 1 and not counts.get("created"), view["summary"]
    # The new code runs.
    d.wait_for_function_hosts()
    mark = d.seq()
    stamp = now_iso()
    publish(d, {"iotDeviceId": "temperature-sensor-2", "time": stamp, "temperature": 61.0, "maxTemperature": 60.0})
    item = wait_for("temperature-sensor-2's reading", lambda: stored(d, "temperature-sensor-2", stamp), d, mark)
    assert item["overRated"] == {"BOOL": True} and float(item["ratedMax"]["N"]) == pytest.approx(60.0)
