"""Users' code inside a deployed package: finding it and calling it.

A package that carries users' code (`payload_functions.packaging.user_code_files`) has a
generated `user_code/__init__.py` whose tables name each entry as (package, module, function):
`PROCESSORS` by device id, `ACTIONS` by the spec's function name. Each user folder is a package
of its own under `user_code/`, so its modules import each other relatively and two folders never
shadow each other. Nothing is imported until it is called (an import error in a user's module
fails that device's readings, not the whole app), and a failure of the user's code is reported
as theirs (`[USER_LOGIC_ERROR]`, 422: retrying would fail the same way), never as ours.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from payload_functions.common.errors import PayloadError

log = logging.getLogger("payload_functions")

USER_CODE_PACKAGE = "user_code"
PROCESSORS_TABLE = "PROCESSORS"
ACTIONS_TABLE = "ACTIONS"
Entry = tuple[str, str, str]
"""(package, module, function), e.g. ("user_code.c0123456789abcdef", "process", "process")."""


class UserCodeError(PayloadError):
    """The user's code raised or returned something unusable."""

    def __init__(self, message: str) -> None:
        super().__init__(422, f"[USER_LOGIC_ERROR] {message}")


def _table(name: str) -> Mapping[str, Entry]:
    try:
        module = importlib.import_module(USER_CODE_PACKAGE)
    except ModuleNotFoundError as exc:
        if exc.name == USER_CODE_PACKAGE:
            return {}  # this package carries no users' code
        raise
    table = getattr(module, name, None)
    if not isinstance(table, Mapping):
        raise PayloadError(500, f"[SYSTEM_ERROR] {USER_CODE_PACKAGE}/__init__.py has no {name} table")
    return table


def _load(entry: Entry, what: str) -> Callable[..., Any]:
    package, module, function = entry
    try:
        loaded = importlib.import_module(f"{package}.{module}")
    except Exception as exc:  # the user's module failed while being imported
        raise UserCodeError(f"importing {module}.py of {what} raised {type(exc).__name__}: {exc}") from None
    target = getattr(loaded, function, None)
    if not callable(target):
        raise UserCodeError(f"{module}.py of {what} has no function {function}")
    return target  # type: ignore[no-any-return]


def packaged_processor(device_id: str) -> Callable[[dict[str, Any]], Any] | None:
    """The device's own `process` in this package, or None (the default: pass through)."""
    entry = _table(PROCESSORS_TABLE).get(device_id)
    if entry is None:
        return None
    return _load(tuple(entry), f"the processor of {device_id}")  # type: ignore[arg-type]


def packaged_actions() -> list[str]:
    """The event actions this package carries, by the spec's function name."""
    return sorted(_table(ACTIONS_TABLE))


def run_action(name: str, event: Any, context: Any = None) -> Any:
    """Run event action `name` (`action(event)`, or the original form `lambda_handler(event,
    context)`) and return what it returns."""
    entry = _table(ACTIONS_TABLE).get(name)
    if entry is None:
        raise PayloadError(404, f"no event action {name[:80]!r} in this package")
    package, module, function = entry
    target = _load((package, module, function), f"event action {name}")
    try:
        result = target(event, context) if function == "lambda_handler" else target(event)
    except Exception as exc:  # the user's code: their error, reported as such
        raise UserCodeError(f"event action {name} raised {type(exc).__name__}: {exc}") from None
    log.info("event action %s ran", name)
    return result


def call_process(fn: Callable[[dict[str, Any]], Any], event: dict[str, Any], device_id: str) -> Mapping[str, Any]:
    """Run a user's `process(event)`; it must return the event (a dict)."""
    try:
        result = fn(event)
    except Exception as exc:  # the user's code: their error, reported as such
        raise UserCodeError(f"process() of {device_id} raised {type(exc).__name__}: {exc}") from None
    if not isinstance(result, Mapping):
        raise UserCodeError(f"process() of {device_id} must return the event as a dict, not {type(result).__name__}")
    return result
