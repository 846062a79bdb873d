"""`refresh_outputs`: notice output changes made outside a deployment, and hand them to propagation.

Someone recreates the Digital Twins instance (new host name), a key is regenerated in the portal:
the recorded outputs are then stale and the consumers wired to them are wrong. This reads the
producers (read-only calls), records every output whose value changed (a new version) and
publishes `twin.output.changed` for it, then applies the change itself (`propagate_outputs` as a
sub-orchestration, which rewrites only the consumers behind): the loop closes whether or not the
events route delivers. The event-triggered propagation that may follow finds nothing behind.
Nothing else is written.

Started by Azure Resource Manager's resource events (`control_plane/events.py`), by
`POST /api/twins/{twin}/refresh`, or by hand. It does not take the twin's lock (propagation
already defers to a running operation), but it waits while a deploy, destroy or rotation holds
it: those record outputs themselves, and a half-built producer must not be read as a change.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from orchestrators.common import (
    Gen,
    OperationFailed,
    call_state,
    child_id,
    fan_out,
    output_event,
    publish,
    read_state,
    resource_call,
)
from shared.contracts import is_secret_output
from shared.engine import names
from shared.engine.names import StateOp
from shared.engine.orchestrations import (
    PropagateInput,
    PropagateResult,
    Propagation,
    RefreshInput,
    RefreshResult,
)
from shared.engine.state import Observed, ObserveOutputs, OutputValue, TwinState
from shared.engine.types import Observation, Payload

bp = df.Blueprint()

LOCK_POLL_SECONDS = 5.0
LOCK_WAIT_SECONDS = 3600.0
# Outputs made by the control plane itself (a generated token): nothing outside can change them.
SELF_MADE_PROVIDERS = frozenset({"control"})


def producers(state: TwinState, wanted: tuple[str, ...] | list[str] | None) -> list[str]:
    """Deployed resources with outputs a cloud could change (all, or those in `wanted`)."""
    return sorted(
        rid for rid, entry in state.resources.items()
        if entry.produces and entry.state == "deployed"
        and entry.provider not in SELF_MADE_PROVIDERS and (wanted is None or rid in wanted)
    )


def _wait_for_operations(context: df.DurableOrchestrationContext, twin: str) -> Gen:
    waited = 0.0
    while True:
        state = yield from read_state(context, twin)
        lock = state.lock
        if lock is None or lock.operation == "propagate":
            return state
        if waited >= LOCK_WAIT_SECONDS:
            raise OperationFailed(f"[permanent] twin {twin}: {lock.operation} {lock.instance} "
                                  f"still holds the twin after {waited:.0f} s; refresh again later")
        context.set_custom_status({"operation": "refresh", "twin": twin, "step": f"waiting for {lock.operation}"})
        yield context.create_timer(context.current_utc_datetime + timedelta(seconds=LOCK_POLL_SECONDS))
        waited += LOCK_POLL_SECONDS


@bp.orchestration_trigger(context_name="context", orchestration=names.REFRESH_OUTPUTS)
def refresh_outputs(context: df.DurableOrchestrationContext) -> Gen:
    """Input `RefreshInput`; result `RefreshResult`."""
    data = RefreshInput.from_dict(context.get_input())
    twin, opts = data.twin, data.options
    state = yield from _wait_for_operations(context, twin)
    rids = producers(state, data.resources)
    context.set_custom_status({"operation": "refresh", "twin": twin, "step": "reading", "producers": len(rids)})
    reads: dict[str, Payload] = {rid: resource_call(twin, state, state.resources[rid].resource(rid), {}) for rid in rids}
    observed, failed = yield from fan_out(context, names.RESOURCE_READ, reads, opts, f"refresh {twin}")
    read: list[str] = []
    missing: list[str] = []
    changed: list[str] = []
    events: list[tuple[str, dict[str, Any]]] = []
    for rid in sorted(observed):
        seen = Observation.from_dict(observed[rid])
        read.append(rid)
        if not seen.exists:
            missing.append(rid)  # its outputs stay recorded: consumers keep the last known value
            continue
        produces = set(state.resources[rid].produces)
        outputs = {name: OutputValue(value, is_secret_output(name))
                   for name, value in seen.outputs.items() if name in produces}
        if not outputs:
            continue
        recorded = Observed.from_dict((yield call_state(context, twin, StateOp.OBSERVE_OUTPUTS,
                                                        ObserveOutputs(rid, seen.observed_at, outputs))))
        for name, outcome in sorted(recorded.outputs.items()):
            if outcome.changed:
                changed.append(name)
                events.append(output_event(twin, name, outcome.version, rid, outputs[name].value, outputs[name].secret))
    yield from publish(context, twin, events)
    propagation: Propagation | None = None
    if changed:
        context.set_custom_status({"operation": "refresh", "twin": twin, "step": "applying the changes"})
        applied = PropagateResult.from_dict((yield context.call_sub_orchestrator(
            names.PROPAGATE_OUTPUTS, PropagateInput(twin, tuple(changed), opts).to_dict(),
            child_id(context.instance_id, "propagate"))))
        propagation = Propagation(applied.changed, applied.unchanged)
    context.set_custom_status({"operation": "refresh", "twin": twin, "step": "completed",
                               "changed": len(changed), "missing": len(missing)})
    if failed:
        first = failed[min(failed)]  # already names its resource
        raise OperationFailed(f"[permanent] refresh could not read {len(failed)} producer(s); first {first}")
    return RefreshResult(twin, read=tuple(read), changed=tuple(changed), missing=tuple(missing),
                         failed=tuple(sorted(failed)), propagation=propagation).to_dict()
