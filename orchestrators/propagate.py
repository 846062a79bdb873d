"""`propagate_outputs`: re-apply the consumers of a twin's outputs (level-triggered).

Started by the Event Grid trigger for every `twin.output.changed` (and runnable by hand). It
re-reads the latest outputs, so duplicated, late or reordered events converge to the same
settings. If another operation holds the twin's lock, the change is noted in the state entity
(in the same entity operation that refused the lock) and that operation applies it before it
unlocks; this orchestration then ends at once as "deferred".
"""

from __future__ import annotations

import azure.durable_functions as df

from orchestrators.common import Gen, Options, propagate_once, release_draining, state_entity
from shared.engine import names

bp = df.Blueprint()


@bp.orchestration_trigger(context_name="context", orchestration=names.PROPAGATE_OUTPUTS)
def propagate_outputs(context: df.DurableOrchestrationContext) -> Gen:
    """Input {"twin": name, "outputs": [names] | None (all), "options": {...}}."""
    data = context.get_input()
    twin, changed = data["twin"], data.get("outputs")
    opts = Options.from_dict(data.get("options"))
    context.set_custom_status({"operation": "propagate", "twin": twin, "step": "locking"})
    lock = yield context.call_entity(
        state_entity(twin), "acquire",
        {"instance": context.instance_id, "operation": "propagate", "defer": True, "changes": changed,
         "since": context.current_utc_datetime.isoformat()},
    )
    if not lock["acquired"]:
        context.set_custom_status({"operation": "propagate", "twin": twin, "step": "deferred"})
        return {"twin": twin, "operation": "propagate", "deferred_to": lock["holder"]}
    context.set_custom_status({"operation": "propagate", "twin": twin, "step": "applying"})
    # No `finally` with yields in orchestrators: the SDK closes suspended generators after each
    # episode, and a yield during GeneratorExit is an error. Catch, release, re-raise instead.
    try:
        result = yield from propagate_once(context, twin, changed, opts)
    except Exception:
        yield from release_draining(context, twin, opts)
        raise
    yield from release_draining(context, twin, opts)
    context.set_custom_status({"operation": "propagate", "twin": twin, "step": "completed",
                               "changed": len(result["changed"]), "unchanged": len(result["unchanged"])})
    return {"twin": twin, "operation": names.PROPAGATE_OUTPUTS, "changed": result["changed"],
            "unchanged": result["unchanged"]}
