"""Timer functions for the host's scheduler tests; each run appends a JSON line to $TIMER_LOG."""

from __future__ import annotations

import json
import os
import threading
import time

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
_lock = threading.Lock()
_running: dict[str, int] = {}


def record(name: str, timer: func.TimerRequest, **extra: object) -> None:
    line = {"name": name, "at": time.time(), "past_due": timer.past_due,
            "status": timer.schedule_status, **extra}
    with _lock, open(os.environ["TIMER_LOG"], "a") as out:
        out.write(json.dumps(line) + "\n")


@app.timer_trigger(schedule="* * * * * *", arg_name="timer")
def every_second(timer: func.TimerRequest) -> None:
    record("every_second", timer)


@app.timer_trigger(schedule="* * * * * *", arg_name="timer")
def slow(timer: func.TimerRequest) -> None:
    with _lock:
        _running["slow"] = _running.get("slow", 0) + 1
        overlapping = _running["slow"] > 1
    try:
        time.sleep(1.6)
        record("slow", timer, overlapping=overlapping)
    finally:
        with _lock:
            _running["slow"] -= 1


@app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer", run_on_startup=True)
def on_startup(timer: func.TimerRequest) -> None:
    record("on_startup", timer)


@app.timer_trigger(schedule="%YEARLY_SCHEDULE%", arg_name="timer")
def from_setting(timer: func.TimerRequest) -> None:
    record("from_setting", timer)


@app.timer_trigger(schedule="0 0 * * *", arg_name="timer")
def five_fields(timer: func.TimerRequest) -> None:
    record("five_fields", timer)


@app.timer_trigger(schedule="0 61 * * * *", arg_name="timer")
def bad_minute(timer: func.TimerRequest) -> None:
    record("bad_minute", timer)


@app.timer_trigger(schedule="* * * * * *", arg_name="timer")
def failing(timer: func.TimerRequest) -> None:
    record("failing", timer)
    raise RuntimeError("a failed run must not stop the schedule")


@app.event_grid_trigger(arg_name="event")
def on_event(event: func.EventGridEvent) -> None:
    with _lock, open(os.environ["TIMER_LOG"], "a") as out:
        out.write(json.dumps({"name": "on_event", "id": event.id, "data": event.get_json()}) + "\n")


@app.route(route="ping", methods=["GET"])
def ping(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("pong")
