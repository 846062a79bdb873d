"""Azure Digital Twins patch building (pure).

A reading's telemetry `x` goes to the twin Property `lastX` (`shared.contracts.adt_property_name`)
with an `add` op, which works whether or not the property has a value yet. Only properties the
twin's model (and the models it extends) declares are patched; other telemetry is skipped, so
one unexpected field never fails the whole update.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from shared.contracts import adt_property_name


def _types(entry: Mapping[str, Any]) -> set[str]:
    kind = entry.get("@type")
    if isinstance(kind, str):
        return {kind}
    if isinstance(kind, list):
        return {k for k in kind if isinstance(k, str)}
    return set()


def declared_properties(model: Mapping[str, Any]) -> set[str]:
    """Names of the `Property` contents of one DTDL interface (not of the ones it extends)."""
    contents = model.get("contents") or []
    return {
        str(entry["name"])
        for entry in contents
        if isinstance(entry, Mapping) and "Property" in _types(entry) and isinstance(entry.get("name"), str)
    }


def extended_models(model: Mapping[str, Any]) -> list[str]:
    extends = model.get("extends")
    if isinstance(extends, str):
        return [extends]
    if isinstance(extends, list):
        return [e for e in extends if isinstance(e, str)]
    return []


def build_patch(values: Mapping[str, Any], declared: Iterable[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """(JSON Patch ops, skipped telemetry names) for one reading, in a stable order."""
    known = set(declared)
    ops: list[dict[str, Any]] = []
    skipped: list[str] = []
    for name in sorted(values):
        prop = adt_property_name(name)
        if prop in known:
            ops.append({"op": "add", "path": f"/{prop}", "value": values[name]})
        else:
            skipped.append(name)
    return ops, skipped
