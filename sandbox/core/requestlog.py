"""The sandbox request log: every request any sandbox service answers, in order.

Tests and benchmarks read it (through the control endpoint `GET /requests`) to count
mutating calls, e.g. "a second deploy makes zero PUT/POST/PATCH/DELETE calls".
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

MUTATING_METHODS = frozenset({"PUT", "POST", "PATCH", "DELETE"})

# Azure actions that are POSTs but only read: listing keys, settings, credentials, and queries.
_AZURE_READ_ONLY_POST = re.compile(
    r"/(listkeys|list|listsecrets|listconnectionstrings|query|listfunctionkeys|getpublishingprofile)$",
    re.IGNORECASE,
)


def is_mutating(method: str, url: str) -> bool:
    """Whether an HTTP call changes state, by method, with Azure's read-only POST actions excepted.

    Services whose protocol uses POST for reads (AWS JSON/query APIs) pass `mutating=` explicitly.
    """
    method = method.upper()
    if method not in MUTATING_METHODS:
        return False
    return not (method == "POST" and _AZURE_READ_ONLY_POST.search(urlsplit(url).path.rstrip("/")))


@dataclass(frozen=True)
class RequestRecord:
    seq: int
    cloud: str  # "azure" | "aws" | "blob" | ...
    method: str
    url: str
    status: int
    ms: float
    operation: str | None = None  # e.g. "lambda:GetFunctionConfiguration", where the service names one
    mutating: bool = False
    at: float = 0.0  # when the answer was recorded (seconds since the epoch): orders calls against other clocks

    def to_json(self) -> dict[str, object]:
        return asdict(self)


class RequestLog:
    """Thread-safe, append-only (until `clear`). Sequence numbers start at 1 and never repeat."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._next_seq = 1

    def record(
        self,
        cloud: str,
        method: str,
        url: str,
        status: int,
        ms: float,
        *,
        operation: str | None = None,
        mutating: bool | None = None,
    ) -> RequestRecord:
        """Append one call. `mutating` defaults to `is_mutating(method, url)`."""
        changes = is_mutating(method, url) if mutating is None else bool(mutating)
        with self._lock:
            rec = RequestRecord(
                self._next_seq, cloud, method.upper(), url, int(status), round(float(ms), 3), operation, changes,
                time.time(),
            )
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
