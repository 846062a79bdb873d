"""Deterministic building blocks shared by the orchestrators (no I/O, no clock, no randomness).

Each helper is a generator used with `yield from` inside an orchestrator, so the durable calls
it makes appear in the caller's history in order.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, fields
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from shared.contracts import OutputChangedData
from shared.engine import names
from shared.engine.errors import decode

Gen = Generator[Any, Any, Any]


@dataclass(frozen=True)
class Options:
    """Engine knobs, passed in the orchestration input (the HTTP starter reads app settings)."""

    max_parallel: int = 8
    retry_attempts: int = 6
    retry_first_seconds: float = 2.0
    retry_max_seconds: float = 60.0
    poll_timeout_seconds: float = 1800.0
    lock_wait_seconds: float = 120.0
    grace_seconds: float = 30.0
    drain_rounds: int = 20
    batch_threshold: int = 16
    batch_size: int = 100

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Options:
        data = data or {}
        known = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key in known and isinstance(value, int | float) and not isinstance(value, bool):
                values[key] = int(value) if known[key] in ("int", int) else float(value)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class OperationFailed(Exception):
    """A failure the orchestration reports; its text keeps the `[kind] resource: message` shape."""


def state_entity(twin: str) -> df.EntityId:
    return df.EntityId(names.TWIN_STATE, twin)


_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")


def child_id(parent: str, *parts: str) -> str:
    """A deterministic instance id for a sub-orchestration (no `/`, which breaks status URLs)."""
    return ":".join([parent, *(_UNSAFE.sub("~", p) for p in parts)])


def call_with_backoff(ctx: df.DurableOrchestrationContext, activity: str, payload: Any, opts: Options, where: str) -> Gen:
    """Call an activity; retry transient failures with exponential backoff on durable timers.

    The SDK's own retry is constant-interval and cannot tell transient from permanent, so the
    loop is explicit here. Permanent failures (and exhausted retries) raise `OperationFailed`.
    """
    delay = opts.retry_first_seconds
    attempt = 1
    while True:
        try:
            result = yield ctx.call_activity(activity, payload)
            return result
        except Exception as exc:
            failure = decode(str(exc))
            if not failure.transient or attempt >= opts.retry_attempts:
                suffix = f" (after {attempt} attempts)" if failure.transient else ""
                raise OperationFailed(f"[permanent] {_strip_where(failure.message, where)}{suffix}") from None
            yield ctx.create_timer(ctx.current_utc_datetime + timedelta(seconds=delay))
            attempt += 1
            delay = min(delay * 2, opts.retry_max_seconds)


def _strip_where(message: str, where: str) -> str:
    """`where: message`, without repeating `where` when the activity already named it."""
    return message if message.startswith(f"{where}:") else f"{where}: {message}"


def acquire(ctx: df.DurableOrchestrationContext, twin: str, operation: str, opts: Options, replace: str | None) -> Gen:
    """Take the twin's lock. A propagation holding it is waited for (it is short); another deploy,
    destroy or rotation is a conflict."""
    waited = 0.0
    delay = 1.0
    while True:
        result = yield ctx.call_entity(
            state_entity(twin),
            "acquire",
            {"instance": ctx.instance_id, "operation": operation, "replace": replace,
             "since": ctx.current_utc_datetime.isoformat()},
        )
        if result["acquired"]:
            return
        if result.get("operation") != "propagate" or waited >= opts.lock_wait_seconds:
            raise OperationFailed(
                f"[permanent] twin {twin}: another operation ({result.get('operation') or 'unknown'} "
                f"{result['holder']}) is running; wait for it to finish"
            )
        yield ctx.create_timer(ctx.current_utc_datetime + timedelta(seconds=delay))
        waited += delay
        delay = min(delay * 2, 10.0)


def release_draining(ctx: df.DurableOrchestrationContext, twin: str, opts: Options) -> Gen:
    """Release the lock, first applying every output change noted while we held it."""
    for _ in range(opts.drain_rounds):
        result = yield ctx.call_entity(state_entity(twin), "release", {"instance": ctx.instance_id})
        if result["released"]:
            return
        yield from propagate_once(ctx, twin, None if result["all"] else result["pending"], opts)
    yield ctx.call_entity(state_entity(twin), "release", {"instance": ctx.instance_id, "force": True})


def desired_settings(state: dict[str, Any], changed: list[str] | None) -> dict[str, dict[str, Any]]:
    """Per deployed consumer: every wired setting whose output is recorded (level-triggered).

    Only consumers of `changed` outputs are included (all consumers when `changed` is None).
    Returns {consumer: {"settings": {setting: value}, "versions": {setting: version}}}.
    """
    outputs = state.get("outputs", {})
    resources = state.get("resources", {})
    touched = None if changed is None else set(changed)
    result: dict[str, dict[str, Any]] = {}
    for wire in state.get("wires", []):
        consumer, output = wire["consumer"], wire["output"]
        if consumer not in resources or resources[consumer].get("state") != "deployed":
            continue
        if touched is not None and output not in touched:
            continue
        result.setdefault(consumer, {"settings": {}, "versions": {}})
    for wire in state.get("wires", []):
        consumer, output = wire["consumer"], wire["output"]
        if consumer in result and output in outputs:
            result[consumer]["settings"][wire["setting"]] = outputs[output]["value"]
            result[consumer]["versions"][wire["setting"]] = outputs[output]["version"]
    return {c: v for c, v in result.items() if v["settings"]}


def resource_call(twin: str, state: dict[str, Any], resource: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """The `ResourceCall` dict for a resource entry (plan resource or recorded state)."""
    outputs = state.get("outputs", {})
    current = {n: o["value"] for n, o in outputs.items() if o.get("producer") == resource["id"]}
    plain = {k: resource.get(k) for k in ("id", "layer", "provider", "kind", "needs", "produces", "config")}
    return {"twin": twin, "resource": plain, "settings": settings, "current": current, "pending": None}


def fan_out(ctx: df.DurableOrchestrationContext, activity: str, payloads: dict[str, Any], opts: Options,
            tag: str) -> Gen:
    """Call `activity` once per key, all in parallel; returns ({key: result}, {key: failure message}).

    All calls of a round run in parallel and are settled one by one (`task_all` fails fast); keys
    that failed transiently are retried together in the next round, after a backoff timer.
    Activities are called directly (no sub-orchestration each), which keeps a fan-out of hundreds
    close to the time of one call. `tag` only names the round in logs.
    """
    results: dict[str, Any] = {}
    failed: dict[str, str] = {}
    pending = sorted(payloads)
    delay = opts.retry_first_seconds
    attempt = 1
    while pending:
        tasks = [ctx.call_activity(activity, payloads[key]) for key in pending]
        # task_all fails fast on the first error; each task is then settled one by one below.
        with contextlib.suppress(Exception):
            yield ctx.task_all(tasks)
        retry: list[str] = []
        for key, task in zip(pending, tasks, strict=True):
            try:
                results[key] = yield task
            except Exception as exc:
                failure = decode(str(exc))
                if failure.transient and attempt < opts.retry_attempts:
                    retry.append(key)
                else:
                    suffix = f" (after {attempt} attempts)" if failure.transient else ""
                    failed[key] = _strip_where(failure.message, key) + suffix
        if not retry:
            break
        if not ctx.is_replaying:
            logging.getLogger("orchestrators").info("%s: retrying %d call(s) in %.1f s", tag, len(retry), delay)
        yield ctx.create_timer(ctx.current_utc_datetime + timedelta(seconds=delay))
        pending, attempt, delay = retry, attempt + 1, min(delay * 2, opts.retry_max_seconds)
    return results, failed


def apply_consumers(
    ctx: df.DurableOrchestrationContext, twin: str, state: dict[str, Any], wanted: dict[str, dict[str, Any]],
    opts: Options, tag: str,
) -> Gen:
    """One read-modify-write per consumer (`fan_out`); returns (changed, unchanged, failed messages)."""
    payloads = {c: resource_call(twin, state, state["resources"][c] | {"id": c}, wanted[c]["settings"])
                for c in wanted}
    results, errors = yield from fan_out(ctx, names.SETTINGS_APPLY, payloads, opts, tag)
    changed = [c for c in sorted(results) if results[c]["changed"]]
    unchanged = [c for c in sorted(results) if not results[c]["changed"]]
    applied = {c: wanted[c]["versions"] for c in changed + unchanged}
    if applied:
        yield ctx.call_entity(state_entity(twin), "record_applied", {"applied": applied})
    return changed, unchanged, [errors[c] for c in sorted(errors)]


def propagate_once(
    ctx: df.DurableOrchestrationContext, twin: str, changed: list[str] | None, opts: Options,
    known: dict[str, dict[str, Any]] | None = None,
) -> Gen:
    """Re-read the latest outputs and re-apply the consumers of `changed` (all when None).

    `known` maps consumers to the settings this same orchestration already gave them (a deploy
    passes each resource its wired settings in `ensure`); a consumer whose latest desired
    settings equal those needs no call at all.
    """
    state = yield ctx.call_entity(state_entity(twin), "get")
    wanted = desired_settings(state, changed)
    current = {c: w for c, w in wanted.items() if known is not None and known.get(c) == w["settings"]}
    to_apply = {c: w for c, w in wanted.items() if c not in current}
    tag = f"p{ctx.new_uuid()[:8]}"
    changed_c, unchanged_c, failed = yield from apply_consumers(ctx, twin, state, to_apply, opts, tag)
    if current:
        yield ctx.call_entity(state_entity(twin), "record_applied",
                              {"applied": {c: w["versions"] for c, w in current.items()}})
    if failed:
        raise OperationFailed(f"[permanent] propagation failed for {len(failed)} consumer(s): " + "; ".join(failed[:5]))
    return {"changed": changed_c, "unchanged": sorted(unchanged_c + list(current))}


def publish_task(ctx: df.DurableOrchestrationContext, twin: str, events: list[dict[str, Any]]) -> Any:
    """The durable task publishing `events` as CloudEvents (ids deterministic: `new_uuid`)."""
    batch = [{"type": e["type"], "twin": twin, "id": ctx.new_uuid(), "data": e["data"]} for e in events]
    return ctx.call_activity(names.EVENTS_PUBLISH, batch)


def publish(ctx: df.DurableOrchestrationContext, twin: str, events: list[dict[str, Any]]) -> Gen:
    """Publish and wait. An undeliverable notification never fails an operation: the state is
    the source of truth, and propagation is level-triggered."""
    if events:
        yield from _settle_side(ctx, publish_task(ctx, twin, events))


def output_event(twin: str, name: str, version: int, producer: str, value: str, secret: bool) -> dict[str, Any]:
    """A `twin.output.changed` event (`shared.contracts.OutputChangedData`); the value only if not secret."""
    data: dict[str, Any] = {
        "twin": twin,
        OutputChangedData.OUTPUT: name,
        OutputChangedData.VERSION: version,
        OutputChangedData.PRODUCER: producer,
        OutputChangedData.SECRET: secret,
    }
    if not secret:
        data[OutputChangedData.VALUE] = value
    return {"type": names.EVENT_OUTPUT_CHANGED, "data": data}


@dataclass(frozen=True)
class Batching:
    """Group ready nodes of the same key (and the same dependents) into one task.

    A plan with thousands of devices would otherwise give the walking orchestration one
    sub-orchestration per device, and Durable replays the whole history on every completion
    (quadratic). `key(id)` says which nodes may share a batch (None: never batched); at least
    `threshold` ready leaves of a key form batches of up to `size`; `start(ids, slots)` returns
    one task whose result is `{"results": {id: result}, "errors": {id: message}}`.
    """

    key: Any
    start: Any
    threshold: int = 16
    size: int = 100

    @classmethod
    def by_kind(cls, resources: dict[str, dict[str, Any]], start: Any, opts: Options) -> Batching | None:
        """Batch resources of the same layer and kind (devices, device twins, ...)."""
        if opts.batch_threshold <= 1:
            return None
        return cls(lambda rid: (resources[rid].get("layer"), resources[rid].get("kind")), start,
                   opts.batch_threshold, opts.batch_size)


def resource_starters(
    ctx: df.DurableOrchestrationContext, operation: str, call_for: Callable[[str], dict[str, Any]], opts: Options
) -> tuple[Callable[[str], Any], Callable[[list[str], int], Any]]:
    """`walk`'s `start` (one resource) and `Batching`'s `start` (several) for `operation`
    (`names.RESOURCE_APPLY` or `names.RESOURCE_REMOVE`): sub-orchestrations of the calls
    `call_for` builds, with ids derived from the parent's so replays find them again."""

    def start(rid: str) -> Any:
        return ctx.call_sub_orchestrator(
            operation, {"call": call_for(rid), "options": opts.to_dict()}, child_id(ctx.instance_id, rid),
        )

    def start_batch(rids: list[str], slots: int) -> Any:
        return ctx.call_sub_orchestrator(
            names.RESOURCES_BATCH,
            {"operation": operation, "calls": [call_for(rid) for rid in rids],
             "options": opts.to_dict() | {"max_parallel": slots}},
            child_id(ctx.instance_id, "batch", rids[0]),
        )

    return start, start_batch


