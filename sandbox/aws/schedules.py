"""EventBridge scheduled rules: rules with a `ScheduleExpression` invoke their Lambda targets.

moto stores rules and targets but never fires them. `Schedules` runs on the AWS proxy's event
loop, looks at moto's rules every `POLL_SECONDS`, and when an enabled rule's next occurrence has
come, invokes each Lambda target asynchronously (`LambdaRunner.invoke_event`: Lambda's two
retries) with the event EventBridge sends (`detail-type` "Scheduled Event", `time` the scheduled
moment), or the target's constant `Input` when it has one.

Expressions: `rate(N minute|minutes|hour|hours|day|days)` (counted from when the sandbox first
saw the rule) and `cron(min hour day-of-month month day-of-week year)` in UTC with AWS's
conventions (`?`, day-of-week 1-7 = SUN-SAT, `#`, `L`); `W` is not supported and reported.
A disabled rule does not fire; a deleted rule stops; a changed expression starts over.
Occurrences missed while the sandbox was not running are not fired afterwards.

`run_now(name)` runs one rule at once (the control endpoint `POST /aws/rules/{name}/run`) and
answers each target's outcome; it makes one attempt (no async retries) so the caller sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from croniter import croniter

from sandbox.aws.protocol import ACCOUNT_ID
from sandbox.runtime.lambdas import LambdaRunner, lookup_function

log = logging.getLogger("sandbox.aws")

POLL_SECONDS = 0.25
_RATE = re.compile(r"rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)")
_CRON = re.compile(r"cron\((.*)\)")
_UNITS = {"minute": 60, "hour": 3600, "day": 86400}
_DOW_NUMBER = re.compile(r"\d+")


class RuleDisabled(Exception):
    """`run_now` of a rule whose state is not ENABLED."""


class ScheduleExpressionError(ValueError):
    """A schedule expression the sandbox cannot evaluate; the message says why."""


@dataclass(frozen=True)
class RuleSchedule:
    expression: str
    period: timedelta | None = None  # rate(...)
    cron: str = ""  # croniter's 5 fields, for cron(...)
    years: frozenset[int] | None = None  # cron(...)'s year field; None for any year

    def next_after(self, moment: datetime, anchor: datetime) -> datetime:
        """The first occurrence strictly after `moment`; rate() counts from `anchor`."""
        if self.period is not None:
            steps = int((moment - anchor) / self.period) + 1
            return anchor + steps * self.period
        it = croniter(self.cron, moment)
        for _ in range(10000):
            nxt: datetime = it.get_next(datetime)
            if self.years is None or nxt.year in self.years:
                return nxt
            if self.years and nxt.year > max(self.years):
                break
        raise ScheduleExpressionError(f"{self.expression}: no future occurrence")


def _years(field: str) -> frozenset[int] | None:
    if field in ("*", "?"):
        return None
    out: set[int] = set()
    for part in field.split(","):
        step = 1
        if "/" in part:
            part, raw_step = part.split("/", 1)
            step = int(raw_step)
        if "-" in part:
            lo, hi = part.split("-", 1)
            out.update(range(int(lo), int(hi) + 1, step))
        else:
            out.add(int(part))
    return frozenset(out)


def _dow(field: str) -> str:
    """AWS day-of-week (1-7 = SUN-SAT, `?`) to croniter's (0-6 = SUN-SAT, `*`)."""
    if field == "?":
        return "*"
    if "#" in field:
        day, nth = field.split("#", 1)
        return f"{_dow(day)}#{nth}"
    if field.endswith("L") and len(field) > 1:
        return f"L{_dow(field[:-1])}"
    return _DOW_NUMBER.sub(lambda m: str(int(m.group(0)) - 1) if 1 <= int(m.group(0)) <= 7 else "x", field)


