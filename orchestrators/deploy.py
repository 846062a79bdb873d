"""`deploy_twin`: plan, lock, walk the resource graph, record outputs, wire consumers, unlock.

Follow one deployment top to bottom:
1. the plan (built by the `plan_build` activity from the spec; tests may pass a plan directly);
2. the twin's lock in the `twin_state` entity (a running propagation is waited for);
3. the graph walk: each resource in its own `resource_apply` sub-orchestration (ensure, poll with
   timers, transient retries), at most `max_parallel` at once, each started as soon as its needs
   are done; every finished resource is recorded with its outputs (versioned) and each changed
   output is announced as `twin.output.changed`;
4. propagation: every consumer of the produced outputs is re-applied (no write where current);
5. pruning: recorded resources the spec no longer has are deleted, dependents first (unless the
   input says `"prune": false`);
6. release, first applying any output change noted meanwhile; `twin.deployment.completed` or
   `twin.deployment.failed`.
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
    output_event,
    propagate_once,
    publish,
    publish_task,
    release_draining,
    resource_call,
    resource_starters,
    state_entity,
    walk,
)
from orchestrators.destroy import remove_resources
from orchestrators.progress import Progress
from shared.engine import names
from shared.engine.errors import decode

bp = df.Blueprint()


@bp.orchestration_trigger(context_name="context", orchestration=names.DEPLOY_TWIN)
def deploy_twin(context: df.DurableOrchestrationContext) -> Gen:
    """Input {"spec": {...}} or {"plan": {...}}, plus optional "options", "replace" (a stale lock
    holder) and "prune" (default true: delete recorded resources the plan no longer has)."""
    data = context.get_input()
    opts = Options.from_dict(data.get("options"))
    plan = data.get("plan")
    if plan is None:
        plan = yield context.call_activity(names.PLAN_BUILD, {"spec": data.get("spec")})
    twin = plan["twin"]
    if plan.get("problems"):
        raise OperationFailed("[permanent] the plan cannot be deployed: " + "; ".join(plan["problems"]))

    resources = {r["id"]: r for r in plan["resources"]}
    secret = {o["name"] for o in plan.get("outputs", []) if o.get("secret")}
    progress = Progress.for_resources("deploy", twin, plan["resources"], len(plan.get("outputs", [])))
    progress.step = "waiting for the twin's lock"
    context.set_custom_status(progress.status())
    yield from acquire(context, twin, "deploy", opts, data.get("replace"))

    produced: list[str] = []
    given: dict[str, dict[str, Any]] = {}  # the wired settings each resource got in `ensure`
    events: list[dict[str, Any]] = []  # CloudEvents not yet published
    records: list[dict[str, Any]] = []  # finished resources not yet sent to the state entity
    failure: tuple[str, str] | None = None
    try:
        yield context.call_entity(state_entity(twin), "set_plan", {"twin": twin, "wires": plan.get("wires", [])})
        state = yield context.call_entity(state_entity(twin), "get")
        values = {name: o["value"] for name, o in state.get("outputs", {}).items()}
        versions = {name: (o["value"], o["version"]) for name, o in state.get("outputs", {}).items()}
        progress.outputs_available = len(values)
        progress.step = "deploying"
        context.set_custom_status(progress.status())

        wires_into: dict[str, list[dict[str, Any]]] = {}
        for wire in plan.get("wires", []):
            wires_into.setdefault(wire["consumer"], []).append(wire)

        def call_for(rid: str) -> dict[str, Any]:
            settings = {w["setting"]: values[w["output"]] for w in wires_into.get(rid, []) if w["output"] in values}
            given[rid] = settings
            progress.started(rid)
            return resource_call(twin, state, resources[rid], settings)

        start, start_batch = resource_starters(context, names.RESOURCE_APPLY, call_for, opts)

        def finish(rid: str, result: dict[str, Any] | None, error: str | None) -> None:
            """Take the result in before dependents start (they read `values`), queue its record
            for the state entity (sent by `flush` as one signal) and its events. Versions are
            computed here exactly as the entity computes them: the twin's lock guarantees no
            other writer meanwhile."""
            resource = resources[rid]
            entry = {k: resource.get(k) for k in ("layer", "provider", "kind", "needs", "produces", "config")}
            entry |= {"id": rid, "op": context.instance_id}
            if result is None:
                progress.finished(rid, None)
                progress.fail(rid, error or "failed")
                records.append(entry | {"state": "failed", "action": None, "error": error})
                context.set_custom_status(progress.status())
                return
            outputs = {n: {"value": v, "secret": n in secret} for n, v in result.get("outputs", {}).items()}
            records.append(entry | {"state": "deployed", "action": result["action"], "error": None, "outputs": outputs})
            for name, output in outputs.items():
                values[name] = output["value"]
                produced.append(name)
                old = versions.get(name)
                if old is None or old[0] != output["value"]:
                    versions[name] = (output["value"], (old[1] if old else 0) + 1)
                    events.append(output_event(twin, name, versions[name][1], rid, output["value"], name in secret))
            progress.outputs_available = len(values)
            if progress.finished(rid, result["action"]):
                layer = resource.get("layer", "")
                events.append({"type": names.EVENT_LAYER_COMPLETED,
                               "data": {"twin": twin, "layer": layer, "provider": "+".join(progress.providers[layer]),
                                        "resources": progress.total[layer]}})
            context.set_custom_status(progress.status())

        def flush() -> Any:
            """Before each wait: record what finished (one signal) and publish its events as one
            batch, beside the graph walk."""
            if records:
                context.signal_entity(state_entity(twin), "record_resources", {"entries": list(records)})
                records.clear()
            if not events:
                return None
            task = publish_task(context, twin, list(events))
            events.clear()
            return task

        order = [r["id"] for r in plan["resources"]]
        waits_for = {rid: set(resources[rid].get("needs") or ()) for rid in order}
        failure = yield from walk(context, order, waits_for, start, finish, opts.max_parallel, flush,
                                  Batching.by_kind(resources, start_batch, opts))

        propagation: dict[str, Any] = {"changed": [], "unchanged": []}
        if failure is None:
            progress.step = "wiring consumers"
            context.set_custom_status(progress.status())
            propagation = yield from propagate_once(context, twin, sorted(set(produced)), opts, known=given)
            pruned = [rid for rid in state.get("resources", {}) if rid not in resources]
            if pruned and data.get("prune", True):
                progress.step = f"removing {len(pruned)} resource(s) no longer in the spec"
                context.set_custom_status(progress.status())
                failure = yield from remove_resources(context, twin, state, pruned, opts, progress)
    except Exception as exc:
        failure = failure or ("", decode(str(exc)).message)
    progress.step = "releasing the twin's lock"
    context.set_custom_status(progress.status())
    try:
        yield from release_draining(context, twin, opts)
    except Exception as exc:
        failure = failure or ("", decode(str(exc)).message)

    summary = {k: progress.actions.get(k, 0) for k in ("created", "updated", "unchanged", "deleted")}
    if failure is not None:
        rid, message = failure
        progress.step = "failed"
        if progress.error is None:
            progress.fail(rid, message)
        context.set_custom_status(progress.status())
        yield from publish(context, twin, [{"type": names.EVENT_DEPLOYMENT_FAILED,
                                            "data": {"twin": twin, "resource": rid, "message": progress.error["message"]
                                                     if progress.error else message, "instance": context.instance_id}}])
        raise OperationFailed(f"[permanent] {rid + ': ' if rid and not message.startswith(rid) else ''}{message}")
    progress.step = "completed"
    context.set_custom_status(progress.status())
    yield from publish(context, twin, [{"type": names.EVENT_DEPLOYMENT_COMPLETED,
                                        "data": {"twin": twin, "instance": context.instance_id, "summary": summary}}])
    return {
        "twin": twin,
        "operation": "deploy",
        "summary": summary,
        "resources": len(order),
        "propagation": {"changed": len(propagation["changed"]), "unchanged": len(propagation["unchanged"])},
    }
