"""`twin_state`: the Durable entity holding one twin's recorded resources and versioned outputs.

Keyed by twin name. The entity serialises every write for a twin, which is what makes the
per-twin lock and the hand-off of changes race-free: a change recorded while an operation holds
the lock leaves its consumers *behind* (`shared.engine.state.desired_settings`), and `release`
refuses to unlock while any consumer is behind, answering which, so the holder applies them first.
Nothing recorded is dropped: until a propagation gives a consumer the latest versions, the state
itself says it is behind.

The state and every operation's input and result are the typed values of `shared.engine.state`,
converted to JSON only at this boundary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import azure.durable_functions as df

from shared.engine import names
from shared.engine.names import StateOp
from shared.engine.state import (
    AcquireRequest,
    AcquireResult,
    ForgetResource,
    Lock,
    MarkResource,
    NoInput,
    Observed,
    ObserveOutputs,
    OutputVersion,
    PlanWires,
    RecordApplied,
    RecordedResource,
    RecordOutput,
    RecordResources,
    ReleaseRequest,
    ReleaseResult,
    ResourceRecord,
    TwinState,
    behind,
    record_outputs,
)
from shared.engine.state import OutputValue as Value
from shared.engine.types import Payload


def acquire(state: TwinState, data: AcquireRequest) -> AcquireResult:
    lock = state.lock
    if lock is None or lock.instance == data.instance or (data.replace and lock.instance == data.replace):
        state.lock = Lock(data.instance, data.operation, data.since)
        return AcquireResult(acquired=True, state=state)
    return AcquireResult(acquired=False, holder=lock.instance, operation=lock.operation)


def release(state: TwinState, data: ReleaseRequest) -> ReleaseResult:
    lock = state.lock
    if lock is None or lock.instance != data.instance:
        return ReleaseResult(released=True)
    late = [] if data.force else behind(state)
    if late:
        return ReleaseResult(released=False, behind=tuple(late))
    state.lock = None
    return ReleaseResult(released=True)


def set_plan(state: TwinState, data: PlanWires) -> None:
    state.wires = data.wires
    state.twin = data.twin


def _record(state: TwinState, entry: RecordedResource) -> dict[str, OutputVersion]:
    old = state.resources.get(entry.id)
    record = entry.record
    if old is not None:
        record = replace(record, applied={**old.applied, **record.applied}, observed_at=old.observed_at)
    state.resources[entry.id] = record
    return record_outputs(state.outputs, entry.id, entry.outputs)


def record_resources(state: TwinState, data: RecordResources) -> None:
    for entry in data.entries:
        _record(state, entry)


def mark_resource(state: TwinState, data: MarkResource) -> None:
    old = state.resources.get(data.id, ResourceRecord())
    state.resources[data.id] = replace(old, state=data.state, error=data.error, op=data.op or old.op)


def record_output(state: TwinState, data: RecordOutput) -> OutputVersion:
    return record_outputs(state.outputs, data.producer, {data.name: Value(data.value, data.secret)})[data.name]


def observe_outputs(state: TwinState, data: ObserveOutputs) -> Observed:
    """Record a refresh's reading unless a later reading of the same producer is already recorded
    (ISO-8601 UTC times compare as strings)."""
    entry = state.resources.get(data.producer)
    if entry is None or data.observed_at < entry.observed_at:
        return Observed(stale=True)
    state.resources[data.producer] = replace(entry, observed_at=data.observed_at)
    return Observed(stale=False, outputs=record_outputs(state.outputs, data.producer, data.outputs))


def record_applied(state: TwinState, data: RecordApplied) -> None:
    for consumer, versions in data.applied.items():
        entry = state.resources.get(consumer)
        if entry is not None:
            state.resources[consumer] = replace(entry, applied={**entry.applied, **versions})


def forget_resource(state: TwinState, data: ForgetResource) -> None:
    state.resources.pop(data.id, None)
    for name in [n for n, o in state.outputs.items() if o.producer == data.id]:
        del state.outputs[name]


def clear(state: TwinState, data: NoInput) -> None:
    """Forget everything but the lock (the twin was destroyed by the lock's holder)."""
    state.twin, state.resources, state.outputs, state.wires = "", {}, {}, ()


def get(state: TwinState, data: NoInput) -> TwinState:
    return state


@dataclass(frozen=True)
class Operation:
    request: type[Payload]
    handler: Callable[[TwinState, Any], Payload | None]


OPERATIONS: dict[str, Operation] = {
    StateOp.GET: Operation(NoInput, get),
    StateOp.ACQUIRE: Operation(AcquireRequest, acquire),
    StateOp.RELEASE: Operation(ReleaseRequest, release),
    StateOp.SET_PLAN: Operation(PlanWires, set_plan),
    StateOp.RECORD_RESOURCES: Operation(RecordResources, record_resources),
    StateOp.MARK_RESOURCE: Operation(MarkResource, mark_resource),
    StateOp.RECORD_OUTPUT: Operation(RecordOutput, record_output),
    StateOp.RECORD_APPLIED: Operation(RecordApplied, record_applied),
    StateOp.OBSERVE_OUTPUTS: Operation(ObserveOutputs, observe_outputs),
    StateOp.FORGET_RESOURCE: Operation(ForgetResource, forget_resource),
    StateOp.CLEAR: Operation(NoInput, clear),
}


def apply(state: TwinState, operation: str, data: Any) -> Any:
    """Run one operation on `state` with JSON input; its JSON result."""
    op = OPERATIONS.get(operation)
    if op is None:
        raise ValueError(f"twin_state has no operation {operation!r}; known: {', '.join(sorted(OPERATIONS))}")
    result = op.handler(state, op.request.from_dict(data or {}))
    return None if result is None else result.to_dict()


bp = df.Blueprint()


@bp.entity_trigger(context_name="context", entity_name=names.TWIN_STATE)
def twin_state(context: df.DurableEntityContext) -> None:
    state = TwinState.from_dict(context.get_state(dict) or {})
    result = apply(state, context.operation_name or "", context.get_input())
    context.set_state(state.to_dict())
    context.set_result(result)
