"""Event checker: evaluate the spec's rules (`A OP B`) for a reading and fire the actions.

Operands are `entity.component.property` (a live value) or typed literals `DOUBLE(30)`,
`INTEGER(5)`, `STRING(x)`. A reference whose entity or component is the reading's device takes
the value from the reading itself; any other reference asks `live_value` (the twin service on
this cloud), and a rule whose value is unknown is skipped, not fired.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from payload_functions.common.settings import InvalidSetting, Settings
from payload_functions.common.telemetry import normalise
from shared.contracts import Setting, Telemetry

_REFERENCE = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)")
_CONSTANT = re.compile(r"(DOUBLE|INTEGER|STRING)\((.*)\)", re.DOTALL)
_OPERATORS = ("==", "<", ">")


@dataclass(frozen=True)
class Ref:
    entity: str
    component: str
    property: str


def _operand(text: str) -> Ref | float | int | str:
    text = text.strip()
    ref = _REFERENCE.fullmatch(text)
    if ref:
        return Ref(*ref.groups())
    const = _CONSTANT.fullmatch(text)
    if not const:
        raise ValueError(f"operand {text!r} is neither entity.component.property nor DOUBLE/INTEGER/STRING(...)")
    kind, raw = const.groups()
    if kind == "DOUBLE":
        return float(raw)
    if kind == "INTEGER":
        return int(raw)
    return raw


def parse(condition: str) -> tuple[Ref | float | int | str, str, Ref | float | int | str]:
    """Split at the one operator outside parentheses (a STRING(...) may contain one)."""
    depth = 0
    for i, ch in enumerate(condition):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0:
            for op in _OPERATORS:
                if condition.startswith(op, i):
                    return _operand(condition[:i]), op, _operand(condition[i + len(op):])
    raise ValueError("expected 'A OP B' with OP one of <, >, ==")


def compare(left: Any, op: str, right: Any) -> bool:
    try:
        if op == "==":
            return bool(left == right)
        if op == "<":
            return bool(left < right)
        return bool(left > right)
    except TypeError:
        return False


def check(
    raw: Any,
    settings: Settings,
    live_value: Callable[[Ref], Any],
    fire: Callable[[Mapping[str, Any], dict[str, Any]], Any],
) -> dict[str, Any]:
    reading = normalise(raw)
    text = settings.optional(Setting.EVENT_RULES)
    try:
        rules = json.loads(text) if text else []
    except ValueError:
        raise InvalidSetting(str(Setting.EVENT_RULES), "not valid JSON") from None
    if not isinstance(rules, list):
        raise InvalidSetting(str(Setting.EVENT_RULES), "expected a JSON list of rules")
    device = reading[Telemetry.DEVICE_ID]
    fired: list[str] = []
    skipped: list[str] = []

    def value(side: Ref | float | int | str) -> Any:
        if not isinstance(side, Ref):
            return side
        if device in (side.entity, side.component) and side.property in reading:
            return reading[side.property]
        return live_value(side)

    for rule in rules:
        condition = rule.get("condition") if isinstance(rule, Mapping) else None
        if not isinstance(condition, str):
            skipped.append(repr(rule)[:80])
            continue
        try:
            left, op, right = parse(condition)
        except ValueError:
            skipped.append(condition)
            continue
        refs = [s for s in (left, right) if isinstance(s, Ref)]
        # Only rules about this reading's device fire on it; others wait for their own device.
        if not any(device in (r.entity, r.component) for r in refs):
            continue
        a, b = value(left), value(right)
        if a is None or b is None:
            skipped.append(condition)
            continue
        if compare(a, op, b):
            fire(rule, reading)
            fired.append(condition)
    return {"fired": fired, "skipped": skipped}
