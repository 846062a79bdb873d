"""Timer triggers: run each timer function on its schedule while the host runs.

Schedules are NCRONTAB expressions with six fields, seconds first (`0 */5 * * * *`), evaluated in
UTC, or a `hh:mm:ss` interval; `%NAME%` is replaced by the app setting NAME, as on Azure.
The function gets the `func.TimerRequest` the worker builds from the host's JSON
(`IsPastDue`, `ScheduleStatus` with `Last`, `Next`, `LastUpdated`).

Like the Functions host: at most one run of a function at a time (an occurrence that comes while
a run is still going is not started in parallel: one catch-up run follows, with `past_due`),
`run_on_startup` runs the function once when the host starts, and a manual run
(`POST /admin/functions/{name}`) waits for a run in progress. Not emulated: the schedule monitor
that persists `Last` across restarts (a restarted host does not run missed occurrences), and
time zones other than UTC (`WEBSITE_TIME_ZONE`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.functions import meta
from azure.functions.timer import TimerRequestConverter
from croniter import croniter

from .app_loader import FunctionRegistry, build_kwargs

log = logging.getLogger("local_host")

_TIMESPAN = re.compile(r"(?:(?P<days>\d+)\.)?(?P<h>\d{1,2}):(?P<m>\d{2}):(?P<s>\d{2})")
_SETTING = re.compile(r"%([^%]+)%")


class ScheduleError(ValueError):
    """A timer schedule that cannot be evaluated; the message says why."""


@dataclass(frozen=True)
class Schedule:
    expression: str
    interval: timedelta | None = None  # set for `hh:mm:ss` schedules, else NCRONTAB

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after `moment` (UTC)."""
        if self.interval is not None:
            return moment + self.interval
        nxt: datetime = croniter(self.expression, moment, second_at_beginning=True).get_next(datetime)
        return nxt


def parse_schedule(raw: str, environ: dict[str, str] | None = None) -> Schedule:
    """An NCRONTAB (6 fields, seconds first) or `[d.]hh:mm:ss` schedule; `%SETTING%` resolved."""
    env = os.environ if environ is None else environ
    text = raw.strip()
    setting = _SETTING.fullmatch(text)
    if setting:
        name = setting.group(1)
        if name not in env:
            raise ScheduleError(f"schedule {raw!r} names the app setting {name}, which is not set")
        text = env[name].strip()
    span = _TIMESPAN.fullmatch(text)
    if span:
        h, m, s = int(span.group("h")), int(span.group("m")), int(span.group("s"))
        if h > 23 or m > 59 or s > 59:
            raise ScheduleError(f"schedule {text!r}: not a valid hh:mm:ss interval")
        interval = timedelta(days=int(span.group("days") or 0), hours=h, minutes=m, seconds=s)
        if interval <= timedelta(0):
            raise ScheduleError(f"schedule {text!r}: the interval must be longer than zero")
        return Schedule(text, interval)
    fields = text.split()
    if len(fields) != 6:
        raise ScheduleError(f"schedule {text!r}: an NCRONTAB expression needs 6 fields "
                            f"(second minute hour day month day-of-week), got {len(fields)}")
    if not croniter.is_valid(text, second_at_beginning=True):
        raise ScheduleError(f"schedule {text!r}: not a valid NCRONTAB expression")
    try:
        Schedule(text).next_after(datetime.now(UTC))
    except Exception as exc:  # croniter accepts some expressions it cannot iterate (e.g. 31 Feb)
        raise ScheduleError(f"schedule {text!r}: has no next occurrence ({exc})") from exc
    return Schedule(text)


@dataclass
class TimerFunction:
    function_name: str
    fn: Callable[..., Any]
    trigger_param: str
    schedule: Schedule
    run_on_startup: bool = False


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment is not None else "0001-01-01T00:00:00+00:00"


@dataclass
class _State:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last: datetime | None = None


