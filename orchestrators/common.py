"""Deterministic building blocks shared by the orchestrators (no I/O, no clock, no randomness).

Each helper is a generator used with `yield from` inside an orchestrator, so the durable calls
it makes appear in the caller's history in order. Values crossing the activity and entity
boundary are the typed payloads of `shared.engine`, converted to JSON only there.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, TypeVar

import azure.durable_functions as df

from shared.contracts import OutputChangedData
from shared.engine import names
from shared.engine.errors import decode
from shared.engine.names import StateOp
from shared.engine.orchestrations import BatchResult, EngineOptions, Propagation, ResourceBatch, ResourceStep
from shared.engine.state import (
    AcquireRequest,
    AcquireResult,
    Desired,
    RecordApplied,
    ReleaseRequest,
    ReleaseResult,
    TwinState,
    desired_settings,
)
from shared.engine.types import (
    EnsureResult,
    EventBatch,
    Payload,
    Pending,
    Resource,
    ResourceCall,
    SettingsApplied,
    TwinEvent,
)

Gen = Generator[Any, Any, Any]
P = TypeVar("P", bound=Payload)


class OperationFailed(Exception):
    """A failure the orchestration reports; its text keeps the `[kind] resource: message` shape."""


def state_entity(twin: str) -> df.EntityId:
    return df.EntityId(names.TWIN_STATE, twin)


def call_state(ctx: df.DurableOrchestrationContext, twin: str, operation: StateOp, request: Payload | None = None) -> Any:
    """The durable task of one `twin_state` operation (its result is JSON: convert it)."""
    return ctx.call_entity(state_entity(twin), str(operation), None if request is None else request.to_dict())


def signal_state(ctx: df.DurableOrchestrationContext, twin: str, operation: StateOp, request: Payload) -> None:
    ctx.signal_entity(state_entity(twin), str(operation), request.to_dict())


def read_state(ctx: df.DurableOrchestrationContext, twin: str) -> Gen:
    data = yield call_state(ctx, twin, StateOp.GET)
    return TwinState.from_dict(data or {})


_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")


def child_id(parent: str, *parts: str) -> str:
    """A deterministic instance id for a sub-orchestration (no `/`, which breaks status URLs)."""
    return ":".join([parent, *(_UNSAFE.sub("~", p) for p in parts)])


def call_with_backoff(ctx: df.DurableOrchestrationContext, activity: str, payload: Payload, result_type: type[P],
                      opts: EngineOptions, where: str) -> Gen:
    """Call an activity; retry transient failures with exponential backoff on durable timers.

    The SDK's own retry is constant-interval and cannot tell transient from permanent, so the
    loop is explicit here. Permanent failures (and exhausted retries) raise `OperationFailed`.
    Returns the activity's result as `result_type`.
    """
    delay = opts.retry_first_seconds
    attempt = 1
    data = payload.to_dict()
    while True:
        try:
            result = yield ctx.call_activity(activity, data)
            return result_type.from_dict(result)
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


def acquire(ctx: df.DurableOrchestrationContext, twin: str, operation: str, opts: EngineOptions,
            replace: str | None) -> Gen:
    """Take the twin's lock; returns the twin's state as of that moment (`TwinState`). A
    propagation holding it is waited for (it is short); another deploy, destroy or rotation is a
    conflict."""
    waited = 0.0
    delay = 1.0
    request = AcquireRequest(ctx.instance_id, operation, ctx.current_utc_datetime.isoformat(), replace)
    while True:
        result = AcquireResult.from_dict((yield call_state(ctx, twin, StateOp.ACQUIRE, request)))
        if result.acquired:
            return result.state or TwinState()
        if result.operation != "propagate" or waited >= opts.lock_wait_seconds:
            raise OperationFailed(
                f"[permanent] twin {twin}: another operation ({result.operation or 'unknown'} "
                f"{result.holder}) is running; wait for it to finish"
            )
        yield ctx.create_timer(ctx.current_utc_datetime + timedelta(seconds=delay))
        waited += delay
        delay = min(delay * 2, 10.0)


def release_draining(ctx: df.DurableOrchestrationContext, twin: str, opts: EngineOptions) -> Gen:
    """Release the lock; while consumers are behind (an output changed and was not yet applied
    to them, whoever recorded it), apply them first. Returns what was applied."""
    done = Propagation()
    failure: OperationFailed | None = None
    for _ in range(opts.drain_rounds):
        result = ReleaseResult.from_dict((yield call_state(ctx, twin, StateOp.RELEASE, ReleaseRequest(ctx.instance_id))))
        if result.released:
            return done
        try:
            done += yield from propagate_once(ctx, twin, None, opts)
        except OperationFailed as exc:
            failure = exc  # the consumers stay behind in the state: the next drain retries them
            break
    yield call_state(ctx, twin, StateOp.RELEASE, ReleaseRequest(ctx.instance_id, force=True))
    if failure is not None:
        raise failure
    return done


def resource_call(twin: str, state: TwinState, resource: Resource, settings: dict[str, str | None]) -> ResourceCall:
    """The call for a resource: its wired settings now, and its recorded outputs (a reconcile hint)."""
    return ResourceCall(twin, resource, settings, state.current_outputs(resource.id))


def fan_out(ctx: df.DurableOrchestrationContext, activity: str, payloads: dict[str, Payload], opts: EngineOptions,
            tag: str) -> Gen:
    """Call `activity` once per key, all in parallel; returns ({key: JSON result}, {key: failure message}).

    All calls of a round run in parallel and are settled one by one (`task_all` fails fast); keys
    that failed transiently are retried together in the next round, after a backoff timer.
    Activities are called directly (no sub-orchestration each), which keeps a fan-out of hundreds
    close to the time of one call. `tag` only names the round in logs.
    """
    results: dict[str, Any] = {}
    failed: dict[str, str] = {}
    pending = sorted(payloads)
    data = {key: payload.to_dict() for key, payload in payloads.items()}
    delay = opts.retry_first_seconds
    attempt = 1
    while pending:
        tasks = [ctx.call_activity(activity, data[key]) for key in pending]
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


def settings_rounds(ctx: df.DurableOrchestrationContext, calls: dict[str, ResourceCall], opts: EngineOptions,
                    tag: str) -> Gen:
    """`settings_apply` for every consumer (`fan_out`), then again, after the shortest wait asked,
    for those whose cloud still rolls the new settings out, until each is done or the poll
    deadline passes. Returns ({consumer: whether it wrote}, {consumer: failure message})."""
    deadline = ctx.current_utc_datetime + timedelta(seconds=opts.poll_timeout_seconds)
    changed: dict[str, bool] = {}
    errors: dict[str, str] = {}
    todo: dict[str, Payload] = dict(calls)
    polls = 0
    while todo:
        results, failed = yield from fan_out(ctx, names.SETTINGS_APPLY, todo, opts, tag)
        errors.update(failed)
        waiting: dict[str, Pending] = {}
        for consumer, raw in results.items():
            applied = SettingsApplied.from_dict(raw)
            if applied.pending is None:
                changed[consumer] = applied.changed
            else:
                waiting[consumer] = applied.pending
        if not waiting:
            break
        wake = ctx.current_utc_datetime + timedelta(seconds=max(0.0, min(p.poll_after_seconds for p in waiting.values())))
        if wake > deadline:
            for consumer, still in sorted(waiting.items()):
                errors[consumer] = _strip_where(f"{still.description or 'its new settings'} did not finish "
                                                f"within {opts.poll_timeout_seconds:g} s ({polls} polls)", consumer)
            break
        if wake > ctx.current_utc_datetime:
            yield ctx.create_timer(wake)
        polls += 1
        todo = {c: replace(calls[c], pending=pending) for c, pending in waiting.items()}
    return changed, errors


def apply_consumers(ctx: df.DurableOrchestrationContext, twin: str, state: TwinState, wanted: dict[str, Desired],
                    opts: EngineOptions, tag: str) -> Gen:
    """One read-modify-write per consumer (`settings_rounds`: polled while the cloud rolls it out),
    then their applied versions are recorded. Returns (Propagation, failure messages)."""
    calls = {c: resource_call(twin, state, state.resources[c].resource(c), w.settings) for c, w in wanted.items()}
    outcome, errors = yield from settings_rounds(ctx, calls, opts, tag)
    applied = {c: wanted[c].versions for c in sorted(outcome) if wanted[c].versions}
    if applied:
        signal_state(ctx, twin, StateOp.RECORD_APPLIED, RecordApplied(applied))
    done = Propagation(tuple(c for c in sorted(outcome) if outcome[c]), tuple(c for c in sorted(outcome) if not outcome[c]))
    return done, [errors[c] for c in sorted(errors)]


def propagate_once(ctx: df.DurableOrchestrationContext, twin: str, changed: Iterable[str] | None,
                   opts: EngineOptions, state: TwinState | None = None) -> Gen:
    """Re-apply the consumers of `changed` (all when None) that are behind, from the latest
    outputs (`state` when the caller has just read it, under the lock); consumers already holding
    the latest versions are counted unchanged, unread."""
    if state is None:
        state = yield from read_state(ctx, twin)
    outputs = None if changed is None else list(changed)
    wanted = desired_settings(state, outputs)
    current = [c for c in desired_settings(state, outputs, only_behind=False) if c not in wanted]
    done, failed = yield from apply_consumers(ctx, twin, state, wanted, opts, f"p{ctx.new_uuid()[:8]}")
    if failed:
        raise OperationFailed(f"[permanent] propagation failed for {len(failed)} consumer(s): " + "; ".join(failed[:5]))
    return done + Propagation(unchanged=tuple(current))


def publish_task(ctx: df.DurableOrchestrationContext, twin: str, events: list[tuple[str, dict[str, Any]]]) -> Any:
    """The durable task publishing `events` ((type, data) pairs) as CloudEvents (ids deterministic)."""
    batch = EventBatch(tuple(TwinEvent(kind, twin, ctx.new_uuid(), data) for kind, data in events))
    return ctx.call_activity(names.EVENTS_PUBLISH, batch.to_dict())


def publish(ctx: df.DurableOrchestrationContext, twin: str, events: list[tuple[str, dict[str, Any]]]) -> Gen:
    """Publish and wait. An undeliverable notification never fails an operation: the state is
    the source of truth, and propagation is level-triggered."""
    if events:
        yield from settle_side(ctx, publish_task(ctx, twin, events))


def output_event(twin: str, name: str, version: int, producer: str, value: str, secret: bool) -> tuple[str, dict[str, Any]]:
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
    return names.EVENT_OUTPUT_CHANGED, data


@dataclass(frozen=True)
class Batching:
    """Group ready nodes of the same key (and the same dependents) into one task.

    A plan with thousands of devices would otherwise give the walking orchestration one
    sub-orchestration per device, and Durable replays the whole history on every completion
    (quadratic). `key(id)` says which nodes may share a batch (None: never batched); at least
    `threshold` ready leaves of a key form batches of up to `size`; `start(ids, slots)` returns
    one task whose result is a `BatchResult`.
    """

    key: Callable[[str], Any]
    start: Callable[[list[str], int], Any]
    threshold: int = 16
    size: int = 100

    @classmethod
    def by_kind(cls, resources: dict[str, Resource], start: Callable[[list[str], int], Any],
                opts: EngineOptions) -> Batching | None:
        """Batch resources of the same layer and kind (devices, device twins, ...)."""
        if opts.batch_threshold <= 1:
            return None
        return cls(lambda rid: (resources[rid].layer, resources[rid].kind), start, opts.batch_threshold, opts.batch_size)


def resource_starters(
    ctx: df.DurableOrchestrationContext, operation: str, call_for: Callable[[str], ResourceCall], opts: EngineOptions
) -> tuple[Callable[[str], Any], Callable[[list[str], int], Any]]:
    """`walk`'s `start` (one resource) and `Batching`'s `start` (several) for `operation`
    (`names.RESOURCE_APPLY` or `names.RESOURCE_REMOVE`): sub-orchestrations of the calls
    `call_for` builds, with ids derived from the parent's so replays find them again."""

    def start(rid: str) -> Any:
        step = ResourceStep(call_for(rid), opts)
        return ctx.call_sub_orchestrator(operation, step.to_dict(), child_id(ctx.instance_id, rid))

    def start_batch(rids: list[str], slots: int) -> Any:
        batch = ResourceBatch(operation, tuple(call_for(rid) for rid in rids), opts)
        data = batch.to_dict()
        data["options"]["max_parallel"] = slots
        return ctx.call_sub_orchestrator(names.RESOURCES_BATCH, data, child_id(ctx.instance_id, "batch", rids[0]))

    return start, start_batch


