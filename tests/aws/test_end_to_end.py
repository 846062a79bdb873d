"""End to end on AWS: a telemetry message published to the twin's IoT topic runs the deployed
Lambdas (IoT rule -> dispatcher -> processor -> persister, the sandbox runs their zips) and
lands in the hot table under `device_id` + `timestamp`; the hot reader answers it through its
Function URL only with the inter-cloud token."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from activities.providers.aws._common import client

WAIT_SECONDS = 30.0


@pytest.mark.slow
def test_telemetry_reaches_hot_storage_and_the_reader(walker: Any) -> None:
    w = walker("aws-to-azure", options={"use_event_checking": False, "return_feedback_to_device": False})
    w.ensure_all(upto="aws/L1/iot-rule")
    w.ensure_all(upto="aws/L2/processor-climate-sensor-1")
    w.ensure_all(upto="aws/L2/persister")
    w.ensure_all(upto="aws/L0/hot-reader")
    topic = f"{w.twin}/iot-data"
    reading = {"iotDeviceId": "climate-sensor-1", "time": "2026-11-22T01:00:00Z", "temperature": 21.5}
    endpoint = w.outputs["aws/L1/iot-rule"]["IOT_ENDPOINT"]
    assert endpoint
    client("iot-data").publish(topic=topic, qos=1, payload=json.dumps(reading).encode())
    table = f"{w.twin}-hot-iot-data"
    deadline = time.monotonic() + WAIT_SECONDS
    items: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        items = client("dynamodb").scan(TableName=table).get("Items", [])
        if items:
            break
        time.sleep(0.2)
    assert len(items) == 1, "the reading never reached the hot table"
    assert items[0]["device_id"] == {"S": "climate-sensor-1"}
    assert items[0]["timestamp"]["S"].startswith("2026-11-22T01:00:00")
    url = w.outputs["aws/L0/hot-reader"]["HOT_READER_URL"]
    token = w.outputs["control/setup/inter-cloud-token"]["INTER_CLOUD_TOKEN"]
    query = {"entityId": "climate-sensor-1", "componentName": "climate-sensor-1", "selectedProperties": ["temperature"],
             "startTime": "2026-11-22T00:00:00Z", "endTime": "2026-11-22T02:00:00Z",
             "properties": {"temperature": {"definition": {"dataType": {"type": "DOUBLE"}}}},
             "device_id": "climate-sensor-1"}
    assert _post(url, query, "wrong-token")[0] == 401
    status, body = _post(url, query, token)
    assert status == 200, body
    assert "21.5" in json.dumps(body)
    w.delete_all(upto="aws/L0/hot-reader")
    w.delete_all(upto="aws/L2/persister")
    w.delete_all(upto="aws/L2/processor-climate-sensor-1")
    w.delete_all(upto="aws/L1/iot-rule")


def _post(url: str, body: Any, token: str) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "X-Inter-Cloud-Token": token})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, raw.decode("utf-8", "replace")
