"""Lifecycle movers: hot -> cold (chunks of expired readings), cold -> archive (old objects).

Each writes first and deletes the source only after the write succeeded, with deterministic
keys, so a run that dies half way is simply repeated by the next schedule.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from itertools import groupby
from typing import Any

from payload_functions.common.http import post_json
from payload_functions.common.keys import cold_chunk_key
from payload_functions.common.settings import InvalidSetting, Settings
from payload_functions.common.telemetry import format_timestamp
from payload_functions.core.ports import HotStore, ObjectStore
from shared.contracts import ArchiveObject, ColdChunk, Layer, Setting, Telemetry

MAX_CHUNK_BYTES = 5 * 1024 * 1024
MAX_ARCHIVE_OBJECT_BYTES = 200 * 1024 * 1024


def _size(item: dict[str, Any]) -> int:
    return len(json.dumps(item, separators=(",", ":"), sort_keys=True).encode("utf-8")) + 1


def chunks(items: list[dict[str, Any]], limit: int = MAX_CHUNK_BYTES) -> list[list[dict[str, Any]]]:
    """Split one device's readings (oldest first) into chunks of at most `limit` JSON bytes."""
    out: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    used = 2
    for item in items:
        size = _size(item)
        if current and used + size > limit:
            out.append(current)
            current, used = [], 2
        current.append(item)
        used += size
    if current:
        out.append(current)
    return out


def _provider(settings: Settings, layer: Layer) -> str:
    provider = settings.twin_info().providers.get(str(layer))
    if not provider:
        raise InvalidSetting(str(Setting.DIGITAL_TWIN_INFO), f"providers lacks {layer}")
    return provider


def hot_to_cold(
    settings: Settings, provider: str, hot: Callable[[], HotStore], cold: Callable[[], ObjectStore], now: datetime
) -> dict[str, Any]:
    info = settings.twin_info()
    cutoff = format_timestamp(now - timedelta(days=info.hot_storage_days))
    remote = _provider(settings, Layer.L3_COLD) != provider
    store = hot()
    expired = sorted(store.expired(cutoff), key=lambda r: (r[Telemetry.DEVICE_ID], r[Telemetry.TIMESTAMP]))
    moved = 0
    keys: list[str] = []
    for device_id, group in groupby(expired, key=lambda r: r[Telemetry.DEVICE_ID]):
        for index, chunk in enumerate(chunks(list(group))):
            start, end = chunk[0][Telemetry.TIMESTAMP], chunk[-1][Telemetry.TIMESTAMP]
            if remote:
                body = {str(ColdChunk.DEVICE_ID): device_id, str(ColdChunk.CHUNK_INDEX): index,
                        str(ColdChunk.START_TIMESTAMP): start, str(ColdChunk.END_TIMESTAMP): end,
                        str(ColdChunk.ITEMS): chunk, str(ColdChunk.SOURCE_CLOUD): provider}
                answer = post_json(settings.require(Setting.REMOTE_COLD_WRITER_URL), body,
                                   token=settings.require(Setting.INTER_CLOUD_TOKEN))
                key = answer.body.get("key") if isinstance(answer.body, dict) else None
                keys.append(str(key) if key else cold_chunk_key(device_id, start, end, index))
            else:
                key = cold_chunk_key(device_id, start, end, index)
                cold().put(key, json.dumps(chunk, separators=(",", ":"), sort_keys=True).encode("utf-8"))
                keys.append(key)
            for item in chunk:
                store.delete(item[Telemetry.DEVICE_ID], item[Telemetry.TIMESTAMP])
            moved += len(chunk)
    return {"moved": moved, "cutoff": cutoff, "keys": keys, "remote": remote}


def cold_to_archive(
    settings: Settings, provider: str, cold: Callable[[], ObjectStore], archive: Callable[[], ObjectStore],
    now: datetime,
) -> dict[str, Any]:
    info = settings.twin_info()
    cutoff = now - timedelta(days=info.cold_storage_days)
    remote = _provider(settings, Layer.L3_ARCHIVE) != provider
    store = cold()
    archived: list[str] = []
    skipped: list[str] = []
    for key, size in sorted(store.older_than(cutoff)):
        if size > MAX_ARCHIVE_OBJECT_BYTES:
            skipped.append(key)
            continue
        data = store.get(key)
        if remote:
            body = {str(ArchiveObject.OBJECT_KEY): key, str(ArchiveObject.DATA): data.decode("utf-8"),
                    str(ArchiveObject.SOURCE_CLOUD): provider}
            post_json(settings.require(Setting.REMOTE_ARCHIVE_WRITER_URL), body,
                      token=settings.require(Setting.INTER_CLOUD_TOKEN))
        else:
            archive().put(key, data)
        store.delete(key)
        archived.append(key)
    return {"archived": archived, "skipped_too_large": skipped, "remote": remote}
