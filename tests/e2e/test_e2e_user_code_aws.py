"""Issue 17 with L2 on AWS: `examples/original-layout` with every layer on AWS, its processors and
event actions from `lambda_functions/`. A processor Lambda per device runs that device's own
code; an event action runs as its own Lambda and feedback goes out through the L2
`event-feedback`; changing one device's processor and deploying again makes exactly one write,
the `UpdateFunctionCode` of that device's processor Lambda."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_kit import Deployment, deployment, mutating_calls
from test_e2e_original_layout import now_iso, project_copy, stored, wait_for

from shared.bundle import load_bundle_folder
from shared.naming import AwsNaming

pytestmark = pytest.mark.slow
ALL_AWS = {slot: "aws" for slot in (
    "layer_1_provider", "layer_2_provider", "layer_3_hot_provider", "layer_3_cold_provider",
    "layer_3_archive_provider", "layer_4_provider", "layer_5_provider")}


def publish(d: Deployment, reading: dict[str, Any]) -> None:
    d.aws_client("iot-data").publish(topic=AwsNaming(d.twin).iot_topic(), qos=1, payload=json.dumps(reading).encode())


def feedback_messages(topic: str) -> list[dict[str, Any]]:
    """What reached the device's MQTT topic (moto's iot-data backend runs in this process)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.iotdata.models import iotdata_backends

    out = []
    for backend in iotdata_backends[DEFAULT_ACCOUNT_ID].values():
        out += [json.loads(payload) for t, payload in backend.published_payloads if t == topic]
    return out


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return project_copy(tmp_path_factory.mktemp("all-aws-project"), ALL_AWS)


@pytest.fixture(scope="module")
def d(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    spec = load_bundle_folder(project).spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    with deployment(spec, tmp_path_factory.mktemp("all-aws"), deploy=False, with_blob=True, spec_file=project) as dep:
        dep.view = dep.deploy_bundle(project)
        assert dep.view["runtimeStatus"] == "Completed", json.dumps(dep.view)[:3000]
        dep.idle()
        yield dep


def test_each_devices_lambda_runs_its_own_processor_and_actions_run_as_lambdas(d: Deployment) -> None:
    mark = d.seq()
    topic = AwsNaming(d.twin).feedback_topic("temperature-sensor-1")
    before = len(feedback_messages(topic))
    stamp = now_iso()
    publish(d, {"iotDeviceId": "temperature-sensor-1", "time": stamp, "temperature": 28.5})
    item = wait_for("the reading in DynamoDB", lambda: stored(d, "temperature-sensor-1", stamp), d, mark)
    assert float(item["temperature"]["N"]) == pytest.approx(30.0)
    messages = wait_for("the feedback", lambda: feedback_messages(topic)[before:], d, mark)
    assert [m["payload"] for m in messages] == ["High Temp Warning"]
    action = AwsNaming(d.twin).event_action("high-temperature-callback")
    invoked = [r for r in d.requests(mark) if f"/functions/{action}/invocations" in r["url"]]
    assert invoked and all(r["status"] < 300 for r in invoked), invoked


def test_changing_one_processor_makes_exactly_one_write(d: Deployment, project: Path) -> None:
    d.idle()
    calibration = project / "lambda_functions" / "processors" / "temperature-sensor-1" / "calibration.py"
    calibration.write_text(calibration.read_text().replace("OFFSET_C = 1.5", "OFFSET_C = 2.5"))
    mark = d.seq()
    view = d.deploy_bundle(project)
    assert view["runtimeStatus"] == "Completed", json.dumps(view)[:3000]
    d.idle()
    calls = d.requests(mark, mutating="true")
    twin_writes = [r for r in calls if not (r["cloud"] == "blob" and "/twin-bundles/" in r["url"])]
    processor = AwsNaming(d.twin).function("temperature-sensor-1-processor")
    assert len(twin_writes) == 1, mutating_calls(twin_writes)
    [write] = twin_writes
    assert write["method"] == "PUT" and f"/functions/{processor}/code" in write["url"], mutating_calls(twin_writes)
    mark = d.seq()
    stamp = now_iso()
    publish(d, {"iotDeviceId": "temperature-sensor-1", "time": stamp, "temperature": 20.0})
    item = wait_for("the reading in DynamoDB", lambda: stored(d, "temperature-sensor-1", stamp), d, mark)
    assert float(item["temperature"]["N"]) == pytest.approx(22.5)
