"""Object keys of cold chunks (same scheme on every cloud, so a remote writer reproduces them)."""

from __future__ import annotations

import re

from payload_functions.common.errors import BadRequest

_SAFE_KEY = re.compile(r"[A-Za-z0-9._:/-]+")


def cold_chunk_key(device_id: str, start: str, end: str, index: int) -> str:
    """`<device>/<start>-<end>/chunk-00000.json`."""
    return f"{device_id}/{start}-{end}/chunk-{index:05d}.json"


def check_object_key(key: object, path: str) -> str:
    """An object key from another cloud: relative, no `..`, a conservative character set."""
    if not isinstance(key, str) or not key:
        raise BadRequest(f"{path}: expected a non-empty object key")
    if key.startswith("/") or ".." in key.split("/") or not _SAFE_KEY.fullmatch(key) or len(key) > 1024:
        raise BadRequest(f"{path}: {key!r} is not an accepted object key (letters, digits, . _ : / -, relative)")
    return key
