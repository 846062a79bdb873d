"""Public inter-cloud receivers (L0 of the receiving cloud): token-checked, envelope-aware.

Every receiver checks `X-Inter-Cloud-Token` against the current and previous token (401
otherwise) before it reads the body, so an unauthenticated caller learns nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from payload_functions.common.auth import check_token
from payload_functions.common.envelope import unwrap
from payload_functions.common.errors import BadRequest
from payload_functions.common.keys import check_object_key, cold_chunk_key
from payload_functions.common.settings import Settings
from payload_functions.common.telemetry import normalise, parse_timestamp, values_of
from payload_functions.core.api import Request
from payload_functions.core.ports import HotStore, ObjectStore
from shared.contracts import AdtPush, ArchiveObject, ColdChunk, Telemetry


def authorise(request: Request, settings: Settings) -> None:
    check_token(request.headers, settings.tokens())


HotRead = Callable[[Any, HotStore, str], dict[str, Any]]
"""`readers.read_range` or `readers.read_latest`."""


def hot_reader(request: Request, settings: Settings, store: Callable[[], HotStore], read: HotRead) -> dict[str, Any]:
    """L3_hot->L4/L5: a token-checked read (time range or last entry) for a reader on another cloud."""
    authorise(request, settings)
    return read(request.json(), store(), settings.twin_info().twin_name)


def ingestion(request: Request, settings: Settings, call_processor: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """L1->L2: unwrap, normalise, hand the reading to this cloud's processor."""
    authorise(request, settings)
    received = unwrap(request.json())
    reading = normalise(received.payload, "body.payload")
    call_processor(reading)
    return {
        "status": "accepted",
        "device_id": reading[Telemetry.DEVICE_ID],
        "timestamp": reading[Telemetry.TIMESTAMP],
        "source_cloud": received.source_cloud,
        "trace_id": received.trace_id,
    }


def hot_writer(request: Request, settings: Settings, store: Callable[[], HotStore]) -> dict[str, Any]:
    """L2->L3_hot: upsert one reading by (`device_id`, `timestamp`)."""
    authorise(request, settings)
    reading = normalise(unwrap(request.json()).payload, "body.payload")
    store().put(reading)
    return {"status": "written", "device_id": reading[Telemetry.DEVICE_ID], "timestamp": reading[Telemetry.TIMESTAMP]}


def _field(body: Mapping[str, Any], name: str, kind: type | tuple[type, ...], path: str) -> Any:
    value = body.get(name)
    if value is None or not isinstance(value, kind) or isinstance(value, bool):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise BadRequest(f"{path}.{name}: expected {expected}")
    return value


def cold_writer(request: Request, settings: Settings, store: Callable[[], ObjectStore]) -> dict[str, Any]:
    """L3_hot->L3_cold: write one chunk of expired readings under the shared key scheme."""
    authorise(request, settings)
    body = unwrap(request.json()).payload
    if not isinstance(body, Mapping):
        raise BadRequest("body: a cold chunk must be a JSON object")
    device_id = _field(body, ColdChunk.DEVICE_ID, str, "body")
    index = _field(body, ColdChunk.CHUNK_INDEX, int, "body")
    if index < 0:
        raise BadRequest(f"body.{ColdChunk.CHUNK_INDEX}: must not be negative")
    start = parse_timestamp(_field(body, ColdChunk.START_TIMESTAMP, str, "body"), f"body.{ColdChunk.START_TIMESTAMP}")
    end = parse_timestamp(_field(body, ColdChunk.END_TIMESTAMP, str, "body"), f"body.{ColdChunk.END_TIMESTAMP}")
    items = _field(body, ColdChunk.ITEMS, list, "body")
    key = check_object_key(cold_chunk_key(device_id, start, end, index), f"body.{ColdChunk.DEVICE_ID}")
    store().put(key, json.dumps(items, separators=(",", ":"), sort_keys=True).encode("utf-8"))
    return {"written": len(items), "key": key}


def archive_writer(request: Request, settings: Settings, store: Callable[[], ObjectStore]) -> dict[str, Any]:
    """L3_cold->L3_archive: write one object with the archive tier."""
    authorise(request, settings)
    body = unwrap(request.json()).payload
    if not isinstance(body, Mapping):
        raise BadRequest("body: an archive object must be a JSON object")
    key = check_object_key(body.get(ArchiveObject.OBJECT_KEY), f"body.{ArchiveObject.OBJECT_KEY}")
    data = _field(body, ArchiveObject.DATA, str, "body")
    store().put(key, data.encode("utf-8"))
    return {"archived": True, "key": key}


def adt_push_body(body: Any) -> tuple[str, dict[str, Any], str | None]:
    """(twin id, telemetry values, reading time) from `{device_id, telemetry, timestamp}` or a flat
    reading. The time (canonical ISO text) orders writes to the twin; None when the body has none."""
    if not isinstance(body, Mapping):
        raise BadRequest("body.payload: expected a JSON object")
    telemetry = body.get(AdtPush.TELEMETRY)
    if isinstance(telemetry, Mapping):
        device_id = body.get(AdtPush.DEVICE_ID)
        if not isinstance(device_id, str) or not device_id:
            raise BadRequest(f"body.payload.{AdtPush.DEVICE_ID}: expected the device id")
        stamp = body.get(AdtPush.TIMESTAMP)
        when = None if stamp in (None, "") else parse_timestamp(stamp, f"body.payload.{AdtPush.TIMESTAMP}")
        return device_id, dict(telemetry), when
    reading = normalise(body, "body.payload")
    return str(reading[Telemetry.DEVICE_ID]), values_of(reading), str(reading[Telemetry.TIMESTAMP])


TwinPatch = Callable[[str, Mapping[str, Any], str | None], Mapping[str, Any]]
"""`patch(twin id, values, reading time)` -> the outcome (`patched`, `stale`, `skipped`)."""


def adt_pusher(request: Request, settings: Settings, patch: TwinPatch) -> dict[str, Any]:
    """Azure L0: a remote persister's reading -> the device's twin, unless it already holds newer
    values (`status` is `unchanged` then). Answers once a write carrying the reading is done."""
    authorise(request, settings)
    twin_id, values, when = adt_push_body(unwrap(request.json()).payload)
    outcome = dict(patch(twin_id, values, when))
    return {"status": "patched" if outcome.get("patched") else "unchanged", **outcome}
