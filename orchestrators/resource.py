"""Per-resource sub-orchestrations: apply (ensure, then poll with durable timers) and remove.

The monitor pattern: an activity starts a long operation and returns a handle; this
orchestration sleeps on a durable timer and polls until done or the deadline passes. Transient
failures are retried with backoff (`call_with_backoff`); permanent ones fail with the resource id.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from orchestrators.common import Gen, OperationFailed, call_with_backoff
from shared.engine import names
from shared.engine.errors import decode
from shared.engine.orchestrations import BatchResult, EngineOptions, ResourceBatch, ResourceStep
from shared.engine.types import EnsureResult, Pending, ResourceCall

bp = df.Blueprint()


def _until_done(ctx: df.DurableOrchestrationContext, call: ResourceCall, result: EnsureResult,
                opts: EngineOptions) -> Gen:
    rid = call.resource.id
    deadline = ctx.current_utc_datetime + timedelta(seconds=opts.poll_timeout_seconds)
    polls = 0
    while result.pending is not None:
        pending = result.pending
        wake = ctx.current_utc_datetime + timedelta(seconds=max(0.0, pending.poll_after_seconds))
        if wake > deadline:
            what = pending.description or "the long operation"
            raise OperationFailed(
                f"[permanent] {rid}: {what} did not finish within {opts.poll_timeout_seconds:.0f} s ({polls} polls)"
            )
        if pending.poll_after_seconds > 0:  # "poll at once" (e.g. a create decided, then made) needs no timer
            yield ctx.create_timer(wake)
        polls += 1
        result = yield from call_with_backoff(ctx, names.RESOURCE_POLL, replace(call, pending=pending), EnsureResult,
                                              opts, rid)
    return replace(result, polls=polls)


def _step(context: df.DurableOrchestrationContext, first: str) -> Gen:
    data = ResourceStep.from_dict(context.get_input())
    call, opts = data.call, data.options
    result = yield from call_with_backoff(context, first, call, EnsureResult, opts, call.resource.id)
    result = yield from _until_done(context, call, result, opts)
    return result.to_dict()


@bp.orchestration_trigger(context_name="context", orchestration=names.RESOURCE_APPLY)
def resource_apply(context: df.DurableOrchestrationContext) -> Gen:
    """Input `ResourceStep`; result `EnsureResult` (with the number of polls)."""
    return (yield from _step(context, names.RESOURCE_ENSURE))


@bp.orchestration_trigger(context_name="context", orchestration=names.RESOURCE_REMOVE)
def resource_remove(context: df.DurableOrchestrationContext) -> Gen:
    """Delete a resource; `absent` (already gone) is success, not an error."""
    return (yield from _step(context, names.RESOURCE_DELETE))


@bp.orchestration_trigger(context_name="context", orchestration=names.RESOURCES_BATCH)
def resources_batch(context: df.DurableOrchestrationContext) -> Gen:
    """Apply or remove a batch of independent resources of one kind (e.g. 100 devices).

    Input `ResourceBatch`. Members run in chunks of `options.max_parallel`, calling the activities
    directly (no sub-orchestration per member: a fleet of devices costs a few episodes per
    chunk, not several per device), with the same rules as one resource: transient failures
    retried with backoff, long operations polled on timers until the deadline. Result
    `BatchResult`; after a failure no new chunk starts, and members not started appear in neither.
    """
    data = ResourceBatch.from_dict(context.get_input())
    opts = data.options
    first = {names.RESOURCE_APPLY: names.RESOURCE_ENSURE, names.RESOURCE_REMOVE: names.RESOURCE_DELETE}.get(data.operation)
    if first is None:
        raise OperationFailed(f"[permanent] resources_batch cannot run {data.operation!r}")
    calls = {c.resource.id: c for c in data.calls}
    results: dict[str, EnsureResult] = {}
    errors: dict[str, str] = {}
    ids = list(calls)
    size = max(1, opts.max_parallel)
    for offset in range(0, len(ids), size):
        if errors:
            break
        yield from _chunk(context, ids[offset:offset + size], calls, first, opts, results, errors)
    return BatchResult(results, errors).to_dict()


def _chunk(context: df.DurableOrchestrationContext, chunk: list[str], calls: dict[str, ResourceCall], first: str,
           opts: EngineOptions, results: dict[str, EnsureResult], errors: dict[str, str]) -> Gen:
    """Drive one chunk to completion: rounds of parallel calls, then one timer before the next."""
    handles: dict[str, Pending] = {}  # id -> pending handle (poll next) ; absent: call `first`
    attempts = dict.fromkeys(chunk, 1)
    polls = dict.fromkeys(chunk, 0)
    backoff = opts.retry_first_seconds
    deadline = context.current_utc_datetime + timedelta(seconds=opts.poll_timeout_seconds)
    todo = list(chunk)
    while todo:
        tasks: list[Any] = [
            context.call_activity(names.RESOURCE_POLL if rid in handles else first,
                                  replace(calls[rid], pending=handles.get(rid)).to_dict()) for rid in todo]
        with contextlib.suppress(Exception):  # task_all fails fast; settle each task below
            yield context.task_all(tasks)
        waits: list[float] = []
        retry = False
        next_todo: list[str] = []
        for rid, task in zip(todo, tasks, strict=True):
            try:
                result = EnsureResult.from_dict((yield task))
            except Exception as exc:
                failure = decode(str(exc))
                if failure.transient and attempts[rid] < opts.retry_attempts:
                    attempts[rid] += 1
                    retry = True
                    next_todo.append(rid)
                else:
                    suffix = f" (after {attempts[rid]} attempts)" if failure.transient else ""
                    message = failure.message if failure.message.startswith(f"{rid}:") else f"{rid}: {failure.message}"
                    errors[rid] = message + suffix
                continue
            if result.pending is not None:
                handles[rid] = result.pending
                polls[rid] += 1
                waits.append(result.pending.poll_after_seconds)
                next_todo.append(rid)
            else:
                handles.pop(rid, None)
                results[rid] = replace(result, polls=polls[rid])
        todo = next_todo
        if not todo:
            return
        if retry:
            waits.append(backoff)
            backoff = min(backoff * 2, opts.retry_max_seconds)
        wake = context.current_utc_datetime + timedelta(seconds=max(0.0, min(waits)))
        if wake > deadline:
            for rid in todo:
                errors[rid] = f"{rid}: did not finish within {opts.poll_timeout_seconds:.0f} s ({polls[rid]} polls)"
            return
        if min(waits) > 0:
            yield context.create_timer(wake)
