"""`DIGITAL_TWIN_INFO`: the one shape of the setting every payload function reads."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.contracts.settings import Setting


@dataclass(frozen=True)
class DigitalTwinInfo:
    """The value of `DIGITAL_TWIN_INFO` in every payload function. Deliberately small and
    independent of the device list: Lambda environments are limited to 4 KB, and adding a
    device must not touch every function's configuration."""

    twin_name: str
    mode: str
    hot_storage_days: int
    cold_storage_days: int
    providers: Mapping[str, str] = field(default_factory=dict)
    """Layer name (`L1`, `L2`, `L3_hot`, ...) -> provider."""

    FIELDS = ("twin_name", "mode", "hot_storage_days", "cold_storage_days", "providers")

    def to_dict(self) -> dict[str, Any]:
        return {
            "twin_name": self.twin_name,
            "mode": self.mode,
            "hot_storage_days": self.hot_storage_days,
            "cold_storage_days": self.cold_storage_days,
            "providers": dict(sorted(self.providers.items())),
        }

    def to_json(self) -> str:
        """Compact, key-sorted JSON: the same twin always yields the same setting value."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> DigitalTwinInfo:
        """Parse the setting; a bad value raises ValueError naming the setting and the field."""
        try:
            data = json.loads(text)
        except (TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{Setting.DIGITAL_TWIN_INFO} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{Setting.DIGITAL_TWIN_INFO} must be a JSON object")
        missing = [f for f in cls.FIELDS if f not in data]
        if missing:
            raise ValueError(f"{Setting.DIGITAL_TWIN_INFO} lacks {', '.join(missing)}")
        providers = data["providers"]
        if not isinstance(providers, dict):
            raise ValueError(f"{Setting.DIGITAL_TWIN_INFO}.providers must be an object")
        for key in ("hot_storage_days", "cold_storage_days"):
            if not isinstance(data[key], int) or isinstance(data[key], bool):
                raise ValueError(f"{Setting.DIGITAL_TWIN_INFO}.{key} must be an integer")
        return cls(
            twin_name=str(data["twin_name"]),
            mode=str(data["mode"]),
            hot_storage_days=data["hot_storage_days"],
            cold_storage_days=data["cold_storage_days"],
            providers={str(k): str(v) for k, v in providers.items()},
        )
