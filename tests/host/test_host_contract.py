"""The Durable contract through the local host, over HTTP, with the real SDK on both sides."""

from __future__ import annotations

import logging
import os
import time

import pytest
from host_helpers import KEY, HostClient

from local_host import LocalHost
from local_host.durable import history as h


def _ids(events: list[dict], kind: int, key: str = "EventId") -> list[int]:
    return [e[key] for e in events if e["EventType"] == kind]


def test_walkthrough_sequence_fanout_event_sub_timer_retry(contract_host: tuple[LocalHost, HostClient]) -> None:
    host, client = contract_host
    iid = client.start("Walkthrough", "walk", "walk-1")
    # The fan-out activities finish out of order (delays 0.3, 0.05, 0.15 s); wait until the
    # orchestrator is parked on the external event, then raise it.
    client.wait_history(iid, lambda ev: len(_ids(ev, h.TASK_COMPLETED, "TaskScheduledId")) == 5)
    completions = [e["TaskScheduledId"] for e in host.engine.history(iid) if e["EventType"] == h.TASK_COMPLETED]
    assert completions == [0, 1, 3, 4, 2]
    reply = client.durable("POST", f"instances/{iid}/raiseEvent/Approval", {"ok": True})
    assert reply.status == 202
    status = client.wait(iid)
    assert status["runtimeStatus"] == "Completed", status
    assert status["output"] == {"a": "Hello Tokyo!", "b": "Hello Seattle!", "fan": ["Hello c0!", "Hello c1!",
                                "Hello c2!"], "ev": {"ok": True}, "sub": "sub:Hello 1!", "r": "flaky-ok walk"}
    events = host.engine.history(iid)
    # Task ids exactly as the SDK allocates them (research 1.5): sub-orchestration 5, timer 6,
    # retry attempt 7, retry timer 8, second attempt 9.
    assert _ids(events, h.TASK_SCHEDULED) == [0, 1, 2, 3, 4, 7, 9]
    assert _ids(events, h.SUB_ORCHESTRATION_CREATED) == [5]
    assert _ids(events, h.TIMER_CREATED) == [6, 8]
    assert _ids(events, h.TASK_FAILED, "TaskScheduledId") == [7]
    failed = next(e for e in events if e["EventType"] == h.TASK_FAILED)
    assert failed["Reason"].startswith("Activity function 'Flaky' failed: Result: Failure\nException: ValueError")
    child = client.status(f"{iid}-child")
    assert child.status == 200 and child.json()["output"] == "sub:Hello 1!"


def test_retry_exhausted_waits_for_the_extra_timer(contract_host: tuple[LocalHost, HostClient]) -> None:
    host, client = contract_host
    iid = client.start("RetryExhausted")
    status = client.wait(iid)
    assert status["runtimeStatus"] == "Completed"
    assert status["output"]["caught"].startswith(
        "Activity function 'AlwaysFails' failed: Result: Failure\nException: RuntimeError: always x")
    events = host.engine.history(iid)
    assert _ids(events, h.TASK_SCHEDULED) == [0, 2]
    assert _ids(events, h.TIMER_CREATED) == [1, 3]  # one more timer after the last failed attempt
    assert _ids(events, h.TIMER_FIRED, "TimerId") == [1, 3]


def test_retries_inside_fan_out_keep_ids_in_step(contract_host: tuple[LocalHost, HostClient]) -> None:
    _, client = contract_host
    iid = client.start("RetryInFanOut", "fan")
    status = client.wait(iid)
    assert status["runtimeStatus"] == "Completed", status
    assert status["output"] == ["flaky-ok fan-a", "Hello b!", "flaky-ok fan-c", "Hello after!"]


def test_activity_error_carries_azure_reason(contract_host: tuple[LocalHost, HostClient]) -> None:
    _, client = contract_host
    caught = client.wait(client.start("ActivityError"))
    assert caught["runtimeStatus"] == "Completed"
    assert caught["output"].startswith(
        "Activity function 'AlwaysFails' failed: Result: Failure\nException: RuntimeError: always direct \n ")
    unhandled = client.wait(client.start("Unhandled"))
    assert unhandled["runtimeStatus"] == "Failed"
    assert unhandled["output"].startswith("Orchestrator function 'Unhandled' failed: Activity function "
                                          "'AlwaysFails' failed")


def test_task_any_cancels_the_losing_timer(contract_host: tuple[LocalHost, HostClient]) -> None:
    host, client = contract_host
    started = time.monotonic()
    iid = client.start("TaskAnyTimer")
    status = client.wait(iid, timeout=10)
    assert time.monotonic() - started < 10
    assert status["output"] == {"winner": "activity", "value": "Hello fast!"}
    assert host.engine.store.visible_messages(iid, time.time() + 3600) == []  # the 30 s timer is gone
    events = host.engine.history(iid)
    # task_any([work, timer]): the activity is id 0, the timer id 1; the canceled timer never fires.
    assert _ids(events, h.TIMER_CREATED) == [1] and _ids(events, h.TIMER_FIRED, "TimerId") == []


