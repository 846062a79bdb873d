"""Event-triggered propagation: duplicated, late and reordered `twin.output.changed` events
converge to the latest outputs (level-triggered), also while a deployment runs."""

from __future__ import annotations

import random
import threading
import uuid

from engine_helpers import Engine, http, plan, resource

pytest_plugins = ["engine_helpers"]  # the `engine` fixtures (no conftest: see engine_helpers)

CONSUMERS = ["aws/L2/persister", "azure/L4/updater", "azure/L2/processor"]


def _event(twin: str, version: int) -> dict:
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": f"/twins/{twin}", "type": "twin.output.changed",
            "data": {"output": "ADT_INSTANCE_URL", "version": version, "producer": "azure/L4/adt", "secret": False}}


def test_burst_of_duplicate_and_reordered_events_converges_to_latest(engine: Engine) -> None:
    p = plan("burst", [resource("azure/L4/adt", [], ["ADT_INSTANCE_URL"]), *(resource(c) for c in CONSUMERS)],
             wires=[("ADT_INSTANCE_URL", c, "ADT_INSTANCE_URL") for c in CONSUMERS])
    first = engine.start("deploy_twin", "twin:burst:deploy:1", {"plan": p})
    assert engine.wait(first)["runtimeStatus"] == "Completed"
    engine.wait_idle("burst")

    # The output changes (v2) in a slow deployment while 20 stale, duplicated, shuffled events arrive.
    engine.configure({"resources": {"azure/L4/adt": {"generation": 2, "delay": 1.0}},
                      "default": {"apply_delay": 0.05}})
    second = engine.start("deploy_twin", "twin:burst:deploy:2", {"plan": p})
    events = [_event("burst", v) for v in [1, 2, 1, 3, 2, 1, 1, 2, 3, 3, 1, 2, 2, 1, 3, 1, 2, 3, 1, 2]]
    random.Random(7).shuffle(events)
    url = f"{engine.base}/runtime/webhooks/eventgrid?functionName=twin_events&code={engine.key}"
    replies: list[int] = []

    def send(batch: list[dict]) -> None:
        for e in batch:
            replies.append(http("POST", url, e).status)

    threads = [threading.Thread(target=send, args=(events[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert replies == [200] * 20
    assert engine.wait(second)["runtimeStatus"] == "Completed"
    engine.wait_idle("burst")

    latest = engine.api("GET", "twins/burst").json()["outputs"]["ADT_INSTANCE_URL"]
    assert latest["version"] == 2 and latest["value"].endswith("/g2")
    for consumer in CONSUMERS:
        assert engine.settings(consumer)["ADT_INSTANCE_URL"] == latest["value"], consumer
    propagations = engine.durable("GET", "instances/?instanceIdPrefix=twin:burst:propagate:").json()
    top_level = [s for s in propagations if s["instanceId"].count(":") == 3]
    # Events arriving while the deployment holds the twin start nothing: it may not unlock while a
    # consumer is behind, so it applies the change itself.
    assert len(top_level) < 20
    assert all(s["runtimeStatus"] == "Completed" for s in top_level)
    # Each consumer was written once for v2, however many events arrived.
    writes = [rid for _, rid, *_ in engine.calls("apply-write")]
    assert sorted(writes) == sorted(CONSUMERS * 2)


def test_events_of_other_types_and_malformed_events_start_nothing(engine: Engine) -> None:
    url = f"{engine.base}/runtime/webhooks/eventgrid?functionName=twin_events&code={engine.key}"
    other = {**_event("quiet", 1), "type": "twin.deployment.completed"}
    no_output = {**_event("quiet", 1), "data": {"version": 1}}
    for e in (other, no_output):
        assert http("POST", url, e).status == 200
    assert engine.durable("GET", "instances/?instanceIdPrefix=twin:quiet:").json() == []


def test_event_grid_schema_events_are_understood_too(engine: Engine) -> None:
    p = plan("egs", [resource("azure/L4/adt", [], ["ADT_INSTANCE_URL"]), resource("aws/L2/persister")],
             wires=[("ADT_INSTANCE_URL", "aws/L2/persister", "ADT_INSTANCE_URL")])
    assert engine.wait(engine.start("deploy_twin", "twin:egs:deploy:1", {"plan": p}))["runtimeStatus"] == "Completed"
    engine.wait_idle("egs")

    def propagations() -> list[dict]:
        return [s for s in engine.durable("GET", "instances/?instanceIdPrefix=twin:egs:propagate:").json()
                if s["instanceId"].count(":") == 3]

    before = len(propagations())
    url = f"{engine.base}/runtime/webhooks/eventgrid?functionName=twin_events&code={engine.key}"
    event = {"id": "e1", "eventType": "twin.output.changed", "subject": "/twins/egs", "eventTime": "2026-01-01T00:00:00Z",
             "dataVersion": "1", "data": {"output": "ADT_INSTANCE_URL", "version": 1, "producer": "azure/L4/adt"}}
    assert http("POST", url, [event]).status == 200
    engine.wait_idle("egs")
    started = propagations()
    assert len(started) == before + 1 and all(s["runtimeStatus"] == "Completed" for s in started)
