"""Fan-out app for the crash/restart test: each activity appends its index to a log file."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.orchestration_trigger(context_name="context")
def CrashFanOut(context: df.DurableOrchestrationContext):
    n = context.get_input()
    squares = yield context.task_all([context.call_activity("Square", i) for i in range(n)])
    yield context.create_timer(context.current_utc_datetime + timedelta(seconds=1))
    total = yield context.call_activity("Square", sum(squares))
    return {"squares": squares, "total": total}


@app.activity_trigger(input_name="value")
def Square(value: int) -> int:
    time.sleep(float(os.environ.get("SQUARE_DELAY", "0.25")))
    with Path(os.environ["ACTIVITY_LOG"]).open("a") as fh:
        fh.write(f"{value}\n")
    return value * value


@app.orchestration_trigger(context_name="context")
def CrashTimer(context: df.DurableOrchestrationContext):
    fire_at = context.current_utc_datetime + timedelta(seconds=context.get_input())
    yield context.create_timer(fire_at)
    # After the timer, current_utc_datetime is the episode's start, which must not precede fire_at.
    return {"fire_at": fire_at.isoformat(), "woke_at": context.current_utc_datetime.isoformat()}
