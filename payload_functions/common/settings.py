"""Settings (environment variables / app settings), read lazily and only when declared.

Nothing reads the environment at import time: one missing variable would otherwise hide every
function of a Function App. Each function declares the settings it reads (`Settings(reads)`);
reading an undeclared one is a programming error, and the contract tests compare the
declarations with `shared.contracts.settings_read`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from payload_functions.common.errors import PayloadError, UnknownDevice
from shared.contracts import KEYED_SETTINGS, DigitalTwinInfo, Setting, keyed_setting

TRUE_VALUES = frozenset({"1", "true", "yes", "on"})


class MissingSetting(PayloadError):
    """A required setting is absent or empty: 500 naming the setting, never a value."""

    def __init__(self, name: str) -> None:
        super().__init__(500, f"setting {name} is not configured")
        self.name = name


class InvalidSetting(PayloadError):
    def __init__(self, name: str, problem: str) -> None:
        super().__init__(500, f"setting {name} is invalid: {problem}")
        self.name = name


class UndeclaredSetting(RuntimeError):
    """A function read a setting it did not declare (caught by the contract tests)."""


class Settings:
    """Lazy, declared access to a function's settings."""

    def __init__(self, reads: Iterable[Setting], environ: Mapping[str, str] | None = None) -> None:
        self.reads = frozenset(reads)
        self._environ = environ

    def _raw(self, name: Setting, key: str | None = None) -> str | None:
        if name not in self.reads:
            raise UndeclaredSetting(f"{name} is read but not declared by this function")
        env = os.environ if self._environ is None else self._environ
        value = env.get(str(name) if key is None else keyed_setting(name, key))
        return value if value else None

    def optional(self, name: Setting) -> str | None:
        return self._raw(name)

    def require(self, name: Setting) -> str:
        value = self._raw(name)
        if value is None:
            raise MissingSetting(str(name))
        return value

    def keyed(self, name: Setting, key: str) -> str:
        """A keyed setting (`shared.contracts.KEYED_SETTINGS`) for `key`, e.g. the URL of one
        device's processor; missing names the setting and the key, never a value."""
        if name not in KEYED_SETTINGS:
            raise UndeclaredSetting(f"{name} is not a keyed setting")
        value = self._raw(name, key)
        if value is None:
            raise MissingSetting(f"{name} for {key[:80]!r}")
        return value

    def for_device(self, name: Setting, device_id: str) -> str:
        """A keyed setting whose key comes from a message (the device a reading names): a device
        without one is not this twin's, a refusal (422) no retry can fix, never a 500."""
        try:
            return self.keyed(name, device_id)
        except MissingSetting:
            raise UnknownDevice(device_id) from None

    def flag(self, name: Setting, default: bool = False) -> bool:
        value = self._raw(name)
        return default if value is None else value.strip().lower() in TRUE_VALUES

    def twin_info(self) -> DigitalTwinInfo:
        raw = self.require(Setting.DIGITAL_TWIN_INFO)
        try:
            return DigitalTwinInfo.from_json(raw)
        except ValueError as exc:
            # contracts' message names the setting and the field, never the whole value.
            raise InvalidSetting(str(Setting.DIGITAL_TWIN_INFO), str(exc)) from None

    def tokens(self) -> tuple[str, ...]:
        """The tokens a receiver accepts: current (required) and previous (during rotation)."""
        current = self.require(Setting.INTER_CLOUD_TOKEN)
        previous = self.optional(Setting.INTER_CLOUD_TOKEN_PREVIOUS)
        return (current, previous) if previous else (current,)
