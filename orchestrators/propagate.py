"""`propagate_outputs`: re-apply the consumers of a twin's outputs that are behind (level-triggered).

Started by the Event Grid trigger for every `twin.output.changed`, by `refresh_outputs` for what it
recorded, and by the drain timer. It re-reads the latest outputs, so duplicated, late or reordered
events converge to the same settings, and it skips consumers whose applied versions are current.
If another operation holds the twin's lock, this one ends at once as "deferred": the holder may
not unlock while any consumer is behind (`twin_state`'s `release`), so it applies the change.
"""

from __future__ import annotations

import azure.durable_functions as df

from orchestrators.common import Gen, call_state, propagate_once, release_draining
from shared.engine import names
from shared.engine.names import StateOp
from shared.engine.orchestrations import PropagateInput, PropagateResult
from shared.engine.state import AcquireRequest, AcquireResult, ReleaseRequest

bp = df.Blueprint()


@bp.orchestration_trigger(context_name="context", orchestration=names.PROPAGATE_OUTPUTS)
def propagate_outputs(context: df.DurableOrchestrationContext) -> Gen:
    """Input `PropagateInput`; result `PropagateResult`."""
    data = PropagateInput.from_dict(context.get_input())
    twin, opts = data.twin, data.options
    context.set_custom_status({"operation": "propagate", "twin": twin, "step": "locking"})
    request = AcquireRequest(context.instance_id, "propagate", context.current_utc_datetime.isoformat())
    lock = AcquireResult.from_dict((yield call_state(context, twin, StateOp.ACQUIRE, request)))
    if not lock.acquired:
        context.set_custom_status({"operation": "propagate", "twin": twin, "step": "deferred"})
        return PropagateResult(twin, deferred_to=lock.holder).to_dict()
    context.set_custom_status({"operation": "propagate", "twin": twin, "step": "applying"})
    # No `finally` with yields in orchestrators: the SDK closes suspended generators after each
    # episode, and a yield during GeneratorExit is an error. Catch, release, re-raise instead.
    try:
        result = yield from propagate_once(context, twin, data.outputs, opts, lock.state)
    except Exception:
        # The consumers that failed stay behind in the state; the next drain retries them.
        yield call_state(context, twin, StateOp.RELEASE, ReleaseRequest(context.instance_id, force=True))
        raise
    result += yield from release_draining(context, twin, opts)
    context.set_custom_status({"operation": "propagate", "twin": twin, "step": "completed",
                               "changed": len(result.changed), "unchanged": len(result.unchanged)})
    return PropagateResult(twin, changed=result.changed, unchanged=result.unchanged).to_dict()
