"""The sandbox request log: every request any sandbox service answers, in order.

Tests and benchmarks read it (through the control endpoint `GET /requests`) to count
mutating calls, e.g. "a second deploy makes zero PUT/POST/PATCH/DELETE calls".
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass

MUTATING_METHODS = frozenset({"PUT", "POST", "PATCH", "DELETE"})


@dataclass(frozen=True)
class RequestRecord:
    seq: int
    cloud: str  # "azure" | "aws" | "blob" | ...
    method: str
    url: str
    status: int
    ms: float

    def to_json(self) -> dict[str, object]:
        return asdict(self)


class RequestLog:
    """Thread-safe, append-only (until `clear`). Sequence numbers start at 1 and never repeat."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._next_seq = 1

    def record(self, cloud: str, method: str, url: str, status: int, ms: float) -> RequestRecord:
        with self._lock:
            rec = RequestRecord(self._next_seq, cloud, method.upper(), url, int(status), round(float(ms), 3))
            self._next_seq += 1
            self._records.append(rec)
            return rec

    def since(self, seq: int = 0) -> list[RequestRecord]:
        """Records with a sequence number greater than `seq`."""
        with self._lock:
            return [r for r in self._records if r.seq > seq]

    def last_seq(self) -> int:
        with self._lock:
            return self._next_seq - 1

    def clear(self) -> None:
        """Forget the records; sequence numbers keep increasing so `?since=` stays valid."""
        with self._lock:
            self._records.clear()