def test_event_beats_timer(contract_host: tuple[LocalHost, HostClient]) -> None:
    _, client = contract_host
    iid = client.start("WaitEventWithTimeout")
    client.wait(iid, until=lambda s: s["runtimeStatus"] == "Running")
    assert client.durable("POST", f"instances/{iid}/raiseEvent/Go", [1, 2]).status == 202
    assert client.wait(iid, timeout=10)["output"] == {"event": [1, 2]}


def test_continue_as_new_restarts_with_fresh_history(contract_host: tuple[LocalHost, HostClient]) -> None:
    host, client = contract_host
    iid = client.start("Counter", 1)
    status = client.wait(iid)
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == {"n": 4, "double": 8}
    assert status["input"] == "4"
    starts = [e for e in host.engine.history(iid) if e["EventType"] == h.EXECUTION_STARTED]
    assert len(starts) == 1 and starts[0]["Input"] == "4"


def test_entities_call_signal_and_read_state(contract_host: tuple[LocalHost, HostClient]) -> None:
    _, client = contract_host
    status = client.wait(client.start("EntityOrch", "k1"))
    assert status["runtimeStatus"] == "Completed", status
    assert status["output"]["value"] == 8
    assert "entity boom" in status["output"]["error"]
    state = client.durable("GET", "entities/Counter/k1")
    assert state.status == 200 and state.json() == 8
    assert client.durable("POST", "entities/Counter/k1?op=add", "2").status == 202
    deadline = time.monotonic() + 5
    while client.durable("GET", "entities/Counter/k1").json() != 10:
        assert time.monotonic() < deadline, "signal never applied"
        time.sleep(0.05)
    assert client.durable("GET", "entities/Counter/nobody").status == 404


def test_terminate_then_raise_event_is_gone(contract_host: tuple[LocalHost, HostClient]) -> None:
    _, client = contract_host
    iid = client.start("LongWait")
    client.wait(iid, until=lambda s: s["runtimeStatus"] == "Running")
    assert client.durable("POST", f"instances/{iid}/terminate?reason=enough").status == 202
    status = client.wait(iid)
    assert status["runtimeStatus"] == "Terminated" and status["output"] == "enough"
    assert client.durable("POST", f"instances/{iid}/terminate?reason=again").status == 410
    assert client.durable("POST", f"instances/{iid}/raiseEvent/Never", {}).status == 410


def test_raise_event_on_completed_is_410_and_unknown_is_404(contract_host: tuple[LocalHost, HostClient]) -> None:
    _, client = contract_host
    iid = client.start("ActivityError")
    client.wait(iid)
    assert client.durable("POST", f"instances/{iid}/raiseEvent/X", {"a": 1}).status == 410
    assert client.durable("POST", "instances/does-not-exist/raiseEvent/X", {"a": 1}).status == 404
    assert client.durable("GET", "instances/does-not-exist").status == 404


def test_purge_by_id_and_filter(contract_host: tuple[LocalHost, HostClient]) -> None:
    _, client = contract_host
    iid = client.start("ActivityError", instance_id="purge-me")
    client.wait(iid)
    reply = client.durable("DELETE", f"instances/{iid}")
    assert reply.status == 200 and reply.json() == {"instancesDeleted": 1}
    assert client.durable("GET", f"instances/{iid}").status == 404
    assert client.durable("DELETE", f"instances/{iid}").status == 404
    assert client.durable("DELETE", "instances/?runtimeStatus=Completed").status == 400
    for n in range(2):
        client.wait(client.start("ActivityError", instance_id=f"purge-filter-{n}"))
    listed = client.durable("GET", "instances/?instanceIdPrefix=purge-filter-&runtimeStatus=Completed")
    assert sorted(s["instanceId"] for s in listed.json()) == ["purge-filter-0", "purge-filter-1"]
    reply = client.durable("DELETE", "instances/?createdTimeFrom=2000-01-01T00:00:00Z&instanceIdPrefix=purge-filter-")
    assert reply.status == 200 and reply.json() == {"instancesDeleted": 2}


