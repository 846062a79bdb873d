"""The change loop closes by construction: a refresh applies what it recorded without any events
route, and a host that stops (or whose interpreter exits) while orchestrations run leaves them
resumable, never Failed."""

from __future__ import annotations

import json
import time
from typing import Any

from engine_helpers import FAST, KEY, Engine, plan, resource

pytest_plugins = ["engine_helpers"]  # the `engine` fixtures (no conftest: see engine_helpers)


def _wired() -> dict[str, Any]:
    return plan("loop", [resource("azure/L4/adt", [], ["ADT_INSTANCE_URL"]), resource("azure/L0/pusher", ["azure/L4/adt"])],
                wires=[("ADT_INSTANCE_URL", "azure/L0/pusher", "ADT_INSTANCE_URL")])


def test_a_refresh_applies_its_changes_with_no_events_route(engine_factory: Any) -> None:
    # Events reach only the test's recorder: nothing routes twin.output.changed to twin_events.
    engine: Engine = engine_factory(environ={"TWIN_EVENTS_ENDPOINT": ""})
    engine.configure({})
    assert engine.wait(engine.start("deploy_twin", "twin:loop:deploy:1", {"plan": _wired(), "options": FAST}))[
        "runtimeStatus"] == "Completed"
    engine.wait_idle("loop")
    with engine.db() as db:  # the instance is recreated behind the control plane's back: a new URL
        db.execute("UPDATE resources SET outputs = ? WHERE rid = 'azure/L4/adt'",
                   (json.dumps({"ADT_INSTANCE_URL": "https://recreated.example"}),))
    reply = engine.api("POST", "twins/loop/refresh")
    assert reply.status == 202, reply.body
    done = engine.wait(reply.json()["id"])
    assert done["runtimeStatus"] == "Completed", done
    assert done["output"]["changed"] == ["ADT_INSTANCE_URL"]
    assert done["output"]["propagation"]["changed"] == ["azure/L0/pusher"]
    assert engine.settings("azure/L0/pusher")["ADT_INSTANCE_URL"] == "https://recreated.example"
    assert engine.api("GET", "twins/loop").json()["behind"] == []


def test_a_host_whose_pools_are_gone_fails_nothing_and_resumes_after_a_restart(engine_factory: Any) -> None:
    """What a host sees when the interpreter exits under it (`serve` crashing at startup used to
    do that): thread pools refuse new work. That is the host stopping, not the orchestration
    failing: nothing is recorded, and a restarted host finishes the deployment."""
    engine: Engine = engine_factory()
    engine.configure({"default": {"delay": 0.4}})
    chain = plan("resume", [resource("aws/L1/a"), resource("aws/L2/b", ["aws/L1/a"]), resource("aws/L3_hot/c", ["aws/L2/b"])])
    instance = engine.start("deploy_twin", "twin:resume:deploy:1", {"plan": chain, "options": FAST})
    deadline = time.monotonic() + 20
    while not engine.calls("create"):
        assert time.monotonic() < deadline, "the deployment never started"
        time.sleep(0.05)
    host = engine_factory.hosts[0]
    assert host.engine is not None
    host.engine._user_pool.shutdown(wait=False)  # as `concurrent.futures` does at interpreter exit
    host.engine._activity_pool.shutdown(wait=False)
    time.sleep(1.5)  # completions and timers arrive; nothing may be recorded as a failure
    status = engine.status(instance)
    assert status["runtimeStatus"] in ("Running", "Pending"), status
    children = engine.durable("GET", "instances/?instanceIdPrefix=twin:resume:deploy:1:").json()
    assert all(c["runtimeStatus"] != "Failed" for c in children), children
    host.stop()
    engine_factory.hosts.remove(host)

    again: Engine = engine_factory()  # the same state folder: the host restarts
    done = again.wait(instance, timeout=60)
    assert done["runtimeStatus"] == "Completed", done
    assert sorted(rid for _, rid, *_ in again.calls("create")) == ["aws/L1/a", "aws/L2/b", "aws/L3_hot/c"]
    assert KEY  # the restarted host takes the same key
