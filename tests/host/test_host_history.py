"""The history/ID rules module on its own: flattening, batching around retries, nondeterminism."""

from __future__ import annotations

from local_host.durable import history as h


def test_flatten_is_depth_first_in_order() -> None:
    actions = [[
        {"actionType": 0, "functionName": "A", "input": "1"},
        {"actionType": 12, "compoundActions": [
            {"actionType": 0, "functionName": "B", "input": "2"},
            {"actionType": 12, "compoundActions": [{"actionType": 1, "functionName": "C", "retryOptions": {}}]},
            {"actionType": 6, "externalEventName": "E"},
        ]},
        {"actionType": 5, "fireAt": "2024-01-01T00:00:00.000000Z", "isCanceled": False},
    ]]
    leaves = [(leaf.action_type, leaf.name) for leaf in h.flatten(actions)]
    assert leaves == [(0, "A"), (0, "B"), (1, "C"), (6, "E"), (5, "")]


def test_split_batch_keeps_one_retry_event_first() -> None:
    retry_tasks = {"0": {}}
    retry_timers = {"3": {}}
    done = h.event(h.TASK_COMPLETED, h.utc_now(), TaskScheduledId=1)
    failed = h.event(h.TASK_FAILED, h.utc_now(), TaskScheduledId=0)
    fired = h.event(h.TIMER_FIRED, h.utc_now(), TimerId=3)
    assert h.split_batch([done, done, failed, done], retry_tasks, retry_timers) == 2
    assert h.split_batch([failed, done, done, fired], retry_tasks, retry_timers) == 3
    assert h.split_batch([fired, failed], retry_tasks, retry_timers) == 1
    assert h.split_batch([], retry_tasks, retry_timers) == 0


def test_check_determinism_wording() -> None:
    recorded = [[0, "Hello", 0], [6, "Approval", None]]
    same = list(h.flatten([[{"actionType": 0, "functionName": "Hello"}, {"actionType": 6,
                                                                          "externalEventName": "Approval"}]]))
    assert h.check_determinism(recorded, same) is None
    assert h.check_determinism(recorded, same[:1]) is None  # stopping earlier is not a schedule mismatch
    changed = list(h.flatten([[{"actionType": 0, "functionName": "Bye"}]]))
    message = h.check_determinism(recorded, changed)
    assert message is not None and message.startswith(
        "Non-Deterministic workflow detected: A previous execution of this orchestration scheduled an activity "
        "task with sequence ID 0 and name 'Hello'")
    timer = list(h.flatten([[{"actionType": 5, "fireAt": "2024-01-01T00:00:00Z"}]]))
    assert "scheduled a timer" in (h.check_determinism(recorded, timer) or "")


def test_out_of_proc_error_parsing() -> None:
    text = 'user bug\n\n$OutOfProcData$:{"isDone": false, "actions": [[]], "error": "user bug"}'
    assert h.parse_out_of_proc(text) == ("user bug", {"isDone": False, "actions": [[]], "error": "user bug"})
    assert h.parse_out_of_proc("plain TypeError") == ("plain TypeError", None)


def test_timestamps_round_trip() -> None:
    moment = h.utc_now()
    assert h.parse_ts(h.fmt_ts(moment)) == moment
    assert h.parse_ts("2024-01-01T00:00:05Z").second == 5
    assert h.parse_ts("2024-01-01T00:00:05.1234567Z").microsecond == 123456
