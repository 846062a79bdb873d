"""Must-show 4 and 7 on `examples/aws-only`: telemetry published to AWS IoT reaches DynamoDB
through the Lambdas, and AWS IoT TwinMaker reads it back through the hot reader: each device's
component type names the hot reader as its `dataReader`, and invoking that Lambda with the request
TwinMaker sends (GetPropertyValueHistory) returns the stored value. Then a redeploy of the
unchanged spec makes no mutating call and destroy leaves no resource of the twin."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from e2e_kit import Deployment, deployment, example, failed_messages, mutating_calls

from shared.naming import AwsNaming

pytestmark = pytest.mark.slow

DATA_LAYERS = ("setup", "L1", "L2", "L3_hot", "L4")
@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deployment(example("aws-only"), tmp_path_factory.mktemp("aws-only")) as dep:
        yield dep


@pytest.fixture(scope="module")
def report(d: Deployment) -> dict[str, Any]:
    layers = d.view.get("layers", {})
    not_done = {k: v for k, v in layers.items() if k in DATA_LAYERS and v.get("state") != "done"}
    assert layers and not not_done, json.dumps(d.view)[:3000]
    return d.simulate(count=2, timeout=20)


def test_the_deployment_completes(d: Deployment) -> None:
    assert d.view["runtimeStatus"] == "Completed", json.dumps(d.view.get("errors"))[:2000]


def _data_reader_request(d: Deployment, device: str, properties: dict[str, Any]) -> dict[str, Any]:
    """What TwinMaker sends a component type's dataReader for GetPropertyValueHistory."""
    naming = AwsNaming(d.twin)
    now = datetime.now(UTC)
    return {
        "workspaceId": naming.twinmaker_workspace(), "entityId": "greenhouse-1", "componentName": device,
        "componentTypeId": naming.component_type(device), "selectedProperties": list(properties),
        "startTime": (now - timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
        "endTime": (now + timedelta(minutes=5)).isoformat().replace("+00:00", "Z"),
        "properties": {name: {"definition": {"dataType": {"type": "DOUBLE"}}} for name in properties},
        "orderByTime": "ASCENDING",
    }


def test_twinmaker_reads_stored_telemetry_through_the_hot_reader(d: Deployment, report: dict[str, Any]) -> None:
    assert report["hot_storage"] == "aws" and report["twins"] == "aws"
    assert report["exit_code"] == 0 and failed_messages(report) == [], json.dumps(report)[:3000]
    naming = AwsNaming(d.twin)
    twinmaker = d.aws_client("iottwinmaker")
    lam = d.aws_client("lambda")
    for device in {m["device_id"] for m in report["messages"]}:
        sent = [m for m in report["messages"] if m["device_id"] == device]
        ctype = twinmaker.get_component_type(workspaceId=naming.twinmaker_workspace(),
                                             componentTypeId=naming.component_type(device))
        reader_arn = ctype["functions"]["dataReader"]["implementedBy"]["lambda"]["arn"]
        assert reader_arn.endswith(":function:" + reader_arn.rsplit(":", 1)[-1])
        answer = lam.invoke(FunctionName=reader_arn,
                            Payload=json.dumps(_data_reader_request(d, device, sent[0]["values"])).encode())
        body = json.loads(answer["Payload"].read())
        assert "FunctionError" not in answer, body
        got = {v["entityPropertyReference"]["propertyName"]: v["values"] for v in body["propertyValues"]}
        for name in sent[0]["values"]:
            series = {x["time"]: x["value"]["doubleValue"] for x in got[name]}
            for m in sent:  # every message, each at its own timestamp, with the value sent
                assert series.get(m["timestamp"]) == pytest.approx(m["values"][name]), (name, m, series)


def test_redeploying_the_unchanged_spec_makes_no_mutating_call(d: Deployment, report: dict[str, Any]) -> None:
    mark = d.seq()
    view = d.deploy()
    d.idle()
    assert mutating_calls(d.requests(mark, mutating="true")) == []
    counts = view.get("summary", {}).get("counts", {})
    assert counts.get("created") == 0 and counts.get("updated") == 0 and counts.get("unchanged", 0) > 0, view


def test_destroy_leaves_no_resource_of_the_twin(d: Deployment, report: dict[str, Any]) -> None:
    status, body = d.api("DELETE", f"twins/{d.twin}")
    assert status == 202, body
    done = d.follow(body["id"])
    d.idle()
    assert done["runtimeStatus"] == "Completed", json.dumps(done)[:3000]
    left = {cloud: [r for r in items if d.twin in json.dumps(r)] for cloud, items in d.resources().items()}
    assert left == {cloud: [] for cloud in left}, json.dumps(left)[:3000]
