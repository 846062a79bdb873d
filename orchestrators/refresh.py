"""`refresh_outputs`: notice output changes made outside a deployment, and hand them to propagation.

Someone recreates the Digital Twins instance (new host name), a key is regenerated in the portal:
the recorded outputs are then stale and the consumers wired to them are wrong. This reads the
producers (read-only calls), records every output whose value changed (a new version) and
publishes `twin.output.changed` for it; the Event Grid trigger then starts `propagate_outputs`,
which rewrites only the consumers of those outputs. Nothing else is written.

Started by Azure Resource Manager's resource events (`control_plane/events.py`), by
`POST /api/twins/{twin}/refresh`, or by hand. It does not take the twin's lock (propagation
already defers to a running operation), but it waits while a deploy, destroy or rotation holds
it: those record outputs themselves, and a half-built producer must not be read as a change.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from orchestrators.common import (
    Gen,
    OperationFailed,
    Options,
    fan_out,
    output_event,
    publish,
    resource_call,
    state_entity,
)
from shared.contracts import is_secret_output
from shared.engine import names

bp = df.Blueprint()

LOCK_POLL_SECONDS = 5.0
LOCK_WAIT_SECONDS = 3600.0
# Outputs made by the control plane itself (a generated token): nothing outside can change them.
SELF_MADE_PROVIDERS = frozenset({"control"})


@dataclass
class RefreshResult:
    twin: str
    operation: str = names.REFRESH_OUTPUTS
    read: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # output names with a new version
    missing: list[str] = field(default_factory=list)  # producers that no longer exist
    failed: list[str] = field(default_factory=list)  # producers that could not be read


def producers(state: dict[str, Any], wanted: list[str] | None) -> list[str]:
    """Deployed resources with outputs a cloud could change (all, or those in `wanted`)."""
    return sorted(
        rid for rid, entry in state.get("resources", {}).items()
        if entry.get("produces") and entry.get("state") == "deployed"
        and entry.get("provider") not in SELF_MADE_PROVIDERS and (wanted is None or rid in wanted)
    )


def _wait_for_operations(context: df.DurableOrchestrationContext, twin: str) -> Gen:
    waited = 0.0
    while True:
        state = yield context.call_entity(state_entity(twin), "get")
        lock = state.get("lock")
        if not lock or lock.get("operation") == "propagate":
            return state
        if waited >= LOCK_WAIT_SECONDS:
            raise OperationFailed(f"[permanent] twin {twin}: {lock.get('operation')} {lock.get('instance')} "
                                  f"still holds the twin after {waited:.0f} s; refresh again later")
        context.set_custom_status({"operation": "refresh", "twin": twin, "step": f"waiting for {lock.get('operation')}"})
        yield context.create_timer(context.current_utc_datetime + timedelta(seconds=LOCK_POLL_SECONDS))
        waited += LOCK_POLL_SECONDS


@bp.orchestration_trigger(context_name="context", orchestration=names.REFRESH_OUTPUTS)
def refresh_outputs(context: df.DurableOrchestrationContext) -> Gen:
    """Input {"twin": name, "resources": [resource ids] | None (every producer), "reason": str,
    "options": {...}}."""
    data = context.get_input()
    twin, opts = data["twin"], Options.from_dict(data.get("options"))
    result = RefreshResult(twin)
    state = yield from _wait_for_operations(context, twin)
    rids = producers(state, data.get("resources"))
    context.set_custom_status({"operation": "refresh", "twin": twin, "step": "reading", "producers": len(rids)})
    reads = {rid: resource_call(twin, state, state["resources"][rid] | {"id": rid}, {}) for rid in rids}
    observed, failed = yield from fan_out(context, names.RESOURCE_READ, reads, opts, f"refresh {twin}")
    result.failed = sorted(failed)
    events: list[dict[str, Any]] = []
    for rid in sorted(observed):
        seen = observed[rid]
        result.read.append(rid)
        if not seen.get("exists"):
            result.missing.append(rid)  # its outputs stay recorded: consumers keep the last known value
            continue
        produces = set(state["resources"][rid].get("produces") or ())
        outputs = {name: {"value": value, "secret": is_secret_output(name)}
                   for name, value in (seen.get("outputs") or {}).items() if name in produces}
        if not outputs:
            continue
        recorded = yield context.call_entity(state_entity(twin), "observe_outputs",
                                             {"producer": rid, "outputs": outputs, "observed_at": seen["observed_at"]})
        for name, outcome in sorted(recorded["outputs"].items()):
            if outcome["changed"]:
                result.changed.append(name)
                events.append(output_event(twin, name, outcome["version"], rid, outputs[name]["value"],
                                           outputs[name]["secret"]))
    yield from publish(context, twin, events)
    context.set_custom_status({"operation": "refresh", "twin": twin, "step": "completed",
                               "changed": len(result.changed), "missing": len(result.missing)})
    if failed:
        first = failed[min(failed)]  # already names its resource
        raise OperationFailed(f"[permanent] refresh could not read {len(failed)} producer(s); first {first}")
    return asdict(result)