def walk(
    ctx: df.DurableOrchestrationContext,
    ids: list[str],
    waits_for: dict[str, set[str]],
    start: Any,
    finish: Any,
    max_parallel: int,
    flush: Any = None,
    batching: Batching | None = None,
) -> Gen:
    """Run a dependency graph with bounded parallelism, starting each node as soon as the nodes
    it waits for are done (not layer by layer).

    `start(id)` returns a durable task. When it ends, `finish(id, result, error)` (plain code, no
    waiting: state is written with entity signals) takes the result in, then the nodes it
    unblocks start. At most `max_parallel` resource operations run at once (a batch of leaves
    uses up to that many slots). `flush()` may return a side task (e.g. publishing the events
    gathered so far); side tasks run beside the graph and never block it. After the first
    failure nothing new starts; running nodes are awaited and finished. Returns `(id, message)`
    of the first failure, or None.
    """
    limit = max(1, max_parallel)
    members = set(ids)
    blockers = {i: set(waits_for.get(i, ())) & members for i in ids}
    dependents: dict[str, list[str]] = {}
    for node in ids:
        for blocker in sorted(blockers[node]):
            dependents.setdefault(blocker, []).append(node)
    ready = [i for i in ids if not blockers[i]]
    running: list[tuple[Any, list[str], int]] = []  # (task, nodes, slots); one node unless batched
    side: list[Any] = []
    failure: tuple[str, str] | None = None

    def group_key(node: str) -> Any:
        # Members share their dependents, which wait for all of them anyway: a batch delays no one.
        key = batching.key(node) if batching is not None else None
        return None if key is None else (key, tuple(dependents.get(node, ())))

    def batch_for(node: str) -> list[str]:
        key = group_key(node)
        if batching is None or key is None:
            return [node]
        same = [n for n in ready if group_key(n) == key]
        if len(same) + 1 < batching.threshold:
            return [node]
        group = [node, *same[: batching.size - 1]]
        for n in group[1:]:
            ready.remove(n)
        return group

    def launch() -> None:
        while ready and failure is None and sum(slots for *_, slots in running) < limit:
            node = ready.pop(0)
            group = batch_for(node)
            if len(group) == 1:
                running.append((start(node), group, 1))
            else:
                slots = min(len(group), limit - sum(s for *_, s in running))
                running.append((batching.start(group, slots), group, slots))  # type: ignore[union-attr]

    def flushed() -> None:
        task = flush() if flush is not None else None
        if task is not None:
            side.append(task)

    def done(node: str, result: Any) -> None:
        finish(node, result, None)
        for dependent in dependents.get(node, []):
            blockers[dependent].discard(node)
            if not blockers[dependent]:
                ready.append(dependent)

    launch()
    while running:
        flushed()
        winner = yield ctx.task_any([task for task, *_ in running] + side)
        if any(winner is task for task in side):
            side[:] = [task for task in side if task is not winner]
            yield from _settle_side(ctx, winner)
            continue
        index = next(k for k, (task, *_) in enumerate(running) if task is winner)
        task, nodes, _ = running.pop(index)
        try:
            result = yield task
        except Exception as exc:
            message = decode(str(exc)).message
            for node in nodes:
                failure = failure or (node, message)
                finish(node, None, message)
            continue
        if len(nodes) == 1 and not (batching is not None and isinstance(result, dict) and "results" in result):
            done(nodes[0], result)
        else:
            for node in nodes:
                if node in result.get("errors", {}):
                    failure = failure or (node, result["errors"][node])
                    finish(node, None, result["errors"][node])
                elif node in result.get("results", {}):
                    done(node, result["results"][node])
        launch()
    flushed()
    for task in side:
        yield from _settle_side(ctx, task)
    return failure


def _settle_side(ctx: df.DurableOrchestrationContext, task: Any) -> Gen:
    """Consume a side task; its failure is logged, never raised (notifications are best effort)."""
    try:
        yield task
    except Exception as exc:
        if not ctx.is_replaying:
            logging.getLogger("orchestrators").warning("side task failed: %s", decode(str(exc)).message)
