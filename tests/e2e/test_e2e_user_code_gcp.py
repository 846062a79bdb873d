"""Issue 17 with L2 on GCP: `examples/original-layout` with L1 to L3 on GCP (L4 and L5 on AWS), its
processors and event action from `cloud_functions/`. Each device has a processor function of its
own running that device's code; the event action runs as its own function, which the GCP event
checker calls with an ID token; feedback is published to the feedback topic and reaches only the
device's own filtered subscription; changing one device's processor and deploying again writes
only that device's function: one package upload, one function update (and the old package's
removal from the functions bucket)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_kit import Deployment, deployment, mutating_calls
from test_e2e_gcp_to_azure import _stored as firestore_document
from test_e2e_original_layout import (
    feedback_messages,
    now_iso,
    project_copy,
    publish,
    user_code_logged,
    wait_for,
)

from shared.bundle import load_bundle_folder
from shared.contracts import Output, keyed_output
from shared.naming import GcpNaming

pytestmark = pytest.mark.slow
GCP_L1_TO_L3 = {
    "layer_1_provider": "gcp", "layer_2_provider": "gcp", "layer_3_hot_provider": "gcp",
    "layer_3_cold_provider": "gcp", "layer_3_archive_provider": "gcp", "layer_4_provider": "aws",
    "layer_5_provider": "aws",
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return project_copy(tmp_path_factory.mktemp("gcp-l2-project"), GCP_L1_TO_L3)


@pytest.fixture(scope="module")
def d(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    spec = load_bundle_folder(project).spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    with deployment(spec, tmp_path_factory.mktemp("gcp-l2"), deploy=False, with_blob=True, spec_file=project) as dep:
        dep.view = dep.deploy_bundle(project)
        assert dep.view["runtimeStatus"] == "Completed", json.dumps(dep.view)[:3000]
        dep.idle()
        yield dep


def _url(d: Deployment, output: str) -> str:
    return str(d.view["outputs"][output]["value"]).rstrip("/")


def _called(d: Deployment, since: int, url: str) -> list[dict[str, object]]:
    return [r for r in d.requests(since) if r["method"] == "POST" and str(r["url"]).split("?")[0].rstrip("/") == url]


def test_each_devices_function_runs_its_own_processor_and_the_action_and_feedback_run_on_gcp(d: Deployment) -> None:
    for device in ("temperature-sensor-1", "temperature-sensor-2"):
        feedback_messages(d, device)
    mark = d.seq()
    stamp = now_iso()
    # 28.5 is corrected to 30.0 by temperature-sensor-1's own processor: the first event fires.
    publish(d, {"iotDeviceId": "temperature-sensor-1", "time": stamp, "temperature": 28.5})
    doc = wait_for("the reading in Firestore", lambda: firestore_document(d, "temperature-sensor-1", stamp), d, mark)
    assert doc["temperature"] == pytest.approx(30.0) and doc["rawTemperature"] == pytest.approx(28.5)
    # It went through that device's function, not another's.
    own = _url(d, keyed_output(Output.PROCESSOR_URL, "temperature-sensor-1"))
    other = _url(d, keyed_output(Output.PROCESSOR_URL, "temperature-sensor-2"))
    assert own != other
    # (A call is logged once answered: after the persister's write it waited for.)
    wait_for("the processor's call", lambda: _called(d, mark, own), d, mark)
    assert [r["status"] for r in _called(d, mark, own)] == [200] and _called(d, mark, other) == []
    # The action's own function ran its code (called by the event checker with an ID token) ...
    action = _url(d, keyed_output(Output.EVENT_ACTION_URL, "high-temperature-callback"))
    wait_for("the action's call", lambda: _called(d, mark, action), d, mark)
    assert [r["status"] for r in _called(d, mark, action)] == [200]
    wait_for("the action's own log line", lambda: user_code_logged(d, "high temperature on temperature-sensor-1: 30.0"),
             d, mark)
    # ... and the feedback reached the device's own subscription, and no other.
    messages = wait_for("the feedback", lambda: feedback_messages(d, "temperature-sensor-1"), d, mark)
    assert [m["payload"] for m in messages] == ["High Temp Warning"]
    assert feedback_messages(d, "temperature-sensor-2") == []


def test_changing_one_processor_redeploys_only_that_devices_function(d: Deployment, project: Path) -> None:
    d.idle()
    calibration = project / "cloud_functions" / "processors" / "temperature-sensor-1" / "calibration.py"
    calibration.write_text(calibration.read_text().replace("OFFSET_C = 1.5", "OFFSET_C = 2.5"))
    mark = d.seq()
    view = d.deploy_bundle(project)
    assert view["runtimeStatus"] == "Completed", json.dumps(view)[:3000]
    d.idle()
    calls = d.requests(mark, mutating="true")
    writes = [r for r in calls if not (r["cloud"] == "blob" and "/twin-bundles/" in r["url"])]
    naming = GcpNaming(d.twin)
    function = naming.device_processor("temperature-sensor-1")
    # One package upload (a multipart upload names the object in its body: the bucket in the URL) ...
    uploads = [r for r in writes if r["method"] == "POST" and "/upload/storage/" in str(r["url"])]
    assert len(uploads) == 1 and f"/b/{naming.functions_bucket()}/o" in str(uploads[0]["url"]), mutating_calls(writes)
    # ... one update of that device's function, and the replaced package's removal: nothing else.
    rest = [r for r in writes if r not in uploads]
    updates = [r for r in rest if r.get("operation") == "cloudfunctions:UpdateFunction"]
    removals = [r for r in rest if r.get("operation") == "storage:objects.delete"]
    assert len(updates) == 1 and len(removals) == 1 and len(rest) == 2, mutating_calls(writes)
    assert all(function in str(r["url"]) for r in rest), mutating_calls(writes)
    counts = view["summary"]["counts"]
    assert counts.get("updated") == 1 and not counts.get("created"), view["summary"]
    mark = d.seq()
    stamp = now_iso()
    publish(d, {"iotDeviceId": "temperature-sensor-1", "time": stamp, "temperature": 20.0})
    doc = wait_for("the reading in Firestore", lambda: firestore_document(d, "temperature-sensor-1", stamp), d, mark)
    assert doc["temperature"] == pytest.approx(22.5)
