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
    AwsResource,
    client,
    get_or_none,
    ignore_missing,
    pending,
    tags,
)
from activities.providers.lifecycle import merge_action
from activities.registry import register
from shared.contracts import Setting
from shared.engine.errors import PermanentError, TransientError
from shared.engine.types import Action, EnsureResult, ResourceCall
from shared.resources.aws import TwinMakerComponentTypeConfig

DATA_READER = "dataReader"
LAST_ENTRY_READER = "attributePropertyValueReaderByEntity"
VALUE_KEYS = {"STRING": "stringValue", "DOUBLE": "doubleValue", "INTEGER": "integerValue", "LONG": "longValue",
              "BOOLEAN": "booleanValue"}


def _default_value(data_type: str, value: Any) -> dict[str, Any]:
    key = VALUE_KEYS.get(data_type, "stringValue")
    if key == "doubleValue":
        return {key: float(value)}
    if key in ("integerValue", "longValue"):
        return {key: int(value)}
    if key == "booleanValue":
        return {key: str(value).lower() == "true" if isinstance(value, str) else bool(value)}
    return {key: str(value)}


def wanted_definitions(config: TwinMakerComponentTypeConfig) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, data_type in config.properties.items():
        out[name] = {"dataType": {"type": data_type}, "isTimeSeries": True, "isStoredExternally": True}
    for name, const in config.const_properties.items():
        out[name] = {"dataType": {"type": const.data_type}, "defaultValue": _default_value(const.data_type, const.value)}
    return out


def wanted_functions(call: ResourceCall, config: TwinMakerComponentTypeConfig) -> dict[str, dict[str, Any]]:
    reader = call.settings.get(Setting.DATA_READER_FUNCTION_ARN)
    last = call.settings.get(Setting.LAST_ENTRY_READER_FUNCTION_ARN)
    if not reader:
        raise TransientError(f"component type {config.name}: the data reader's ARN is not known yet")
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


def get_type(config: TwinMakerComponentTypeConfig) -> dict[str, Any] | None:
    return get_or_none(lambda: client("iottwinmaker", config.region).get_component_type(
        workspaceId=config.workspace, componentTypeId=config.name))


@register("aws", "twinmaker-component-type")
class TwinMakerComponentType(AwsResource[TwinMakerComponentTypeConfig]):
    model = TwinMakerComponentTypeConfig
    label = "component type"

    def describe(self, call: ResourceCall, config: TwinMakerComponentTypeConfig) -> dict[str, Any] | None:
        return get_type(config)

    def converge(self, call: ResourceCall, config: TwinMakerComponentTypeConfig, action: Action) -> EnsureResult:
        tm = client("iottwinmaker", config.region)
        name = config.name
        defs, funcs = wanted_definitions(config), wanted_functions(call, config)
        current = self.found(call, config)
        if current is None:
            tm.create_component_type(workspaceId=config.workspace, componentTypeId=name,
                                     description=f"device {config.device_id} of twin {call.twin}",
                                     propertyDefinitions=defs, functions=funcs, tags=tags(call))
            return pending(merge_action(action, "created"), f"component type {name} is being created")
        state = (current.get("status") or {}).get("state")
        if state in ("CREATING", "UPDATING", "DELETING"):
            return pending(action, f"component type {name} is {state}")
        return self._reconcile(call, config, current, defs, funcs, action)

    def _reconcile(self, call: ResourceCall, config: TwinMakerComponentTypeConfig, current: dict[str, Any],
                   defs: dict[str, Any], funcs: dict[str, Any], action: Action) -> EnsureResult:
        name = config.name
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
            self._update(config, defs, funcs)
            return pending(merge_action(action, "updated"), f"component type {name} is being re-provisioned",
                           retried=True)
        if differs:
            self._update(config, defs, funcs)
            return pending(merge_action(action, "updated"), f"component type {name} is being updated")
        return EnsureResult(action=action)

    def _update(self, config: TwinMakerComponentTypeConfig, defs: dict[str, Any], funcs: dict[str, Any]) -> None:
        # UpdateComponentType replaces the definitions and functions as a whole.
        client("iottwinmaker", config.region).update_component_type(
            workspaceId=config.workspace, componentTypeId=config.name, propertyDefinitions=defs, functions=funcs)

    def apply_settings(self, call: ResourceCall) -> bool:
        config = self.config(call)
        current = get_type(config)
        if current is None:
            raise TransientError(f"component type {config.name} does not exist yet")
        state = (current.get("status") or {}).get("state")
        if state in ("CREATING", "UPDATING"):
            raise TransientError(f"component type {config.name} is {state}; settings are applied after it")
        defs, funcs = wanted_definitions(config), wanted_functions(call, config)
        if _comparable_functions(current.get("functions") or {}) == _comparable_functions(funcs):
            return False
        self._update(config, defs, funcs)
        return True

    def owner_tags(self, call: ResourceCall, config: TwinMakerComponentTypeConfig, current: Any) -> dict[str, str]:
        listed = client("iottwinmaker", config.region).list_tags_for_resource(resourceARN=current["arn"])
        return dict(listed.get("tags") or {})

    def details(self, call: ResourceCall, config: TwinMakerComponentTypeConfig, current: Any) -> dict[str, Any]:
        return {"arn": current.get("arn"), "state": (current.get("status") or {}).get("state"),
                "properties": sorted(current.get("propertyDefinitions") or {}),
                "functions": _comparable_functions(current.get("functions") or {})}

    def remove(self, call: ResourceCall, config: TwinMakerComponentTypeConfig, current: Any) -> bool:
        ignore_missing(lambda: client("iottwinmaker", config.region).delete_component_type(
            workspaceId=config.workspace, componentTypeId=config.name))
        return get_type(config) is None