def walk(
    ctx: df.DurableOrchestrationContext,
    ids: list[str],
    waits_for: dict[str, set[str]],
    start: Callable[[str], Any],
    finish: Callable[[str, EnsureResult | None, str | None], None],
    max_parallel: int,
    flush: Callable[[], list[Any]] | None = None,
    batching: Batching | None = None,
    settle: Callable[[Any], Gen] | None = None,
) -> Gen:
    """Run a dependency graph with bounded parallelism, starting each node as soon as the nodes
    it waits for are done (not layer by layer).

    `start(id)` returns a durable task. When it ends, `finish(id, result, error)` (plain code, no
    waiting: state is written with entity signals) takes the result in, then the nodes it
    unblocks start. At most `max_parallel` resource operations run at once (a batch of leaves
    uses up to that many slots). `flush()` runs before each wait and may return side tasks (e.g.
    publishing the events gathered so far), which run beside the graph and never block it; each
    is settled by `settle(task)` (a generator; default: wait, log a failure) when it ends, and the
    walk waits for those still running before it returns. Every completion costs the
    orchestration an episode (a replay of its whole history): `flush` should keep few in flight. After the first
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
    running: list[tuple[Any, list[str], int, bool]] = []  # (task, nodes, slots, batched)
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
        while ready and failure is None and sum(slots for _, _, slots, _ in running) < limit:
            node = ready.pop(0)
            group = batch_for(node)
            if len(group) == 1:
                running.append((start(node), group, 1, False))
            else:
                slots = min(len(group), limit - sum(s for _, _, s, _ in running))
                running.append((batching.start(group, slots), group, slots, True))  # type: ignore[union-attr]

    def flushed() -> None:
        if flush is not None:
            side.extend(flush())

    def settled(task: Any) -> Gen:
        if settle is not None:
            yield from settle(task)
        else:
            yield from settle_side(ctx, task)

    def done(node: str, result: EnsureResult) -> None:
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
            yield from settled(winner)
            continue
        index = next(k for k, (task, *_) in enumerate(running) if task is winner)
        task, nodes, _, batched = running.pop(index)
        try:
            result = yield task
        except Exception as exc:
            message = decode(str(exc)).message
            for node in nodes:
                failure = failure or (node, message)
                finish(node, None, message)
            continue
        if not batched:
            done(nodes[0], EnsureResult.from_dict(result))
        else:
            outcome = BatchResult.from_dict(result)
            for node in nodes:
                if node in outcome.errors:
                    failure = failure or (node, outcome.errors[node])
                    finish(node, None, outcome.errors[node])
                elif node in outcome.results:
                    done(node, outcome.results[node])
        launch()
    for task in side:
        yield from settled(task)
    return failure


def settle_side(ctx: df.DurableOrchestrationContext, task: Any) -> Gen:
    """Consume a side task; its failure is logged, never raised (notifications are best effort)."""
    try:
        yield task
    except Exception as exc:
        if not ctx.is_replaying:
            logging.getLogger("orchestrators").warning("side task failed: %s", decode(str(exc)).message)
