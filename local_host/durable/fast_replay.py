"""Opt-in: memoise the SDK's timestamp parsing (off by default; the default host runs the SDK as is).

The SDK builds every `HistoryEvent` with `dateutil.parser.parse(Timestamp)` on every replay, about
100 us per event, and each episode replays the whole history: a 500-step chain parses ~250,000
timestamps, which is most of its run time (the same cost exists on Azure). `dateutil.parser.parse`
is a pure function of the string and returns immutable datetimes, so caching it cannot change any
result; it only changes how often the work is done. This swaps the name the SDK's HistoryEvent
module calls for a cached wrapper while enabled, and puts the original back when disabled.
"""

from __future__ import annotations

import functools
import importlib
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

_lock = threading.Lock()
_original: Callable[..., datetime] | None = None
_users = 0


def _sdk_module() -> Any:
    # The package re-exports the class under the module's name, so import the module by path.
    return importlib.import_module("azure.durable_functions.models.history.HistoryEvent")


def enable() -> None:
    global _original, _users
    module = _sdk_module()
    with _lock:
        _users += 1
        if _original is not None:
            return
        _original = module.dt_parse
        parse = _original

        @functools.lru_cache(maxsize=200_000)
        def cached(text: str) -> datetime:
            return parse(text)

        def dt_parse(timestr: Any, *args: Any, **kwargs: Any) -> datetime:
            if isinstance(timestr, str) and not args and not kwargs:
                return cached(timestr)
            return parse(timestr, *args, **kwargs)

        module.dt_parse = dt_parse


def disable() -> None:
    global _original, _users
    module = _sdk_module()
    with _lock:
        _users = max(0, _users - 1)
        if _users == 0 and _original is not None:
            module.dt_parse = _original
            _original = None
