"""`destroy_twin`: delete every recorded resource in reverse dependency order, then clear the state.

A resource is deleted once every resource that needs it is gone; independent deletions run in
parallel (bounded). A resource already gone counts as success (`absent`). On a failure the
state keeps what still exists, so running destroy again continues where it stopped.
"""

from __future__ import annotations

import azure.durable_functions as df

from orchestrators.common import (
    Batching,
    Gen,
    OperationFailed,
    acquire,
    call_state,
    resource_call,
    resource_starters,
    signal_state,
    walk,
)
from orchestrators.progress import Progress
from shared.engine import names
from shared.engine.errors import decode
from shared.engine.names import StateOp
from shared.engine.orchestrations import DestroyResult, EngineOptions, TwinOperation
from shared.engine.state import ForgetResource, MarkResource, ReleaseRequest, TwinState
from shared.engine.types import EnsureResult, ResourceCall

bp = df.Blueprint()


def wired_settings(state: TwinState, rid: str) -> dict[str, str | None]:
    """The recorded values of the non-secret outputs wired into `rid`: what a delete may need to
    find what the resource made (a role assignment's principal), never a secret."""
    return {w.setting: state.outputs[w.output].value for w in state.wires
            if w.consumer == rid and w.output in state.outputs and not state.outputs[w.output].secret}


def remove_resources(context: df.DurableOrchestrationContext, twin: str, state: TwinState, rids: list[str],
                     opts: EngineOptions, progress: Progress) -> Gen:
    """Delete the recorded resources `rids`, each once every one of them that needs it is gone
    (independent ones in parallel, bounded); a deleted one is forgotten by the state entity, a
    failed one stays recorded as `delete-failed` so a re-run continues. Returns the walk's
    failure, or None. Used by `destroy_twin` (every resource) and `deploy_twin` (those no longer
    in the spec)."""
    wanted = set(rids)
    order = [rid for rid in reversed(list(state.resources)) if rid in wanted]
    resources = {rid: state.resources[rid].resource(rid) for rid in order}
    # Reverse edges: a resource waits for everything that needs it.
    waits_for: dict[str, set[str]] = {rid: set() for rid in order}
    for rid in order:
        for need in resources[rid].needs:
            if need in waits_for:
                waits_for[need].add(rid)

    def call_for(rid: str) -> ResourceCall:
        progress.started(rid)
        return resource_call(twin, state, resources[rid], wired_settings(state, rid))

    start, start_batch = resource_starters(context, names.RESOURCE_REMOVE, call_for, opts)

    def finish(rid: str, result: EnsureResult | None, error: str | None) -> None:
        if result is None:
            progress.finished(rid, None)
            progress.fail(rid, error or "failed")
            signal_state(context, twin, StateOp.MARK_RESOURCE,
                         MarkResource(rid, "delete-failed", error, context.instance_id))
        else:
            progress.finished(rid, "deleted" if result.action != "absent" else "absent")
            signal_state(context, twin, StateOp.FORGET_RESOURCE, ForgetResource(rid))
        context.set_custom_status(progress.status())

    failure = yield from walk(context, order, waits_for, start, finish, opts.max_parallel,
                              batching=Batching.by_kind(resources, start_batch, opts))
    return failure


@bp.orchestration_trigger(context_name="context", orchestration=names.DESTROY_TWIN)
def destroy_twin(context: df.DurableOrchestrationContext) -> Gen:
    """Input `TwinOperation`; result `DestroyResult`."""
    data = TwinOperation.from_dict(context.get_input())
    twin, opts = data.twin, data.options
    state = yield from acquire(context, twin, "destroy", opts, data.replace)
    failure: tuple[str, str] | None = None
    progress: Progress | None = None
    try:
        progress = Progress.for_resources("destroy", twin, [r.resource(rid) for rid, r in reversed(state.resources.items())])
        progress.step = "deleting"
        context.set_custom_status(progress.status())
        failure = yield from remove_resources(context, twin, state, list(state.resources), opts, progress)
        if failure is None:
            yield call_state(context, twin, StateOp.CLEAR)
    except Exception as exc:
        failure = failure or ("", decode(str(exc)).message)
    # Consumers left behind are moot for a twin being torn down: unlock without applying them.
    yield call_state(context, twin, StateOp.RELEASE, ReleaseRequest(context.instance_id, force=True))
    if progress is not None:
        progress.step = "failed" if failure else "completed"
        context.set_custom_status(progress.status())
    if failure is not None:
        rid, message = failure
        raise OperationFailed(f"[permanent] {message}" if not rid or message.startswith(rid) else f"[permanent] {rid}: {message}")
    actions = progress.actions if progress is not None else {}
    return DestroyResult(twin, {"deleted": actions.get("deleted", 0), "absent": actions.get("absent", 0)}).to_dict()
