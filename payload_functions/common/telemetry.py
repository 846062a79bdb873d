"""Telemetry normalised to `device_id` + ISO-8601 UTC `timestamp` (millisecond precision).

Accepted input: the device id from `device_id`, `iotDeviceId` or `deviceId`; the time from
`timestamp`, `time` or `ts`, as ISO-8601 text (a naive time is taken as UTC), or epoch seconds /
milliseconds (number or numeric text; values from 1e11 up are milliseconds, so epoch seconds
are read up to the year 5138 and milliseconds from March 1973). A reading without a time gets the current time. The
output is deterministic for a given input, so storage keys (`device_id` + `timestamp`) make
writes idempotent.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from payload_functions.common.errors import BadRequest
from shared.contracts import LEGACY_DEVICE_ID_FIELDS, LEGACY_TIMESTAMP_FIELDS, Telemetry

DEVICE_ID_FIELDS: tuple[str, ...] = (str(Telemetry.DEVICE_ID), *LEGACY_DEVICE_ID_FIELDS)
TIMESTAMP_FIELDS: tuple[str, ...] = (str(Telemetry.TIMESTAMP), *LEGACY_TIMESTAMP_FIELDS)
KEY_FIELDS: frozenset[str] = frozenset({*DEVICE_ID_FIELDS, *TIMESTAMP_FIELDS, "id"})

# Epoch values above this are milliseconds (1e11 s is the year 5138; 1e11 ms is 1973).
_MS_THRESHOLD = 1e11
_MIN = datetime(1970, 1, 1, tzinfo=UTC)
_MAX = datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
_NUMERIC = re.compile(r"[+-]?\d+(\.\d+)?")


def format_timestamp(moment: datetime) -> str:
    """`2025-01-31T12:00:00.123Z`: fixed width, so text order is time order."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def now_timestamp() -> str:
    return format_timestamp(datetime.now(UTC))


def _from_epoch(value: float, path: str) -> datetime:
    if not math.isfinite(value):
        raise BadRequest(f"{path}: epoch time must be a finite number")
    # Whole milliseconds by integer arithmetic: float division would turn .123 into .122999.
    millis = round(value) if abs(value) >= _MS_THRESHOLD else round(value * 1000)
    try:
        moment = _MIN + timedelta(milliseconds=millis)
    except (OverflowError, ValueError):
        raise BadRequest(f"{path}: epoch time {value!r} is out of range") from None
    if moment < _MIN:
        raise BadRequest(f"{path}: time before 1970 is not accepted")
    if moment > _MAX:
        raise BadRequest(f"{path}: epoch time {value!r} is after the year 9999")
    return moment


def parse_timestamp(value: Any, path: str = "timestamp") -> str:
    """Any accepted time form -> canonical ISO text. Raises BadRequest naming `path`."""
    if isinstance(value, bool):
        raise BadRequest(f"{path}: expected ISO-8601 text or epoch seconds/milliseconds, got a boolean")
    if isinstance(value, int | float):
        return format_timestamp(_from_epoch(float(value), path))
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{path}: expected ISO-8601 text or epoch seconds/milliseconds")
    text = value.strip()
    if _NUMERIC.fullmatch(text):
        return format_timestamp(_from_epoch(float(text), path))
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{path}: {value!r} is not ISO-8601 (e.g. 2025-01-31T12:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        moment = moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise BadRequest(f"{path}: {value!r} is out of range") from None
    if not _MIN <= moment <= _MAX:
        raise BadRequest(f"{path}: {value!r} is out of range (1970 to 9999)")
    return format_timestamp(moment)


def normalise(raw: Any, path: str = "body", clock: Callable[[], str] = now_timestamp) -> dict[str, Any]:
    """A reading with `device_id`, `timestamp` and its property values (legacy keys dropped)."""
    if not isinstance(raw, Mapping):
        raise BadRequest(f"{path}: a reading must be a JSON object")
    device_id: Any = None
    for key in DEVICE_ID_FIELDS:
        if raw.get(key) not in (None, ""):
            device_id = raw[key]
            break
    if device_id is None:
        raise BadRequest(f"{path}: no device id; send one of {', '.join(DEVICE_ID_FIELDS)}")
    if not isinstance(device_id, str):
        raise BadRequest(f"{path}.{key}: the device id must be text")
    stamp: str | None = None
    for key in TIMESTAMP_FIELDS:
        if raw.get(key) not in (None, ""):
            stamp = parse_timestamp(raw[key], f"{path}.{key}")
            break
    reading: dict[str, Any] = {str(Telemetry.DEVICE_ID): device_id, str(Telemetry.TIMESTAMP): stamp or clock()}
    for key, value in raw.items():
        if key not in KEY_FIELDS:
            reading[str(key)] = value
    return reading


def values_of(reading: Mapping[str, Any]) -> dict[str, Any]:
    """The property values of a reading (everything but the key fields)."""
    return {k: v for k, v in reading.items() if k not in KEY_FIELDS}
