"""`twin_state`: the Durable entity holding one twin's recorded resources and versioned outputs.

Keyed by twin name. The entity serialises every write for a twin, which is what makes the
per-twin lock and the "change noted while another operation runs" hand-off race-free:
`acquire` (lock or, for propagations, note the change as pending) and `release` (hand back the
pending changes instead of unlocking) are single entity operations.

State (plain JSON):
    resources: {id: {layer, provider, kind, needs, config, produces, state, action, op, error, applied}}
    outputs:   {name: {value, version, producer, secret}}
    wires:     [{output, producer, consumer, setting}]
    lock:      {instance, operation, since} | None
    pending:   [output names noted while locked];  pending_all: bool
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import azure.durable_functions as df

from shared.engine import names

State = dict[str, Any]


def empty_state() -> State:
    return {"resources": {}, "outputs": {}, "wires": [], "lock": None, "pending": [], "pending_all": False}


def _acquire(state: State, data: dict[str, Any]) -> dict[str, Any]:
    lock = state.get("lock")
    instance = data["instance"]
    if lock is None or lock["instance"] == instance or (data.get("replace") and lock["instance"] == data["replace"]):
        state["lock"] = {"instance": instance, "operation": data.get("operation", ""), "since": data.get("since", "")}
        return {"acquired": True}
    if data.get("defer"):
        changes = data.get("changes")
        if changes is None:
            state["pending_all"] = True
        else:
            state["pending"] = sorted(set(state.get("pending", [])) | set(changes))
    return {"acquired": False, "holder": lock["instance"], "operation": lock.get("operation", "")}


def _release(state: State, data: dict[str, Any]) -> dict[str, Any]:
    lock = state.get("lock")
    if lock is None or lock["instance"] != data["instance"]:
        return {"released": True, "pending": [], "all": False}
    pending, pending_all = state.get("pending", []), state.get("pending_all", False)
    if (pending or pending_all) and not data.get("force"):
        # The holder applies these before it may unlock; nothing noted meanwhile is lost.
        state["pending"], state["pending_all"] = [], False
        return {"released": False, "pending": pending, "all": pending_all}
    state["lock"] = None
    return {"released": True, "pending": [], "all": False}


def _set_plan(state: State, data: dict[str, Any]) -> None:
    state["wires"] = list(data.get("wires", []))
    state["twin"] = data.get("twin", state.get("twin"))


def _record_outputs(state: State, producer: str, outputs: dict[str, Any]) -> dict[str, Any]:
    """Store values; a version only moves when the value changes. Returns {name: {version, changed}}."""
    result: dict[str, Any] = {}
    for name, item in outputs.items():
        old = state["outputs"].get(name)
        value, secret = item["value"], bool(item.get("secret"))
        if old is not None and old["value"] == value:
            old["producer"], old["secret"] = producer, secret or old.get("secret", False)
            result[name] = {"version": old["version"], "changed": False}
            continue
        version = (old["version"] + 1) if old else 1
        state["outputs"][name] = {"value": value, "version": version, "producer": producer, "secret": secret}
        result[name] = {"version": version, "changed": True}
    return result


def _record_resource(state: State, data: dict[str, Any]) -> dict[str, Any]:
    rid = data["id"]
    entry = state["resources"].get(rid, {})
    entry.update({k: v for k, v in data.items() if k not in ("id", "outputs")})
    entry.setdefault("applied", {})
    state["resources"][rid] = entry
    return {"outputs": _record_outputs(state, rid, data.get("outputs") or {})}


def _record_resources(state: State, data: dict[str, Any]) -> None:
    for entry in data.get("entries", []):
        _record_resource(state, entry)


def _record_output(state: State, data: dict[str, Any]) -> dict[str, Any]:
    return _record_outputs(state, data["producer"], {data["name"]: data})[data["name"]]


def _observe_outputs(state: State, data: dict[str, Any]) -> dict[str, Any]:
    """A refresh's reading of one producer: record its outputs unless a later observation of the
    same producer is already recorded (ISO-8601 UTC times compare as strings)."""
    entry = state["resources"].get(data["producer"])
    if entry is None:
        return {"stale": True, "outputs": {}}
    observed_at = str(data.get("observed_at", ""))
    if observed_at < str(entry.get("observed_at", "")):
        return {"stale": True, "outputs": {}}
    entry["observed_at"] = observed_at
    return {"stale": False, "outputs": _record_outputs(state, data["producer"], data.get("outputs") or {})}


def _record_applied(state: State, data: dict[str, Any]) -> None:
    for consumer, versions in data.get("applied", {}).items():
        entry = state["resources"].get(consumer)
        if entry is not None:
            entry.setdefault("applied", {}).update(versions)


def _forget_resource(state: State, data: dict[str, Any]) -> None:
    state["resources"].pop(data["id"], None)
    for name in [n for n, o in state["outputs"].items() if o.get("producer") == data["id"]]:
        del state["outputs"][name]


def _clear(state: State, data: dict[str, Any]) -> None:
    lock = state.get("lock")
    state.clear()
    state.update(empty_state())
    state["lock"] = lock


OPERATIONS: dict[str, Callable[[State, dict[str, Any]], Any]] = {
    "get": lambda state, data: state,
    "acquire": _acquire,
    "release": _release,
    "set_plan": _set_plan,
    "record_resource": _record_resource,
    "record_resources": _record_resources,
    "record_output": _record_output,
    "record_applied": _record_applied,
    "observe_outputs": _observe_outputs,
    "forget_resource": _forget_resource,
    "clear": _clear,
}

bp = df.Blueprint()


@bp.entity_trigger(context_name="context", entity_name=names.TWIN_STATE)
def twin_state(context: df.DurableEntityContext) -> None:
    state = context.get_state(empty_state)
    operation = context.operation_name or ""
    handler = OPERATIONS.get(operation)
    if handler is None:
        raise ValueError(f"twin_state has no operation {operation!r}; known: {', '.join(sorted(OPERATIONS))}")
    data = context.get_input() or {}
    result = handler(state, data)
    context.set_state(state)
    context.set_result(result)
