"""L4 (kind `twinmaker-component-type`): one component type per device type. Time-series
properties are stored externally and read through the hot reader (`dataReader`), constant
properties carry their value as default, and `attributePropertyValueReaderByEntity` is the
last-entry reader. The reader ARNs arrive as wired settings (`DATA_READER_FUNCTION_ARN`,
`LAST_ENTRY_READER_FUNCTION_ARN`); `apply_settings` re-points the functions when they change.
A create or update is followed by `Pending` polls until the type is `ACTIVE`.
"""

from __future__ import annotations

from typing import Any

from activities.providers.aws._common import (
    action_from,
    cfg,
    client,
    get_or_none,
    ignore_missing,
    merge_action,
    name_of,
    pending,
)
from activities.registry import Provider, register
from shared.contracts import Setting
from shared.engine.errors import PermanentError, TransientError
from shared.engine.types import Action, EnsureResult, ReadResult, ResourceCall

DATA_READER = "dataReader"
LAST_ENTRY_READER = "attributePropertyValueReaderByEntity"
VALUE_KEYS = {"STRING": "stringValue", "DOUBLE": "doubleValue", "INTEGER": "integerValue", "LONG": "longValue",
              "BOOLEAN": "booleanValue"}


def _workspace(call: ResourceCall) -> str:
    return str(cfg(call, "workspace"))


def _default_value(data_type: str, value: Any) -> dict[str, Any]:
    key = VALUE_KEYS.get(data_type, "stringValue")
    if key == "doubleValue":
        return {key: float(value)}
    if key in ("integerValue", "longValue"):
        return {key: int(value)}
    if key == "booleanValue":
        return {key: str(value).lower() == "true" if isinstance(value, str) else bool(value)}
    return {key: str(value)}


def wanted_definitions(call: ResourceCall) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for prop in cfg(call, "properties", []) or []:
        out[str(prop["name"])] = {
            "dataType": {"type": str(prop.get("dataType", "DOUBLE"))},
            "isTimeSeries": bool(prop.get("isTimeSeries", True)),
            "isStoredExternally": True,
        }
    for const in cfg(call, "constProperties", []) or []:
        data_type = str(const.get("dataType", "STRING"))
        out[str(const["name"])] = {
            "dataType": {"type": data_type},
            "defaultValue": _default_value(data_type, const.get("value")),
        }
    return out


def wanted_functions(call: ResourceCall) -> dict[str, dict[str, Any]]:
    reader = call.settings.get(Setting.DATA_READER_FUNCTION_ARN)
    last = call.settings.get(Setting.LAST_ENTRY_READER_FUNCTION_ARN)
    if not reader:
        raise TransientError(f"component type {name_of(call)}: the data reader's ARN is not known yet")
    out = {DATA_READER: {"implementedBy": {"lambda": {"arn": reader}, "isNative": False}}}
    if last:
        out[LAST_ENTRY_READER] = {"implementedBy": {"lambda": {"arn": last}, "isNative": False}}
    return out


