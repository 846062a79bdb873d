"""Hot readers in IoT TwinMaker's data-connector shapes.

The same request and response serve TwinMaker's direct Lambda invoke (`dataReader`,
`attributePropertyValueReaderByEntity`) and remote callers over HTTP (a Function URL or an Azure
HTTP function, token-checked), so a forwarding reader on another cloud passes bodies through.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from payload_functions.common.errors import BadRequest
from payload_functions.common.telemetry import parse_timestamp
from payload_functions.core.ports import HotStore
from shared.contracts import Telemetry
from shared.naming import AwsNaming

_VALUE_KEYS = {
    "DOUBLE": ("doubleValue", float),
    "INTEGER": ("integerValue", int),
    "LONG": ("longValue", int),
    "BOOLEAN": ("booleanValue", bool),
    "STRING": ("stringValue", str),
}
_EARLIEST = "1970-01-01T00:00:00.000Z"
_LATEST = "9999-12-31T23:59:59.999Z"


def _data_type(request: Mapping[str, Any], prop: str) -> str | None:
    definition = ((request.get("properties") or {}).get(prop) or {}).get("definition") or {}
    kind = (definition.get("dataType") or {}).get("type")
    return str(kind).upper() if kind else None


def encode_value(value: Any, data_type: str | None) -> dict[str, Any]:
    """A TwinMaker `DataValue` for a stored value (typed by the property definition if given)."""
    if data_type in _VALUE_KEYS:
        key, cast = _VALUE_KEYS[data_type]
        try:
            return {key: cast(value)}
        except (TypeError, ValueError):
            return {"stringValue": str(value)}
    if isinstance(value, bool):
        return {"booleanValue": value}
    if isinstance(value, int):
        return {"integerValue": value}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}


def device_of(request: Mapping[str, Any], twin: str) -> str:
    """The device a TwinMaker request is about: an `iotDeviceId` property, else the component
    type id without the twin prefix (`AwsNaming.component_type`), else the component name."""
    iot = ((request.get("properties") or {}).get("iotDeviceId") or {}).get("value") or {}
    if isinstance(iot.get("stringValue"), str) and iot["stringValue"]:
        return str(iot["stringValue"])
    prefix = AwsNaming(twin).component_type("")
    type_id = request.get("componentTypeId")
    if isinstance(type_id, str) and type_id.startswith(prefix) and len(type_id) > len(prefix):
        return type_id[len(prefix):]
    name = request.get("componentName")
    if isinstance(name, str) and name:
        return name
    raise BadRequest("body: cannot tell the device; send componentName, componentTypeId or properties.iotDeviceId")


def _selected(request: Mapping[str, Any]) -> list[str]:
    selected = request.get("selectedProperties")
    if not isinstance(selected, list) or not selected or not all(isinstance(p, str) for p in selected):
        raise BadRequest("body.selectedProperties: expected a non-empty list of property names")
    return list(selected)


def _reference(request: Mapping[str, Any], prop: str) -> dict[str, Any]:
    return {"entityId": request.get("entityId"), "componentName": request.get("componentName"), "propertyName": prop}


def read_range(request: Any, store: HotStore, twin: str) -> dict[str, Any]:
    """`dataReader`: every stored value of the selected properties in [start, end]."""
    if not isinstance(request, Mapping):
        raise BadRequest("body: expected a TwinMaker dataReader request object")
    selected = _selected(request)
    start_raw = request.get("startTime") or request.get("startDateTime")
    end_raw = request.get("endTime") or request.get("endDateTime")
    start = parse_timestamp(start_raw, "body.startTime") if start_raw is not None else _EARLIEST
    end = parse_timestamp(end_raw, "body.endTime") if end_raw is not None else _LATEST
    if start > end:
        raise BadRequest("body: startTime is after endTime")
    items = store.query(device_of(request, twin), start, end)
    if request.get("orderByTime") == "DESCENDING":
        items = list(reversed(items))
    values: list[dict[str, Any]] = []
    for prop in selected:
        kind = _data_type(request, prop)
        series = [{"time": item[Telemetry.TIMESTAMP], "value": encode_value(item[prop], kind)}
                  for item in items if item.get(prop) is not None]
        values.append({"entityPropertyReference": _reference(request, prop), "values": series})
    return {"propertyValues": values, "nextToken": None}


def read_latest(request: Any, store: HotStore, twin: str) -> dict[str, Any]:
    """`attributePropertyValueReaderByEntity`: the latest stored value of each selected property."""
    if not isinstance(request, Mapping):
        raise BadRequest("body: expected a TwinMaker property value request object")
    selected = _selected(request)
    item = store.latest(device_of(request, twin))
    out: dict[str, Any] = {}
    for prop in selected:
        if item is not None and item.get(prop) is not None:
            out[prop] = {"propertyReference": _reference(request, prop),
                         "propertyValue": encode_value(item[prop], _data_type(request, prop)),
                         "time": item[Telemetry.TIMESTAMP]}
    return {"propertyValues": out}