def parse_expression(expression: str) -> RuleSchedule:
    text = expression.strip()
    rate = _RATE.fullmatch(text)
    if rate:
        count, unit = int(rate.group(1)), rate.group(2)
        if count < 1:
            raise ScheduleExpressionError(f"{expression}: the rate must be at least 1")
        if (count == 1) != (not unit.endswith("s")):
            raise ScheduleExpressionError(f"{expression}: use the singular unit for 1 and the plural otherwise")
        return RuleSchedule(text, period=timedelta(seconds=count * _UNITS[unit.rstrip("s")]))
    cron = _CRON.fullmatch(text)
    if not cron:
        raise ScheduleExpressionError(f"{expression}: expected rate(...) or cron(...)")
    fields = cron.group(1).split()
    if len(fields) != 6:
        raise ScheduleExpressionError(f"{expression}: cron() needs 6 fields (minutes hours day-of-month month "
                                      f"day-of-week year), got {len(fields)}")
    minutes, hours, dom, month, dow, year = fields
    if (dom == "?") == (dow == "?"):
        raise ScheduleExpressionError(f"{expression}: exactly one of day-of-month and day-of-week must be '?'")
    if "W" in dom:
        raise ScheduleExpressionError(f"{expression}: the W (nearest weekday) wildcard is not supported here")
    converted = " ".join([minutes, hours, "*" if dom == "?" else dom, month, _dow(dow)])
    try:
        years = _years(year)
    except ValueError as exc:
        raise ScheduleExpressionError(f"{expression}: invalid year field {year!r}") from exc
    if not croniter.is_valid(converted):
        raise ScheduleExpressionError(f"{expression}: not a valid cron expression")
    schedule = RuleSchedule(text, cron=converted, years=years)
    try:
        schedule.next_after(datetime.now(UTC), datetime.now(UTC))
    except Exception as exc:  # croniter accepts some expressions it cannot iterate
        raise ScheduleExpressionError(f"{expression}: {exc}") from exc
    return schedule


def scheduled_event(rule_arn: str, region: str, moment: datetime) -> dict[str, Any]:
    """The event EventBridge delivers for a scheduled rule."""
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
            "account": ACCOUNT_ID, "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"), "region": region,
            "resources": [rule_arn], "detail": {}}


@dataclass
class _Tracked:
    arn: str
    expression: str
    schedule: RuleSchedule | None
    anchor: datetime
    due: datetime | None


def _rules() -> list[Any]:
    """Every rule moto holds, across regions and event buses."""
    from moto.events.models import events_backends

    out: list[Any] = []
    for account in list(dict.values(events_backends)):
        for backend in list(dict.values(account)):
            for bus in list(backend.event_buses.values()):
                out.extend(list(bus.rules.values()))
    return out


def find_rule(name: str, region: str | None = None) -> Any | None:
    for rule in _rules():
        if (rule.name == name or rule.arn == name) and (region is None or rule.region_name == region):
            return rule
    return None