def test_status_codes_and_history_events(contract_host: tuple[LocalHost, HostClient]) -> None:
    _, client = contract_host
    iid = client.start("LongWait")
    running = client.wait(iid, until=lambda s: s["runtimeStatus"] == "Running")
    reply = client.status(iid)
    assert reply.status == 202 and "Location" in reply.headers and running["name"] == "LongWait"
    client.durable("POST", f"instances/{iid}/raiseEvent/Never", {"x": 1})
    client.wait(iid)
    reply = client.status(iid, showHistory="True", showHistoryOutput="True")
    assert reply.status == 200
    kinds = [e["EventType"] for e in reply.json()["historyEvents"]]
    assert kinds == ["ExecutionStarted", "EventRaised", "ExecutionCompleted"]
    assert reply.json()["historyEvents"][1]["Input"] == {"x": 1}


def test_custom_status_limit_fails_the_orchestration(contract_host: tuple[LocalHost, HostClient]) -> None:
    _, client = contract_host
    small = client.wait(client.start("CustomStatus", 100))
    assert small["runtimeStatus"] == "Completed" and small["customStatus"] == {"blob": "x" * 100}
    big = client.wait(client.start("CustomStatus", 9000))  # 9,000 chars is ~18 KB as UTF-16
    assert big["runtimeStatus"] == "Failed"
    assert "exceeds the limit of 16384 bytes" in big["output"]


def test_nondeterminism_is_detected(contract_host: tuple[LocalHost, HostClient]) -> None:
    host, client = contract_host
    iid = client.start("Nondeterministic")
    client.wait_history(iid, lambda ev: any(e["EventType"] == h.TASK_COMPLETED for e in ev))
    os.environ["LOCALHOST_TEST_FLIP"] = "1"
    try:
        client.durable("POST", f"instances/{iid}/raiseEvent/Continue", None)
        status = client.wait(iid)
    finally:
        os.environ.pop("LOCALHOST_TEST_FLIP", None)
    assert status["runtimeStatus"] == "Failed"
    assert "Non-Deterministic workflow detected: A previous execution of this orchestration scheduled an " \
           "activity task with sequence ID 0 and name 'Hello'" in status["output"]
    assert "'AsyncDouble'" in status["output"]


def test_function_auth_level(contract_host: tuple[LocalHost, HostClient]) -> None:
    _, client = contract_host
    assert client.request("GET", "/api/hello/ann").status == 401
    assert client.request("GET", "/api/hello/ann?code=wrong").status == 401
    ok = client.request("GET", f"/api/hello/ann?code={KEY}&x=1")
    assert ok.status == 200 and ok.body == b"hello ann 1"
    header = client.request("GET", "/api/hello/bob", headers={"x-functions-key": KEY})
    assert header.status == 200 and header.body == b"hello bob"
    assert client.request("GET", "/runtime/webhooks/durabletask/instances/x").status == 401
    assert client.request("GET", "/api/nothing-here").status == 404
    assert client.request("POST", f"/api/hello/ann?code={KEY}").status == 405


def test_sdk_client_inside_functions(contract_host: tuple[LocalHost, HostClient]) -> None:
    _, client = contract_host
    iid = client.start("ActivityError")
    client.wait(iid)
    reply = client.request("GET", f"/api/status/{iid}?code={KEY}")
    assert reply.status == 200
    assert reply.json()["runtimeStatus"] == "Completed"


def test_start_unknown_orchestrator_is_400(contract_host: tuple[LocalHost, HostClient]) -> None:
    _, client = contract_host
    reply = client.durable("POST", "orchestrators/NoSuchThing", {"a": 1})
    assert reply.status == 400
    assert "NoSuchThing" in reply.json()["ExceptionMessage"]
    bad = client.request("POST", f"/runtime/webhooks/durabletask/orchestrators/LongWait?code={KEY}",
                         raw=b"{not json")
    assert bad.status == 400


def test_app_settings_reach_functions(contract_host: tuple[LocalHost, HostClient]) -> None:
    _, client = contract_host
    assert client.request("GET", "/api/setting").body == b"from-environ"


