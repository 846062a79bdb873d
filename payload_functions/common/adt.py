"""Azure Digital Twins patch building (pure).

A reading's telemetry `x` goes to the twin Property `lastX` (`shared.contracts.adt_property_name`)
with an `add` op, which works whether or not the property has a value yet. Only properties the
twin's model (and the models it extends) declares are patched; other telemetry is skipped, so
one unexpected field never fails the whole update.

`build_timed_patch` adds ADT's per-property `sourceTime` (the reading's timestamp) and leaves out
properties the twin already holds a newer value for, so an older reading never overwrites a newer
one, whichever write lands last.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from payload_functions.common.twin_writes import Stamped, is_newer
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


@dataclass
class TimedPatch:
    """What one conditional write does to a twin: the ops, and per telemetry name the outcome."""

    ops: list[dict[str, Any]] = field(default_factory=list)
    written: dict[str, str] = field(default_factory=dict)
    """Telemetry name -> the timestamp written as its property's sourceTime."""
    kept: dict[str, str] = field(default_factory=dict)
    """Telemetry name -> the twin's sourceTime, at least as new as the incoming one (no op)."""
    skipped: list[str] = field(default_factory=list)
    """Telemetry names whose `lastX` property the twin's model does not declare."""


def source_time(metadata: Any, prop: str) -> Any:
    """`$metadata.<prop>.sourceTime` of a twin as served (None when absent)."""
    entry = metadata.get(prop) if isinstance(metadata, Mapping) else None
    return entry.get("sourceTime") if isinstance(entry, Mapping) else None


def build_timed_patch(batch: Mapping[str, Stamped], declared: Iterable[str], metadata: Any) -> TimedPatch:
    """Ops for the properties whose incoming timestamp is newer than the twin's `sourceTime`:
    each value with an `add` on `/lastX` and its time on `/$metadata/lastX/sourceTime` (ADT's
    per-property source time, settable by patch since api-version 2022-05-31)."""
    known = set(declared)
    plan = TimedPatch()
    for name in sorted(batch):
        prop = adt_property_name(name)
        if prop not in known:
            plan.skipped.append(name)
            continue
        incoming = batch[name]
        held = source_time(metadata, prop)
        if not is_newer(incoming.timestamp, held):
            plan.kept[name] = str(held)
            continue
        plan.ops.append({"op": "add", "path": f"/{prop}", "value": incoming.value})
        plan.ops.append({"op": "add", "path": f"/$metadata/{prop}/sourceTime", "value": incoming.timestamp})
        plan.written[name] = incoming.timestamp
    return plan
