"""Client-side helpers for twin operations: instance ids, engine options, the conflict check,
and the redacted views the HTTP API returns.

Every mutating orchestration of a twin gets the instance id `twin:{twin}:{operation}:{hex}`, so
"is something running for this twin?" is one prefix query, true even before the orchestration
has taken the twin's lock in the state entity.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import azure.durable_functions as df
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus

from shared.contracts import ControlPlaneSetting
from shared.engine import names
from shared.engine.errors import REDACTED, redact
from shared.engine.orchestrations import EngineOptions
from shared.engine.state import ResourceRecord, TwinState, behind

ACTIVE = [OrchestrationRuntimeStatus.Running, OrchestrationRuntimeStatus.Pending]
BLOCKING = ("deploy", "destroy", "rotate")
ACTIONS = ("created", "updated", "unchanged", "deleted", "absent")


def instance_id(twin: str, operation: str) -> str:
    return f"twin:{twin}:{operation}:{uuid.uuid4().hex[:12]}"


def prefix(twin: str) -> str:
    return f"twin:{twin}:"


def parse_instance_id(value: str) -> tuple[str, str] | None:
    """(twin, operation) of a top-level operation id; None for others (and sub-orchestrations)."""
    parts = value.split(":")
    if len(parts) == 4 and parts[0] == "twin":
        return parts[1], parts[2]
    return None


def engine_options(environ: dict[str, str] | None = None) -> EngineOptions:
    """Engine knobs from the app setting `TWIN_ENGINE_OPTIONS` (a JSON object), or the defaults."""
    raw = (os.environ if environ is None else environ).get(ControlPlaneSetting.ENGINE_OPTIONS, "")
    if not raw.strip():
        return EngineOptions()
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"app setting {ControlPlaneSetting.ENGINE_OPTIONS} is not JSON: {exc}") from exc
    return EngineOptions.from_dict(value)


async def blocking_operation(client: df.DurableOrchestrationClient, twin: str) -> str | None:
    """The id of a running deploy/destroy/rotate of `twin`, if any (propagations do not block)."""
    for status in await client.get_status_by(runtime_status=ACTIVE, instance_id_prefix=prefix(twin)):
        parsed = parse_instance_id(status.instance_id or "")
        if parsed is not None and parsed[0] == twin and parsed[1] in BLOCKING:
            return status.instance_id
    return None


async def read_state(client: df.DurableOrchestrationClient, twin: str) -> dict[str, Any] | None:
    response = await client.read_entity_state(df.EntityId(names.TWIN_STATE, twin))
    if not response.entity_exists or not isinstance(response.entity_state, dict):
        return None
    return response.entity_state


async def stale_holder(client: df.DurableOrchestrationClient, state: dict[str, Any] | None) -> str | None:
    """A lock holder that no longer runs (terminated, crashed): the next operation may replace it."""
    lock = (state or {}).get("lock")
    if not lock:
        return None
    status = await client.get_status(lock["instance"])
    if status and status.runtime_status in ACTIVE:
        return None
    return str(lock["instance"])


def outputs_view(state: TwinState) -> dict[str, Any]:
    """Recorded outputs; secret values replaced by `***`."""
    return {
        name: {"value": REDACTED if o.secret and o.value else o.value, "version": o.version,
               "producer": o.producer, "secret": o.secret}
        for name, o in sorted(state.outputs.items())
    }


def resource_view(rid: str, entry: ResourceRecord) -> dict[str, Any]:
    return {"id": rid, "layer": entry.layer, "provider": entry.provider, "kind": entry.kind, "state": entry.state,
            "action": entry.action, "error": entry.error, "operation": entry.op}


def twin_view(twin: str, data: dict[str, Any]) -> dict[str, Any]:
    state = TwinState.from_dict(data)
    lock = state.lock
    view = {
        "twin": twin,
        "resources": [resource_view(rid, e) for rid, e in state.resources.items()],
        "outputs": outputs_view(state),
        "wires": len(state.wires),
        "behind": behind(state),  # consumers not yet given an output's latest version
        "operation": None if lock is None else {"instanceId": lock.instance, "operation": lock.operation},
    }
    return scrub(view, state.secret_values())


def deployment_view(status: Any, data: dict[str, Any] | None) -> dict[str, Any]:
    """`GET /api/deployments/{id}`: status, per-layer progress, per-resource action, outputs, errors.

    Counts come from the operation's own progress (its custom status), which outlives the
    records: a destroy forgets every resource it deletes, a deploy those it prunes."""
    state = TwinState.from_dict(data or {})
    instance = status.instance_id
    custom = status.custom_status if isinstance(status.custom_status, dict) else {}
    runtime = status.runtime_status.value if status.runtime_status is not None else None
    resources = [resource_view(rid, e) for rid, e in state.resources.items() if e.op == instance]
    progress = custom.get("actions") if isinstance(custom.get("actions"), dict) else None
    counts = {a: int(progress.get(a, 0)) if progress is not None else sum(1 for r in resources if r["action"] == a)
              for a in ACTIONS}
    failed = [r for r in resources if r["state"] in ("failed", "delete-failed")]
    errors = [{"resource": r["id"], "message": r["error"]} for r in failed if r["error"]]
    if runtime == "Failed":
        message = status.output if isinstance(status.output, str) else json.dumps(status.output)
        if not any(message and e["message"] and e["message"] in message for e in errors):
            errors.append({"resource": (custom.get("error") or {}).get("resource", ""), "message": _failure_text(message)})
    operation = custom.get("operation") or (parse_instance_id(instance or "") or ("", ""))[1]
    summary_text = ", ".join(f"{counts[a]} {a}" for a in ("created", "updated", "unchanged"))
    if operation == "destroy":
        summary_text = f"{counts['deleted']} deleted, {counts['absent']} already gone"
    if operation == "deploy" and runtime == "Completed" and isinstance(status.output, dict):
        deleted = (status.output.get("summary") or {}).get("deleted", 0)
        summary_text += f", {deleted} deleted (no longer in the spec)" if deleted else ""
    if operation == "refresh" and runtime == "Completed" and isinstance(status.output, dict):
        summary_text = (f"{len(status.output.get('read', []))} read, {len(status.output.get('changed', []))} "
                        f"output(s) changed, {len(status.output.get('missing', []))} missing")
    view = {
        "instanceId": instance,
        "name": status.name,
        "twin": custom.get("twin") or (parse_instance_id(instance or "") or ("", ""))[0],
        "operation": operation,
        "runtimeStatus": runtime,
        "createdTime": _iso(status.created_time),
        "lastUpdatedTime": _iso(status.last_updated_time),
        "step": custom.get("step"),
        "layers": custom.get("layers", {}),
        "summary": {"counts": counts, "text": summary_text},
        "resources": resources,
        "outputs": outputs_view(state),
        "errors": errors,
        "result": status.output if runtime == "Completed" else None,
    }
    return scrub(view, state.secret_values())


def _failure_text(message: str | None) -> str:
    """The readable part of a failed orchestration's output (first line, marker removed)."""
    text = (message or "").strip()
    for marker in ("[permanent] ", "[transient] "):
        if marker in text:
            text = text.split(marker, 1)[1]
    return text.split("\n", 1)[0].strip()


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def scrub(view: Any, secrets: list[str]) -> Any:
    """Last line of defence: no known secret value survives anywhere in a response."""
    if not secrets:
        return view
    return json.loads(redact(json.dumps(view), secrets))