class TimerScheduler:
    """One asyncio task per timer function, on the host's loop; synchronous functions run on
    their own thread pool so a long mover never holds up HTTP functions."""

    def __init__(self, registry: FunctionRegistry, app_dir: Path) -> None:
        self.registry = registry
        self.app_dir = app_dir
        self._pool: ThreadPoolExecutor | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._manual: set[asyncio.Task[None]] = set()
        self._state: dict[str, _State] = {}

    @property
    def functions(self) -> dict[str, TimerFunction]:
        return self.registry.timer_functions

    async def start(self) -> None:
        if not self.functions:
            return
        self._pool = ThreadPoolExecutor(max(1, min(4, len(self.functions))), thread_name_prefix="timer-function")
        for name, timer in self.functions.items():
            self._state[name] = _State()
            self._tasks.append(asyncio.create_task(self._loop(timer), name=f"timer:{name}"))

    async def stop(self) -> None:
        """Cancel the schedules; a run in progress finishes (a thread cannot be interrupted)."""
        tasks = self._tasks + list(self._manual)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks, self._manual = [], set()
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.get_running_loop().run_in_executor(None, pool.shutdown, True)

    def run_now(self, name: str) -> None:
        """A manual run (admin API): queued behind a run in progress, never in parallel with it."""
        timer = self.functions[name]
        task = asyncio.create_task(self._run(timer, past_due=False, manual=True), name=f"timer-manual:{name}")
        self._manual.add(task)
        task.add_done_callback(self._manual.discard)

    async def _loop(self, timer: TimerFunction) -> None:
        if timer.run_on_startup:
            await self._run(timer, past_due=False)
        due = timer.schedule.next_after(datetime.now(UTC))
        while True:
            await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
            now = datetime.now(UTC)
            if now < due:  # the loop's clock woke a little early
                continue
            # Past due when an earlier run held this occurrence up by more than a moment.
            await self._run(timer, past_due=(datetime.now(UTC) - due) > timedelta(seconds=1), scheduled=due)
            nxt = timer.schedule.next_after(due)
            if nxt <= datetime.now(UTC):
                # Occurrences missed while the run went on are coalesced into one catch-up run.
                await self._run(timer, past_due=True, scheduled=nxt)
                nxt = timer.schedule.next_after(datetime.now(UTC))
            due = nxt

    async def _run(self, timer: TimerFunction, past_due: bool, scheduled: datetime | None = None,
                   manual: bool = False) -> None:
        state = self._state.setdefault(timer.function_name, _State())
        async with state.lock:
            now = datetime.now(UTC)
            nxt = timer.schedule.next_after(now)
            payload = {"Schedule": {"AdjustForDST": True}, "IsPastDue": past_due,
                       "ScheduleStatus": {"Last": _iso(state.last), "Next": _iso(nxt), "LastUpdated": _iso(now)}}
            request = TimerRequestConverter.decode(meta.Datum(type="json", value=json.dumps(payload)),
                                                   trigger_metadata=None)
            kwargs = build_kwargs(timer.fn, timer.function_name, self.app_dir, {timer.trigger_param: request})
            started = time.perf_counter()
            outcome = "succeeded"
            try:
                if inspect.iscoroutinefunction(timer.fn):
                    await timer.fn(**kwargs)
                else:
                    assert self._pool is not None
                    await asyncio.get_running_loop().run_in_executor(self._pool, lambda: timer.fn(**kwargs))
            except asyncio.CancelledError:
                # The host is stopping: the run itself goes on in its thread until it ends.
                outcome = "cancelled (host stopping)"
                raise
            except Exception as exc:
                # As on Azure: a failed run is logged and the schedule goes on.
                outcome = f"failed: {type(exc).__name__}"
                log.warning("timer %s failed: %s: %s", timer.function_name, type(exc).__name__, exc)
            finally:
                state.last = scheduled or now
                log.info("timer %s %s%s past_due=%s duration_ms=%.1f", timer.function_name, outcome,
                         " (manual)" if manual else "", past_due, (time.perf_counter() - started) * 1000)
