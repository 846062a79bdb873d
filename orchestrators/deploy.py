"""`deploy_twin`: lock, walk the resource graph, record outputs, wire consumers, prune, unlock.

Follow one deployment top to bottom:
1. the plan arrives in the input (the HTTP API builds it once from the spec);
2. the twin's lock in the `twin_state` entity (a running propagation is waited for);
3. the graph walk: each resource in its own `resource_apply` sub-orchestration (ensure, poll with
   timers, transient retries), at most `max_parallel` at once, each started as soon as its needs
   are done; every finished resource is recorded with its outputs (versioned) and the versions of
   the wired settings it was given, and each changed output is announced as `twin.output.changed`;
4. pruning: recorded resources the spec no longer has are deleted, dependents first (unless the
   input says `"prune": false`);
5. release: consumers still behind (a wired output recorded after they were ensured, or changed
   meanwhile by anyone) are re-applied first; consumers already holding every latest version are
   not touched; `twin.deployment.completed` or `twin.deployment.failed`.
"""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from orchestrators.common import (
    Batching,
    Gen,
    OperationFailed,
    acquire,
    output_event,
    publish,
    publish_task,
    release_draining,
    resource_call,
    resource_starters,
    signal_state,
    walk,
)
from orchestrators.destroy import remove_resources
from orchestrators.progress import Progress
from shared.engine import names
from shared.engine.errors import decode
from shared.engine.names import StateOp
from shared.engine.orchestrations import DeployInput, DeployResult, Propagation, PropagationCounts
from shared.engine.state import (
    OutputValue,
    PlanWires,
    RecordedResource,
    RecordResources,
    ResourceRecord,
    record_outputs,
)
from shared.engine.types import EnsureResult, ResourceCall

bp = df.Blueprint()


@bp.orchestration_trigger(context_name="context", orchestration=names.DEPLOY_TWIN)
def deploy_twin(context: df.DurableOrchestrationContext) -> Gen:
    """Input `DeployInput`; result `DeployResult`."""
    data = DeployInput.from_dict(context.get_input())
    plan, opts = data.plan, data.options
    twin = plan.twin
    if plan.problems:
        raise OperationFailed("[permanent] the plan cannot be deployed: " + "; ".join(plan.problems))

    resources = {r.id: r for r in plan.resources}
    secret = plan.secret_outputs
    progress = Progress.for_resources("deploy", twin, list(plan.resources), len(plan.outputs))
    progress.step = "waiting for the twin's lock"
    context.set_custom_status(progress.status())
    state = yield from acquire(context, twin, "deploy", opts, data.replace)

    events: list[tuple[str, dict[str, Any]]] = []  # CloudEvents not yet published
    records: list[RecordedResource] = []  # finished resources not yet sent to the state entity
    given: dict[str, dict[str, int]] = {}  # per resource: the output versions its ensure was given
    failure: tuple[str, str] | None = None
    propagation = Propagation()
    try:
        signal_state(context, twin, StateOp.SET_PLAN, PlanWires(twin, plan.wires))
        outputs = dict(state.outputs)  # this deployment's view; versions as the entity computes them
        progress.outputs_available = len(outputs)
        progress.step = "deploying"
        context.set_custom_status(progress.status())

        wires_into: dict[str, list[Any]] = {}
        for wire in plan.wires:
            wires_into.setdefault(wire.consumer, []).append(wire)

        def call_for(rid: str) -> ResourceCall:
            wired = [w for w in wires_into.get(rid, []) if w.output in outputs]
            given[rid] = {w.output: outputs[w.output].version for w in wired}
            progress.started(rid)
            return resource_call(twin, state, resources[rid], {w.setting: outputs[w.output].value for w in wired})

        start, start_batch = resource_starters(context, names.RESOURCE_APPLY, call_for, opts)

        def finish(rid: str, result: EnsureResult | None, error: str | None) -> None:
            """Take the result in before dependents start (they read `outputs`), queue its record
            for the state entity (sent by `flush` as one signal) and its events."""
            resource = resources[rid]
            if result is None:
                progress.finished(rid, None)
                progress.fail(rid, error or "failed")
                records.append(RecordedResource(rid, ResourceRecord.of(
                    resource, state="failed", action=None, error=error, op=context.instance_id)))
                context.set_custom_status(progress.status())
                return
            produced = {n: OutputValue(v, n in secret) for n, v in result.outputs.items()}
            records.append(RecordedResource(rid, ResourceRecord.of(
                resource, state="deployed", action=result.action, error=None, op=context.instance_id,
                applied=given.get(rid, {})), produced))
            for name, version in record_outputs(outputs, rid, produced).items():
                if version.changed:
                    events.append(output_event(twin, name, version.version, rid, produced[name].value, name in secret))
            progress.outputs_available = len(outputs)
            if progress.finished(rid, result.action):
                layer = resource.layer
                events.append((names.EVENT_LAYER_COMPLETED,
                               {"twin": twin, "layer": layer, "provider": "+".join(progress.providers[layer]),
                                "resources": progress.total[layer]}))
            context.set_custom_status(progress.status())

        def flush(idle: bool) -> Any:
            """Before each wait: record what finished (one signal) and, unless a publication is
            still in flight, publish the events gathered so far as one batch beside the walk."""
            if records:
                signal_state(context, twin, StateOp.RECORD_RESOURCES, RecordResources(tuple(records)))
                records.clear()
            if not events or not idle:
                return None
            task = publish_task(context, twin, list(events))
            events.clear()
            return task

        order = [r.id for r in plan.resources]
        waits_for = {rid: set(resources[rid].needs) for rid in order}
        failure = yield from walk(context, order, waits_for, start, finish, opts.max_parallel, flush,
                                  Batching.by_kind(resources, start_batch, opts))
        flush(False)  # the last records (their events go out with the deployment's own, below)

        if failure is None:
            pruned = [rid for rid in state.resources if rid not in resources]
            if pruned and data.prune:
                progress.step = f"removing {len(pruned)} resource(s) no longer in the spec"
                context.set_custom_status(progress.status())
                failure = yield from remove_resources(context, twin, state, pruned, opts, progress)
    except Exception as exc:
        failure = failure or ("", decode(str(exc)).message)
    progress.step = "wiring consumers and releasing the twin's lock"
    context.set_custom_status(progress.status())
    try:
        propagation = yield from release_draining(context, twin, opts)
    except Exception as exc:
        failure = failure or ("", decode(str(exc)).message)

    summary = {k: progress.actions.get(k, 0) for k in ("created", "updated", "unchanged", "deleted")}
    if failure is not None:
        rid, message = failure
        progress.step = "failed"
        if progress.error is None:
            progress.fail(rid, message)
        context.set_custom_status(progress.status())
        yield from publish(context, twin, [*events, (names.EVENT_DEPLOYMENT_FAILED,
                                                     {"twin": twin, "resource": rid, "message": progress.error["message"]
                                                      if progress.error else message, "instance": context.instance_id})])
        raise OperationFailed(f"[permanent] {rid + ': ' if rid and not message.startswith(rid) else ''}{message}")
    progress.step = "completed"
    context.set_custom_status(progress.status())
    yield from publish(context, twin, [*events, (names.EVENT_DEPLOYMENT_COMPLETED,
                                                 {"twin": twin, "instance": context.instance_id, "summary": summary})])
    result = DeployResult(twin, summary, len(order),
                          PropagationCounts(len(propagation.changed), len(propagation.unchanged)))
    return result.to_dict()
