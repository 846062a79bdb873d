"""Event Grid delivery to `eventGridTrigger` functions, both schemas, and the validation handshakes."""

from __future__ import annotations

import json
import time
from pathlib import Path

from host_helpers import KEY, HostFactory

EG_PATH = f"/runtime/webhooks/eventgrid?code={KEY}&functionName="


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_event_grid_schema_and_cloudevents(host_factory: HostFactory, tmp_path: Path) -> None:
    log_file = tmp_path / "events.jsonl"
    host, client = host_factory("eventgrid_app", environ={"EVENT_LOG": str(log_file)})
    egs = [{"id": "e1", "eventType": "twin.output.changed", "subject": "/twins/t1", "topic": "/topics/x",
            "eventTime": "2024-01-01T00:00:00Z", "dataVersion": "1", "data": {"name": "ADT_INSTANCE_URL"}},
           {"id": "e2", "eventType": "twin.output.changed", "subject": "/twins/t2",
            "eventTime": "2024-01-01T00:00:01Z", "dataVersion": "1", "data": {"name": "X"}}]
    assert client.request("POST", EG_PATH + "on_event", egs, headers={"aeg-event-type": "Notification"}).status == 200
    cloud = {"specversion": "1.0", "id": "c1", "source": "/twins/t1", "type": "twin.output.changed",
             "time": "2024-01-01T00:00:02Z", "subject": "outputs/ADT_INSTANCE_URL", "data": {"version": 2}}
    assert client.request("POST", EG_PATH + "on_event", cloud,
                          headers={"Content-Type": "application/cloudevents+json"}).status == 200
    batch = [dict(cloud, id="c2"), dict(cloud, id="c3")]
    assert client.request("POST", EG_PATH + "on_event", batch,
                          headers={"Content-Type": "application/cloudevents-batch+json"}).status == 200
    seen = _lines(log_file)
    assert [e["id"] for e in seen] == ["e1", "e2", "c1", "c2", "c3"]
    assert seen[0] == {"schema": "eventgrid", "id": "e1", "type": "twin.output.changed", "subject": "/twins/t1",
                       "topic": "/topics/x", "data": {"name": "ADT_INSTANCE_URL"}}
    assert seen[2] == {"schema": "cloudevents", "id": "c1", "type": "twin.output.changed", "source": "/twins/t1",
                       "subject": "outputs/ADT_INSTANCE_URL", "data": {"version": 2}}


def test_event_grid_handshakes_and_errors(host_factory: HostFactory, tmp_path: Path) -> None:
    host, client = host_factory("eventgrid_app", environ={"EVENT_LOG": str(tmp_path / "e.jsonl")})
    validation = [{"id": "v", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "subject": "",
                   "eventTime": "2024-01-01T00:00:00Z", "data": {"validationCode": "abc-123"}}]
    reply = client.request("POST", EG_PATH + "on_event", validation,
                           headers={"aeg-event-type": "SubscriptionValidation"})
    assert reply.status == 200 and reply.json() == {"validationResponse": "abc-123"}
    options = client.request("OPTIONS", EG_PATH + "on_event", headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
    assert options.status == 200 and options.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"
    assert client.request("POST", "/runtime/webhooks/eventgrid?functionName=on_event", []).status == 401
    assert client.request("POST", EG_PATH + "nope", []).status == 404
    bad = client.request("POST", EG_PATH + "on_event", [{"id": "x"}])
    assert bad.status == 400 and "$[0]" in bad.json()["Message"]
    cloud = {"specversion": "1.0", "id": "c1", "source": "/s", "type": "t"}
    assert client.request("POST", EG_PATH + "broken", cloud).status == 500
    assert not (tmp_path / "e.jsonl").exists()


def test_event_grid_trigger_with_durable_client(host_factory: HostFactory, tmp_path: Path) -> None:
    host, client = host_factory("eventgrid_app", environ={"EVENT_LOG": str(tmp_path / "e.jsonl")})
    cloud = {"specversion": "1.0", "id": "c1", "source": "/twins/t1", "type": "twin.output.changed",
             "subject": "hello"}
    assert client.request("POST", EG_PATH + "start_on_event", cloud).status == 200
    deadline = time.monotonic() + 10
    while True:
        listed = client.durable("GET", "instances/?runtimeStatus=Completed").json()
        if listed:
            break
        assert time.monotonic() < deadline, "orchestration started by the event never completed"
        time.sleep(0.05)
    assert listed[0]["name"] == "Echo" and listed[0]["output"] == "HELLO"
