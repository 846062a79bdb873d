"""`destroy_twin`: delete every recorded resource in reverse dependency order, then clear the state.

A resource is deleted once every resource that needs it is gone; independent deletions run in
parallel (bounded). A resource already gone counts as success (`absent`). On a failure the
state keeps what still exists, so running destroy again continues where it stopped.
"""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from orchestrators.common import (
    Batching,
    Gen,
    OperationFailed,
    Options,
    acquire,
    resource_call,
    resource_starters,
    state_entity,
    walk,
)
from orchestrators.progress import Progress
from shared.engine import names
from shared.engine.errors import decode

bp = df.Blueprint()


def remove_resources(context: df.DurableOrchestrationContext, twin: str, state: dict[str, Any], rids: list[str],
                     opts: Options, progress: Progress) -> Gen:
    """Delete the recorded resources `rids`, each once every one of them that needs it is gone
    (independent ones in parallel, bounded); a deleted one is forgotten by the state entity, a
    failed one stays recorded as `delete-failed` so a re-run continues. Returns the walk's
    failure, or None. Used by `destroy_twin` (every resource) and `deploy_twin` (those no longer
    in the spec)."""
    resources: dict[str, dict[str, Any]] = state.get("resources", {})
    order = [rid for rid in reversed(list(resources)) if rid in set(rids)]
    entries_by_id = {rid: resources[rid] | {"id": rid} for rid in order}
    # Reverse edges: a resource waits for everything that needs it.
    waits_for: dict[str, set[str]] = {rid: set() for rid in order}
    for rid in order:
        for need in resources[rid].get("needs") or ():
            if need in waits_for:
                waits_for[need].add(rid)

    def call_for(rid: str) -> dict[str, Any]:
        progress.started(rid)
        return resource_call(twin, state, entries_by_id[rid], {})

    start, start_batch = resource_starters(context, names.RESOURCE_REMOVE, call_for, opts)

    def finish(rid: str, result: dict[str, Any] | None, error: str | None) -> None:
        if result is None:
            progress.finished(rid, None)
            progress.fail(rid, error or "failed")
            context.signal_entity(state_entity(twin), "record_resource",
                                  {"id": rid, "state": "delete-failed", "error": error, "op": context.instance_id})
        else:
            progress.finished(rid, "deleted" if result.get("action") != "absent" else "absent")
            context.signal_entity(state_entity(twin), "forget_resource", {"id": rid})
        context.set_custom_status(progress.status())

    failure = yield from walk(context, order, waits_for, start, finish, opts.max_parallel,
                              batching=Batching.by_kind(entries_by_id, start_batch, opts))
    return failure


@bp.orchestration_trigger(context_name="context", orchestration=names.DESTROY_TWIN)
def destroy_twin(context: df.DurableOrchestrationContext) -> Gen:
    """Input {"twin": name, "options": {...}, "replace": stale lock holder | None}."""
    data = context.get_input()
    twin, opts = data["twin"], Options.from_dict(data.get("options"))
    yield from acquire(context, twin, "destroy", opts, data.get("replace"))
    failure: tuple[str, str] | None = None
    progress: Progress | None = None
    try:
        state = yield context.call_entity(state_entity(twin), "get")
        resources: dict[str, dict[str, Any]] = state.get("resources", {})
        progress = Progress.for_resources("destroy", twin, [resources[rid] | {"id": rid} for rid in reversed(list(resources))])
        progress.step = "deleting"
        context.set_custom_status(progress.status())
        failure = yield from remove_resources(context, twin, state, list(resources), opts, progress)
        if failure is None:
            yield context.call_entity(state_entity(twin), "clear")
    except Exception as exc:
        failure = failure or ("", decode(str(exc)).message)
    # Pending output changes are moot for a twin being torn down: unlock without applying them.
    yield context.call_entity(state_entity(twin), "release", {"instance": context.instance_id, "force": True})
    if progress is not None:
        progress.step = "failed" if failure else "completed"
        context.set_custom_status(progress.status())
    if failure is not None:
        rid, message = failure
        raise OperationFailed(f"[permanent] {message}" if not rid or message.startswith(rid) else f"[permanent] {rid}: {message}")
    actions = progress.actions if progress is not None else {}
    return {"twin": twin, "operation": "destroy",
            "summary": {"deleted": actions.get("deleted", 0), "absent": actions.get("absent", 0)}}
