"""`deploy_twin`: lock, walk the resource graph, record outputs, wire consumers, prune, unlock.

Follow one deployment top to bottom:
1. the plan arrives in the input (the HTTP API builds it once from the spec);
2. the twin's lock in the `twin_state` entity (a running propagation is waited for);
3. the graph walk: each resource in its own `resource_apply` sub-orchestration (ensure, poll with
   timers, transient retries), at most `max_parallel` at once, each started as soon as its needs
   are done; every finished resource is recorded with its outputs (versioned) and the versions of
   the wired settings it was given, and each changed output is announced as `twin.output.changed`;
   a finished consumer of an output recorded after its ensure (a late-bound wire) is given it
   beside the walk, as soon as it exists (`LateWiring`);
4. pruning: recorded resources the spec no longer has are deleted, dependents first (unless the
   input says `"prune": false`);
5. release: consumers still behind (a wired output recorded after they were ensured, or changed
   meanwhile by anyone) are re-applied first; consumers already holding every latest version are
   not touched; `twin.deployment.completed` or `twin.deployment.failed`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
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
    settle_side,
    signal_state,
    walk,
)
from orchestrators.destroy import remove_resources
from orchestrators.progress import Progress
from shared.engine import names
from shared.engine.errors import decode
from shared.engine.names import StateOp
from shared.engine.orchestrations import DeployInput, DeployResult, Propagation, PropagationCounts
from shared.engine.plan import Wire
from shared.engine.state import (
    Desired,
    OutputRecord,
    OutputValue,
    PlanWires,
    RecordApplied,
    RecordedResource,
    RecordResources,
    ResourceRecord,
    TwinState,
    record_outputs,
)
from shared.engine.types import EnsureResult, ResourceCall, SettingsApplied

bp = df.Blueprint()


@dataclass
class LateWiring:
    """Consumers ensured before an output wired to them was recorded (or before it changed) get
    it beside the walk, as soon as it is, instead of after the walk: the deployment's tail shrinks
    to what is really last. One fan-out in flight at a time (each completion is an episode); a
    consumer whose call fails is simply still behind, and the release applies it."""

    wires_into: dict[str, list[Wire]]
    wires_from: dict[str, list[Wire]]
    given: dict[str, dict[str, int]] = field(default_factory=dict)  # consumer -> output versions it holds
    finished: set[str] = field(default_factory=set)
    due: dict[str, Desired] = field(default_factory=dict)
    in_flight: Any = None
    members: dict[str, tuple[Any, Desired]] = field(default_factory=dict)

    def desired(self, consumer: str, outputs: dict[str, OutputRecord]) -> Desired:
        wired = [w for w in self.wires_into.get(consumer, []) if w.output in outputs]
        return Desired({w.setting: outputs[w.output].value for w in wired},
                       {w.output: outputs[w.output].version for w in wired})

    def check(self, consumer: str, outputs: dict[str, OutputRecord]) -> None:
        if consumer not in self.finished:
            return
        want = self.desired(consumer, outputs)
        if want.versions != self.given.get(consumer, {}):
            self.due[consumer] = want

    def recorded(self, name: str, outputs: dict[str, OutputRecord]) -> None:
        for wire in self.wires_from.get(name, []):
            self.check(wire.consumer, outputs)

    def start(self, context: df.DurableOrchestrationContext, twin: str, state: TwinState,
              resources: dict[str, Any]) -> Any:
        if self.in_flight is not None or not self.due:
            return None
        for consumer, want in sorted(self.due.items()):
            call = resource_call(twin, state, resources[consumer], want.settings)
            self.members[consumer] = (context.call_activity(names.SETTINGS_APPLY, call.to_dict()), want)
        self.due.clear()
        self.in_flight = context.task_all([task for task, _ in self.members.values()])
        return self.in_flight

    def settle(self, context: df.DurableOrchestrationContext, twin: str) -> Gen:
        with contextlib.suppress(Exception):  # task_all fails fast: members are settled one by one below
            yield self.in_flight
        applied: dict[str, dict[str, int]] = {}
        for consumer, (task, want) in sorted(self.members.items()):
            try:
                if SettingsApplied.from_dict((yield task)).pending is not None:
                    continue  # written, not serving yet: still behind, and the release waits for it
            except Exception:
                continue  # still behind: the release applies it
            self.given[consumer] = want.versions
            applied[consumer] = want.versions
        if applied:
            signal_state(context, twin, StateOp.RECORD_APPLIED, RecordApplied(applied))
        self.in_flight, self.members = None, {}


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
    wiring = LateWiring({}, {})
    given = wiring.given  # per resource: the output versions its ensure (or a late wiring) gave it
    publishing: list[Any] = []  # the publication in flight, if any
    failure: tuple[str, str] | None = None
    propagation = Propagation()
    try:
        signal_state(context, twin, StateOp.SET_PLAN, PlanWires(twin, plan.wires))
        outputs = dict(state.outputs)  # this deployment's view; versions as the entity computes them
        progress.outputs_available = len(outputs)
        progress.step = "deploying"
        context.set_custom_status(progress.status())

        for wire in plan.wires:
            wiring.wires_into.setdefault(wire.consumer, []).append(wire)
            wiring.wires_from.setdefault(wire.output, []).append(wire)

        def call_for(rid: str) -> ResourceCall:
            want = wiring.desired(rid, outputs)
            given[rid] = want.versions
            progress.started(rid)
            return resource_call(twin, state, resources[rid], want.settings)

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
            wiring.finished.add(rid)
            wiring.check(rid, outputs)  # an output it is wired to may have changed while it ran
            for name, version in record_outputs(outputs, rid, produced).items():
                if version.changed:
                    events.append(output_event(twin, name, version.version, rid, produced[name].value, name in secret))
                    wiring.recorded(name, outputs)
            progress.outputs_available = len(outputs)
            if progress.finished(rid, result.action):
                layer = resource.layer
                events.append((names.EVENT_LAYER_COMPLETED,
                               {"twin": twin, "layer": layer, "provider": "+".join(progress.providers[layer]),
                                "resources": progress.total[layer]}))
            context.set_custom_status(progress.status())

        def flush() -> list[Any]:
            """Before each wait: record what finished (one signal), and beside the walk give late
            consumers their outputs and publish the events gathered so far (one batch), each
            unless one is still in flight."""
            if records:
                signal_state(context, twin, StateOp.RECORD_RESOURCES, RecordResources(tuple(records)))
                records.clear()
            side = [wiring.start(context, twin, state, resources)]
            if events and not publishing:
                publishing.append(publish_task(context, twin, list(events)))
                events.clear()
                side.append(publishing[0])
            return [task for task in side if task is not None]

        def settle(task: Any) -> Gen:
            if task is wiring.in_flight:
                yield from wiring.settle(context, twin)
            else:
                publishing.clear()
                yield from settle_side(context, task)

        order = [r.id for r in plan.resources]
        waits_for = {rid: set(resources[rid].needs) for rid in order}
        failure = yield from walk(context, order, waits_for, start, finish, opts.max_parallel, flush,
                                  Batching.by_kind(resources, start_batch, opts), settle)
        if records:  # the last ones (their events go out with the deployment's own, below)
            signal_state(context, twin, StateOp.RECORD_RESOURCES, RecordResources(tuple(records)))

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
