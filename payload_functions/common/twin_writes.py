"""Per-twin group commit for Digital Twins writes (pure: no SDK, no I/O of its own).

Azure Digital Twins allows 10 create/update/delete operations per second on one twin. A burst of
readings for one device, one patch each, overruns that and, worse, lets whichever patch lands
last win even when it carries an older reading. So, within one process:

- concurrent callers for the same twin MERGE their readings: per property, the newest timestamp
  wins (at equal timestamps the later arrival);
- ONE writer per twin sends one patch for the merged set; the others wait for it;
- the writer PACES its attempts on that twin at least `1 / writes_per_second` apart (default 8/s,
  a margin under ADT's 10/s);
- each caller returns once a write that includes its reading, or a newer value for each of its
  properties, has finished, and gets that write's result, or its error.

No background thread: the caller that finds no writer busy becomes the writer, writes one batch
(which holds its own reading) and, if more readings arrived meanwhile, hands the writer role to
the oldest waiting caller. So every caller does at most one write, and waits at most `max_wait`.

Across processes nothing is shared here: the write function makes the result correct anyway
(compare with the twin's `sourceTime`, conditional write with the twin's ETag).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

from payload_functions.common.errors import BadRequest
from payload_functions.common.telemetry import parse_timestamp

R = TypeVar("R")

DEFAULT_WRITES_PER_SECOND = 8.0
"""Writes per second per twin this process allows itself (ADT refuses more than 10)."""
DEFAULT_MAX_WAIT = 120.0
"""Seconds a caller waits for the write that carries its reading (below the Functions HTTP limit)."""


@dataclass(frozen=True)
class Stamped:
    """One property value with the time it was observed (ISO 8601 text)."""

    value: Any
    timestamp: str


def instant(text: Any) -> str | None:
    """ISO 8601 text -> the canonical UTC timestamp (`common.telemetry`: fixed width, so text order
    is time order); None when it is not ISO 8601 text."""
    if not isinstance(text, str):
        return None
    try:
        return parse_timestamp(text)
    except BadRequest:
        return None


def is_newer(candidate: str, current: Any) -> bool:
    """Whether `candidate` is strictly later than `current` (a missing or unreadable `current`
    loses, so a property without a sourceTime yet takes the first timestamped value)."""
    incoming = instant(candidate)
    existing = instant(current)
    if incoming is None:
        return existing is None
    return existing is None or incoming > existing


def merge(into: dict[str, Stamped], values: Mapping[str, Any], timestamp: str) -> None:
    """Fold one reading into a pending set: per property, the newest timestamp wins."""
    for name, value in values.items():
        held = into.get(name)
        if held is None or not is_newer(held.timestamp, timestamp):
            into[name] = Stamped(value, timestamp)


class WriteTimeout(Exception):
    """The write carrying a reading did not finish within the caller's bound."""


@dataclass
class _Waiter:
    done: bool = False
    lead: bool = False  # handed the writer role
    abandoned: bool = False
    result: Any = None
    error: BaseException | None = None


@dataclass
class _Twin:
    pending: dict[str, Stamped] = field(default_factory=dict)
    waiters: list[_Waiter] = field(default_factory=list)
    writing: bool = False
    next_slot: float = float("-inf")  # earliest start of the next write attempt


WriteFn = Callable[[Mapping[str, Stamped], Callable[[], None]], R]
"""`write(batch, pace)`: write the merged properties; call `pace()` right before every write
attempt (a retry after a conflict counts too). Its return value, or its exception, goes to every
caller whose reading the batch carries."""


class TwinWriteCoalescer(Generic[R]):
    """Group commit per key (e.g. (instance URL, twin id)); thread-safe; one per process."""

    def __init__(
        self,
        writes_per_second: float = DEFAULT_WRITES_PER_SECOND,
        max_wait: float = DEFAULT_MAX_WAIT,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if writes_per_second <= 0:
            raise ValueError("writes_per_second must be positive")
        self.interval = 1.0 / writes_per_second
        self.max_wait = max_wait
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._twins: dict[Hashable, _Twin] = {}

    def submit(self, key: Hashable, values: Mapping[str, Any], timestamp: str, write: WriteFn[R]) -> R:
        """Returns the result of the write that carried this reading (or newer values for all of
        its properties); raises that write's exception, or `WriteTimeout`."""
        me = _Waiter()
        deadline = self._clock() + self.max_wait
        with self._lock:
            twin = self._twins.get(key)
            if twin is None:
                twin = self._twins[key] = _Twin()
            merge(twin.pending, values, timestamp)
            twin.waiters.append(me)
            lead = not twin.writing
            twin.writing = True
            while not lead and not me.done:
                if me.lead:
                    lead = True
                    break
                remaining = deadline - self._clock()
                if remaining <= 0:
                    # Its values stay pending: the writer still sends them, nobody waits for them.
                    me.abandoned = True
                    if me in twin.waiters:
                        twin.waiters.remove(me)
                    raise WriteTimeout(f"no write carried this reading within {self.max_wait:.0f} s")
                self._changed.wait(remaining)
        if lead:
            self._lead(key, twin, me, write)
        if me.error is not None:
            raise me.error
        return cast(R, me.result)

    def _lead(self, key: Hashable, twin: _Twin, me: _Waiter, write: WriteFn[R]) -> None:
        while True:
            with self._lock:
                live = [w for w in twin.waiters if not w.abandoned]
                if not twin.pending and not live:  # (a reading without values still gets its write call)
                    twin.waiters = []
                    twin.writing = False
                    self._forget_idle(key)
                    return
                if me.done and live:  # my reading is written: the oldest waiter carries on
                    live[0].lead = True
                    self._changed.notify_all()
                    return
                batch, group = twin.pending, twin.waiters
                twin.pending, twin.waiters = {}, []
            result: Any = None
            error: BaseException | None = None
            try:
                result = write(dict(batch), lambda: self._pace(twin))
            except Exception as exc:  # handed to every caller of this batch, raised there
                error = exc
            except BaseException:  # this thread is going away: never leave the twin without a writer
                with self._lock:
                    for waiter in group:
                        waiter.error, waiter.done = WriteTimeout("the write carrying this reading was aborted"), True
                    live = [w for w in twin.waiters if not w.abandoned]
                    if live:
                        live[0].lead = True
                    else:
                        twin.writing = False
                    self._changed.notify_all()
                raise
            with self._lock:
                for waiter in group:
                    waiter.result, waiter.error, waiter.done = result, error, True
                self._changed.notify_all()

    def _pace(self, twin: _Twin) -> None:
        # The next slot counts from when this attempt really starts (a late wake-up must not let
        # the following attempt catch up). Only the twin's one writer calls this.
        while True:
            with self._lock:
                now = self._clock()
                wait = twin.next_slot - now
                if wait <= 0:
                    twin.next_slot = now + self.interval
                    return
            self._sleep(wait)

    def _forget_idle(self, key: Hashable) -> None:
        """Drop twins with no work whose pacing no longer matters (called with the lock held)."""
        now = self._clock()
        for k in [k for k, t in self._twins.items() if not t.writing and not t.waiters and t.next_slot <= now]:
            del self._twins[k]

    def waiting(self, key: Hashable) -> int:
        """Callers for this key whose reading is merged but not yet taken by a write."""
        with self._lock:
            twin = self._twins.get(key)
            return 0 if twin is None else sum(1 for w in twin.waiters if not w.abandoned)

    def tracked(self) -> int:
        """Twins with state held (pending work or a pacing slot still in the future)."""
        with self._lock:
            return len(self._twins)