def test_sdk_client_rpc_calls(contract_host: tuple[LocalHost, HostClient]) -> None:
    """Every management call goes through the real DurableOrchestrationClient inside a function."""
    _, client = contract_host

    def manage(op: str, iid: str = "", body: object = None) -> object:
        reply = client.request("POST", f"/api/manage/{op}/{iid}".rstrip("/"), body)
        assert reply.status == 200, reply.body
        return reply.json()

    iid = client.start("Stepper", instance_id="sdk-stepper")
    client.wait_history(iid, lambda ev: any(e["EventType"] == h.TASK_COMPLETED for e in ev))
    manage("suspend", iid)
    assert client.status(iid).json()["runtimeStatus"] == "Suspended"
    manage("raise", iid, {"name": "Next", "data": {"go": 1}})
    time.sleep(0.3)
    assert client.status(iid).json()["runtimeStatus"] == "Suspended"  # the event waits in the inbox
    manage("resume", iid)
    assert client.wait(iid)["output"] == ["Hello one!", "Hello two!"]
    status = manage("status", iid)
    assert status["runtimeStatus"] == "Completed"
    assert [e["EventType"] for e in status["historyEvents"]] == [
        "ExecutionStarted", "TaskCompleted", "EventRaised", "TaskCompleted", "ExecutionCompleted"]
    assert status["historyEvents"][1]["FunctionName"] == "Hello"
    assert manage("list", body={"statuses": ["Completed"], "prefix": "sdk-"}) == ["sdk-stepper"]
    assert manage("purge", iid) == 1
    assert client.status(iid).status == 404

    waiting = client.start("LongWait", instance_id="sdk-terminate")
    client.wait(waiting, until=lambda s: s["runtimeStatus"] == "Running")
    manage("terminate", waiting, {"reason": "by sdk"})
    assert client.wait(waiting)["runtimeStatus"] == "Terminated"

    assert manage("entity", "sdk-k") == {"exists": False, "state": None}
    manage("signal", "sdk-k", {"value": 4})
    deadline = time.monotonic() + 5
    while manage("entity", "sdk-k") != {"exists": True, "state": 4}:
        assert time.monotonic() < deadline
        time.sleep(0.05)

    waited = client.request("POST", "/api/manage/wait")
    assert waited.status == 200 and b"Activity function 'AlwaysFails' failed" in waited.body


def test_long_timer_uses_v3_azure_storage_settings(contract_host: tuple[LocalHost, HostClient]) -> None:
    host, client = contract_host
    iid = client.start("LongTimer")
    events = client.wait_history(iid, lambda ev: any(e["EventType"] == h.TIMER_CREATED for e in ev))
    created = next(e for e in events if e["EventType"] == h.TIMER_CREATED)
    started = next(e for e in events if e["EventType"] == h.ORCHESTRATOR_STARTED)
    gap = h.parse_ts(created["FireAt"]) - h.parse_ts(started["Timestamp"])
    assert gap.days == 3 and gap.seconds == 0  # the first 3-day leg of a 10-day timer
    assert client.durable("POST", f"instances/{iid}/terminate?reason=done").status == 202


def test_sub_orchestration_failure_and_retry(contract_host: tuple[LocalHost, HostClient]) -> None:
    _, client = contract_host
    status = client.wait(client.start("ParentOfFailing"))
    assert status["runtimeStatus"] == "Completed", status
    assert status["output"]["error"].startswith("Orchestrator function 'FailingChild' failed: Activity function "
                                                "'AlwaysFails' failed")
    assert status["output"]["retried"] == "sub:Hello 2!"


def test_start_and_wait_with_timeout(contract_host: tuple[LocalHost, HostClient]) -> None:
    _, client = contract_host
    reply = client.durable("POST", "orchestrators/Counter?timeout=10&pollingInterval=1", 3)
    assert reply.status == 200 and reply.json() == {"n": 4, "double": 8}


def test_list_paging_and_bad_queries(contract_host: tuple[LocalHost, HostClient]) -> None:
    _, client = contract_host
    for n in range(3):
        client.wait(client.start("ActivityError", instance_id=f"page-{n}"))
    first = client.durable("GET", "instances/?instanceIdPrefix=page-&top=2")
    assert first.status == 200 and [s["instanceId"] for s in first.json()] == ["page-0", "page-1"]
    token = first.headers["x-ms-continuation-token"]
    rest = client.durable("GET", "instances/?instanceIdPrefix=page-&top=2", headers={"x-ms-continuation-token": token})
    assert [s["instanceId"] for s in rest.json()] == ["page-2"]
    assert client.durable("GET", "instances/?top=many").status == 400
    bad_time = client.durable("GET", "instances/?createdTimeFrom=yesterday")
    assert bad_time.status == 400 and "invalid time yesterday" in bad_time.json()["Message"]
    waiting = client.start("LongWait")
    client.wait(waiting, until=lambda s: s["runtimeStatus"] == "Running")
    assert client.durable("POST", f"instances/{waiting}/raiseEvent/X", {"a": 1},
                          headers={"Content-Type": "text/plain"}).status == 400
    assert client.durable("POST", f"instances/{waiting}/terminate?reason=cleanup").status == 202


def test_early_event_is_warned_about(contract_host: tuple[LocalHost, HostClient],
                                     caplog: pytest.LogCaptureFixture) -> None:
    _, client = contract_host
    iid = client.start("EarlyEvent")
    with caplog.at_level(logging.WARNING, logger="local_host"):
        assert client.durable("POST", f"instances/{iid}/raiseEvent/E", 1).status == 202
        status = client.wait(iid)
    # The SDK's 1.x behaviour (issue #507), reproduced faithfully: the early value answers both waits.
    assert status["output"] == [1, 1]
    assert any("arrived before the orchestration waited for it" in r.getMessage() for r in caplog.records)