def _comparable_definitions(defs: dict[str, Any], names: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        d = defs.get(name)
        if d is None:
            out[name] = None
            continue
        out[name] = ((d.get("dataType") or {}).get("type"), bool(d.get("isTimeSeries")),
                     bool(d.get("isStoredExternally")), d.get("defaultValue") or None)
    return out


def _comparable_functions(funcs: dict[str, Any]) -> dict[str, Any]:
    return {k: ((v.get("implementedBy") or {}).get("lambda") or {}).get("arn") for k, v in funcs.items()
            if k in (DATA_READER, LAST_ENTRY_READER)}


def get_type(call: ResourceCall) -> dict[str, Any] | None:
    return get_or_none(lambda: client("iottwinmaker", call).get_component_type(
        workspaceId=_workspace(call), componentTypeId=name_of(call)))


@register("aws", "twinmaker-component-type")
class TwinMakerComponentType(Provider):
    def ensure(self, call: ResourceCall) -> EnsureResult:
        return self._converge(call, "unchanged")

    def poll(self, call: ResourceCall) -> EnsureResult:
        if call.pending is not None and call.pending.token.get("stage") == "delete":
            if get_type(call) is None:
                return EnsureResult(action="deleted")
            return pending("deleted", f"component type {name_of(call)} is being deleted", stage="delete")
        return self._converge(call, action_from(call))

    def _converge(self, call: ResourceCall, action: Action) -> EnsureResult:
        tm = client("iottwinmaker", call)
        name = name_of(call)
        defs, funcs = wanted_definitions(call), wanted_functions(call)
        current = get_type(call)
        if current is None:
            tm.create_component_type(workspaceId=_workspace(call), componentTypeId=name,
                                     description=f"device {cfg(call, 'device_id')} of twin {call.twin}",
                                     propertyDefinitions=defs, functions=funcs,
                                     tags={"DigitalTwin": call.twin, "Layer": call.resource.layer})
            return pending(merge_action(action, "created"), f"component type {name} is being created")
        state = (current.get("status") or {}).get("state")
        if state in ("CREATING", "UPDATING", "DELETING"):
            return pending(action, f"component type {name} is {state}")
        return self._reconcile(call, current, defs, funcs, action)

    def _reconcile(self, call: ResourceCall, current: dict[str, Any], defs: dict[str, Any], funcs: dict[str, Any],
                   action: Action) -> EnsureResult:
        name = name_of(call)
        state = (current.get("status") or {}).get("state")
        have_defs = {p: d for p, d in (current.get("propertyDefinitions") or {}).items() if not d.get("isInherited")}
        differs = (set(have_defs) != set(defs)
                   or _comparable_definitions(have_defs, set(defs)) != _comparable_definitions(defs, set(defs))
                   or _comparable_functions(current.get("functions") or {}) != _comparable_functions(funcs))
        if state == "ERROR":
            error = (current.get("status") or {}).get("error") or {}
            if call.pending is not None and call.pending.token.get("retried"):
                raise PermanentError(f"component type {name} failed twice: {error.get('message', 'ERROR state')}")
            # TwinMaker's way to retry a failed provisioning is an update.
            self._update(call, defs, funcs)
            return pending(merge_action(action, "updated"), f"component type {name} is being re-provisioned",
                           retried=True)
        if differs:
            self._update(call, defs, funcs)
            return pending(merge_action(action, "updated"), f"component type {name} is being updated")
        return EnsureResult(action=action)

    def _update(self, call: ResourceCall, defs: dict[str, Any], funcs: dict[str, Any]) -> None:
        # UpdateComponentType replaces the definitions and functions as a whole.
        client("iottwinmaker", call).update_component_type(
            workspaceId=_workspace(call), componentTypeId=name_of(call), propertyDefinitions=defs, functions=funcs)

    def apply_settings(self, call: ResourceCall) -> bool:
        current = get_type(call)
        if current is None:
            raise TransientError(f"component type {name_of(call)} does not exist yet")
        state = (current.get("status") or {}).get("state")
        if state in ("CREATING", "UPDATING"):
            raise TransientError(f"component type {name_of(call)} is {state}; settings are applied after it")
        defs, funcs = wanted_definitions(call), wanted_functions(call)
        if _comparable_functions(current.get("functions") or {}) == _comparable_functions(funcs):
            return False
        self._update(call, defs, funcs)
        return True

    def read(self, call: ResourceCall) -> ReadResult:
        current = get_type(call)
        if current is None:
            return ReadResult(exists=False)
        return ReadResult(exists=True, details={
            "arn": current.get("arn"), "state": (current.get("status") or {}).get("state"),
            "properties": sorted(current.get("propertyDefinitions") or {}),
            "functions": _comparable_functions(current.get("functions") or {}),
        })

    def delete(self, call: ResourceCall) -> EnsureResult:
        gone = ignore_missing(lambda: client("iottwinmaker", call).delete_component_type(
            workspaceId=_workspace(call), componentTypeId=name_of(call)))
        if not gone:
            return EnsureResult(action="absent")
        if get_type(call) is None:
            return EnsureResult(action="deleted")
        return pending("deleted", f"component type {name_of(call)} is being deleted", stage="delete")
