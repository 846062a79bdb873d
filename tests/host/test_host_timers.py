"""Timer triggers on the local host: schedules (every second), run_on_startup, one run at a time,
invalid schedules reported at load, and the manual-run admin route (`POST /admin/functions/{name}`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from host_helpers import APPS, KEY, HostFactory

from local_host import load_app
from local_host.timers import ScheduleError, parse_schedule

YEARLY = "0 0 0 1 1 *"


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.fixture
def timer_log(tmp_path: Path) -> Path:
    return tmp_path / "timer.log"


def start(host_factory: HostFactory, timer_log: Path) -> Any:
    return host_factory("timers", environ={"TIMER_LOG": str(timer_log), "YEARLY_SCHEDULE": YEARLY})


def test_parse_schedule() -> None:
    every_5_min = parse_schedule("0 */5 * * * *")
    assert every_5_min.next_after(datetime(2026, 1, 1, 0, 3, 7, tzinfo=UTC)) == datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    # The first field is seconds (NCRONTAB), not minutes.
    assert parse_schedule("30 * * * * *").next_after(datetime(2026, 1, 1, tzinfo=UTC)) == \
        datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)
    assert parse_schedule("00:00:10").next_after(datetime(2026, 1, 1, tzinfo=UTC)) == \
        datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)
    assert parse_schedule("%S%", {"S": "0 0 0 * * *"}).expression == "0 0 0 * * *"
    for bad, why in [("0 0 * * *", "6 fields"), ("0 61 * * * *", "not a valid"), ("%MISSING%", "MISSING"),
                     ("00:00:00", "longer than zero"), ("", "6 fields")]:
        with pytest.raises(ScheduleError, match=why):
            parse_schedule(bad, {})


def test_invalid_schedules_reported_at_load_with_the_function_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YEARLY_SCHEDULE", YEARLY)
    registry = load_app(APPS / "timers")
    assert set(registry.timer_errors) == {"five_fields", "bad_minute"}
    assert "6 fields" in registry.timer_errors["five_fields"]
    assert {"every_second", "slow", "on_startup", "from_setting", "failing"} <= set(registry.timer_functions)
    assert registry.timer_functions["on_startup"].run_on_startup is True
    assert registry.timer_functions["from_setting"].schedule.expression == YEARLY
    summary = "\n".join(registry.summary())
    assert "five_fields: timerTrigger; NOT scheduled" in summary and "bad_minute" in summary


def test_setting_schedule_missing_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YEARLY_SCHEDULE", raising=False)
    registry = load_app(APPS / "timers")
    assert "YEARLY_SCHEDULE" in registry.timer_errors["from_setting"]


@pytest.mark.slow
def test_timers_run_on_schedule_one_at_a_time(host_factory: HostFactory, timer_log: Path) -> None:
    host, client = start(host_factory, timer_log)
    started = time.time()
    wait_for(lambda: sum(1 for r in read_log(timer_log) if r["name"] == "slow") >= 2, timeout=8)
    wait_for(lambda: sum(1 for r in read_log(timer_log) if r["name"] == "every_second") >= 3, timeout=8)
    host.stop()
    stopped = time.time()
    records = read_log(timer_log)
    # run_on_startup: once, at start, although its schedule is yearly.
    startup = [r for r in records if r["name"] == "on_startup"]
    assert len(startup) == 1 and startup[0]["at"] - started < 2
    assert startup[0]["past_due"] is False
    assert not [r for r in records if r["name"] in ("from_setting", "five_fields", "bad_minute")]
    ticks = [r for r in records if r["name"] == "every_second"]
    # Once a second, on the second (the scheduler wakes at each whole second).
    gaps = [b["at"] - a["at"] for a, b in zip(ticks, ticks[1:], strict=False)]
    assert all(0.5 < g < 2.5 for g in gaps), gaps  # never twice for one occurrence, none skipped
    # Each run knows the previous occurrence, a whole second (the schedule, not the wake-up time).
    lasts = [datetime.fromisoformat(r["status"]["Last"]) for r in ticks[1:]]
    assert all(t.microsecond == 0 for t in lasts) and lasts == sorted(set(lasts)), lasts
    status = ticks[-1]["status"]
    assert set(status) == {"Last", "Next", "LastUpdated"}
    assert datetime.fromisoformat(status["Next"]) > datetime.fromisoformat(status["LastUpdated"])
    # A run longer than the interval: never two at once, and the next one is past due.
    slow = [r for r in records if r["name"] == "slow"]
    assert not any(r["overlapping"] for r in slow)
    assert any(r["past_due"] for r in slow[1:])
    # A failing timer keeps its schedule.
    assert sum(1 for r in records if r["name"] == "failing") >= 2
    # Stopped means stopped: nothing runs after stop() returned.
    time.sleep(1.2)
    assert all(r["at"] <= stopped for r in read_log(timer_log))


def test_manual_run_of_a_timer(host_factory: HostFactory, timer_log: Path) -> None:
    _, client = start(host_factory, timer_log)
    wait_for(lambda: any(r["name"] == "on_startup" for r in read_log(timer_log)))
    reply = client.request("POST", "/admin/functions/from_setting", {"input": ""}, headers={"x-functions-key": KEY})
    assert reply.status == 202, reply.body
    wait_for(lambda: any(r["name"] == "from_setting" for r in read_log(timer_log)))
    # Names resolve case-insensitively and an empty body is accepted.
    reply = client.request("POST", "/admin/functions/FROM_SETTING", raw=b"", headers={"x-functions-key": KEY})
    assert reply.status == 202
    wait_for(lambda: sum(1 for r in read_log(timer_log) if r["name"] == "from_setting") == 2)
    manual = [r for r in read_log(timer_log) if r["name"] == "from_setting"]
    assert manual[1]["status"]["Last"] != "0001-01-01T00:00:00+00:00"  # it knows the previous run


def test_manual_run_errors(host_factory: HostFactory, timer_log: Path) -> None:
    _, client = start(host_factory, timer_log)
    key = {"x-functions-key": KEY}
    assert client.request("POST", "/admin/functions/from_setting", {"input": ""}).status == 401
    assert client.request("POST", "/admin/functions/from_setting", {"input": ""},
                          headers={"x-functions-key": "wrong"}).status == 401
    assert client.request("POST", "/admin/functions/from_setting?code=" + KEY, {"input": ""}).status == 202
    missing = client.request("POST", "/admin/functions/nope", {"input": ""}, headers=key)
    assert missing.status == 404 and "nope" in missing.json()["Message"]
    broken = client.request("POST", "/admin/functions/bad_minute", {"input": ""}, headers=key)
    assert broken.status == 400 and "bad_minute" in broken.json()["Message"]
    assert client.request("POST", "/admin/functions/ping", {"input": ""}, headers=key).status == 400
    not_object = client.request("POST", "/admin/functions/from_setting", ["x"], headers=key)
    assert not_object.status == 400 and "body" in not_object.json()["Message"]
    assert client.request("POST", "/admin/functions/from_setting", raw=b"{", headers=key).status == 400


def test_manual_run_of_an_event_grid_function(host_factory: HostFactory, timer_log: Path) -> None:
    _, client = start(host_factory, timer_log)
    key = {"x-functions-key": KEY}
    event = {"id": "e1", "eventType": "t", "subject": "s", "eventTime": "2026-01-01T00:00:00Z",
             "data": {"n": 1}, "dataVersion": "1"}
    reply = client.request("POST", "/admin/functions/on_event", {"input": json.dumps(event)}, headers=key)
    assert reply.status == 202, reply.body
    wait_for(lambda: any(r["name"] == "on_event" for r in read_log(timer_log)))
    got = next(r for r in read_log(timer_log) if r["name"] == "on_event")
    assert got == {"name": "on_event", "id": "e1", "data": {"n": 1}}
    bad = client.request("POST", "/admin/functions/on_event", {"input": "{\"id\": \"x\"}"}, headers=key)
    assert bad.status == 400 and "missing" in bad.json()["Message"]