class Schedules:
    def __init__(self, runner: LambdaRunner) -> None:
        self.runner = runner
        self._tracked: dict[str, _Tracked] = {}
        self._task: asyncio.Task[None] | None = None
        # Why a rule did not fire (bad expression, missing function, unsupported target).
        self.problems: deque[str] = deque(maxlen=500)
        self.fired: deque[dict[str, Any]] = deque(maxlen=1000)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="eventbridge-schedules")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tracked.clear()

    def reset(self) -> None:
        self._tracked.clear()

    async def _loop(self) -> None:
        while True:
            try:
                self.tick(datetime.now(UTC))
            except Exception:  # the schedule loop must outlive one bad rule
                log.exception("EventBridge schedules: tick failed")
            await asyncio.sleep(POLL_SECONDS)

    def _problem(self, text: str) -> None:
        if not self.problems or self.problems[-1] != text:
            log.warning("EventBridge: %s", text)
            self.problems.append(text)

    def tick(self, now: datetime) -> None:
        """Fire every enabled scheduled rule whose occurrence has come (called by the loop)."""
        seen: set[str] = set()
        for rule in _rules():
            expression = getattr(rule, "scheduled_expression", None)
            if not expression or str(rule.state).upper() != "ENABLED":
                continue
            arn = str(rule.arn)
            seen.add(arn)
            tracked = self._tracked.get(arn)
            if tracked is None or tracked.expression != expression:
                tracked = self._track(arn, str(expression), now)
                self._tracked[arn] = tracked
            if tracked.due is None or tracked.schedule is None or now < tracked.due:
                continue
            moment = tracked.due
            tracked.due = tracked.schedule.next_after(max(now, moment), tracked.anchor)
            self._fire(rule, moment)
        for arn in set(self._tracked) - seen:  # deleted or disabled: forget (re-enabling starts over)
            del self._tracked[arn]

    def _track(self, arn: str, expression: str, now: datetime) -> _Tracked:
        try:
            schedule = parse_expression(expression)
        except ScheduleExpressionError as exc:
            self._problem(f"rule {arn}: {exc}")
            return _Tracked(arn, expression, None, now, None)
        return _Tracked(arn, expression, schedule, now, schedule.next_after(now, now))

    def _targets(self, rule: Any, moment: datetime) -> tuple[list[tuple[str, Any, Any]], list[str]]:
        """(target id, Lambda spec, event) for each target that names a function with code, and
        why the others are skipped (also logged)."""
        out: list[tuple[str, Any, Any]] = []
        skipped: list[str] = []
        for target in list(rule.targets):
            target_id, arn = str(target.get("Id")), str(target.get("Arn", ""))
            if ":lambda:" not in arn:
                skipped.append(f"rule {rule.name}: target {target_id} ({arn}) is not a Lambda function; skipped")
                continue
            if target.get("InputPath") or target.get("InputTransformer"):
                skipped.append(f"rule {rule.name}: target {target_id} uses InputPath/InputTransformer, which the "
                              "sandbox does not apply; skipped")
                continue
            spec = lookup_function(str(rule.region_name), arn)
            if spec is None or not spec.code:
                skipped.append(f"rule {rule.name}: target {target_id} names no function with code ({arn})")
                continue
            if target.get("Input") is not None:
                try:
                    event: Any = json.loads(target["Input"])
                except ValueError:
                    skipped.append(f"rule {rule.name}: target {target_id} Input is not JSON; skipped")
                    continue
            else:
                event = scheduled_event(str(rule.arn), str(rule.region_name), moment)
            out.append((target_id, spec, event))
        for text in skipped:
            self._problem(text)
        return out, skipped

    def _fire(self, rule: Any, moment: datetime) -> None:
        for target_id, spec, event in self._targets(rule, moment)[0]:
            request_id = self.runner.invoke_event(spec, event, f"EventBridge {rule.name}")
            self.fired.append({"rule": rule.name, "target": target_id, "function": spec.name,
                               "time": moment.isoformat(), "request_id": request_id})

    async def run_now(self, name: str, region: str | None = None, moment: datetime | None = None) -> dict[str, Any]:
        """Run rule `name` once now (or as at `moment`); each target's outcome. KeyError if unknown."""
        rule = find_rule(name, region)
        if rule is None:
            raise KeyError(name)
        if str(rule.state).upper() != "ENABLED":
            raise RuleDisabled(f"rule {rule.name} is {rule.state}; only enabled rules run")
        when = (moment or datetime.now(UTC)).replace(microsecond=0)
        targets, problems = self._targets(rule, when)
        outcomes: list[dict[str, Any]] = []
        for target_id, spec, event in targets:
            result = await self.runner.invoke(spec, event, f"EventBridge {rule.name} (run now)")
            try:
                payload: Any = json.loads(result.payload) if result.payload else None
            except ValueError:
                payload = result.payload.decode("utf-8", "replace")
            outcomes.append({"target": target_id, "function": spec.name, "request_id": result.request_id,
                             "ok": result.ok, "payload": payload, "duration_ms": round(result.duration_ms, 1)})
        return {"rule": rule.name, "arn": rule.arn, "state": rule.state, "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "invocations": outcomes, "problems": problems}
