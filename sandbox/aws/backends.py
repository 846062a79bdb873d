"""What the sandbox's own AWS service backends (IoT TwinMaker, Managed Grafana) share: one
backend per region created on first use, and resource tags by ARN."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Generic, Protocol, TypeVar

from sandbox.aws.routing import ValidationException
from sandbox.core.profiles import Faults


class _Backend(Protocol):
    def resources(self) -> list[dict[str, str]]: ...


B = TypeVar("B", bound=_Backend)


class RegionalBackends(Generic[B]):
    """Per-region backends, created on first use (like moto's BackendDict)."""

    def __init__(self, factory: Callable[[str, Faults], B], faults: Faults) -> None:
        self._factory = factory
        self._faults = faults
        self._lock = threading.Lock()
        self._by_region: dict[str, B] = {}

    def __getitem__(self, region: str) -> B:
        with self._lock:
            if region not in self._by_region:
                self._by_region[region] = self._factory(region, self._faults)
            return self._by_region[region]

    def resources(self) -> list[dict[str, str]]:
        with self._lock:
            backends = list(self._by_region.values())
        return [r for b in backends for r in b.resources()]

    def reset(self) -> None:
        with self._lock:
            self._by_region.clear()


class ArnTagging(ABC):
    """`TagResource`, `UntagResource`, `ListTagsForResource`, mixed into a backend that guards its
    state with `_lock` and finds a resource (with a `tags` dict) by ARN."""

    _lock: AbstractContextManager[Any]

    @abstractmethod
    def _tagged(self, arn: Any) -> Any:
        """The resource named by `arn`; ResourceNotFoundException if none."""

    def tag_resource(self, arn: Any, tags: Any) -> dict[str, Any]:
        if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
            raise ValidationException("tags must be a map of strings")
        with self._lock:
            self._tagged(arn).tags.update(tags)
            return {}

    def untag_resource(self, arn: Any, keys: list[str]) -> dict[str, Any]:
        with self._lock:
            target = self._tagged(arn)
            for key in keys:
                target.tags.pop(key, None)
            return {}

    def list_tags(self, arn: Any) -> dict[str, Any]:
        with self._lock:
            return {"tags": dict(self._tagged(arn).tags)}
