"""What the core logic needs from a cloud: hot storage and object storage (cold / archive)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol


class HotStore(Protocol):
    """Readings keyed by (`device_id`, `timestamp`); `put` of the same key overwrites (idempotent)."""

    def put(self, reading: Mapping[str, Any]) -> None: ...

    def query(self, device_id: str, start: str, end: str) -> list[dict[str, Any]]:
        """Readings with start <= timestamp <= end, oldest first."""
        ...

    def latest(self, device_id: str) -> dict[str, Any] | None: ...

    def expired(self, cutoff: str) -> list[dict[str, Any]]:
        """Every reading with timestamp < cutoff."""
        ...

    def delete(self, device_id: str, timestamp: str) -> None: ...


class ObjectStore(Protocol):
    """Objects by key; `put` of the same key overwrites (idempotent)."""

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def older_than(self, cutoff: datetime) -> list[tuple[str, int]]:
        """(key, size) of objects last modified before `cutoff`."""
        ...

    def delete(self, key: str) -> None: ...
