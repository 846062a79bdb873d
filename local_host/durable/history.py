"""History events and task-ID allocation: the contract between the host and the SDK's replay.

The SDK (azure-functions-durable 1.x) matches completions to tasks **only by ID**, and numbers
tasks with a counter in the order they are first yielded (children in list order). The host must
number its history events the same way, or results land on the wrong task. The rules, as verified
in `research/durable-internals.md` section 1.6:

| Action                         | IDs used | Events the host writes                         | Completion event |
|--------------------------------|----------|------------------------------------------------|------------------|
| 0 CallActivity, 8 CallHttp     | 1        | TaskScheduled{EventId, Name, Input}            | TaskCompleted{TaskScheduledId, Result} / TaskFailed{TaskScheduledId, Reason, Details} |
| 1 / 3 ...WithRetry             | 1 now; +1 per retry timer, +1 per new attempt | see the retry rule | the final attempt's completion |
| 2 CallSubOrchestrator          | 1        | SubOrchestrationInstanceCreated{EventId, ...}  | SubOrchestrationInstanceCompleted/Failed{TaskScheduledId} |
| 5 CreateTimer                  | 1 (even when isCanceled) | TimerCreated{EventId, FireAt}  | TimerFired{TimerId, FireAt}, once now >= fireAt, never if canceled |
| 6 WaitForExternalEvent         | 0        | none                                           | EventRaised{Name, Input} |
| 7 CallEntity                   | 1        | EventSent{EventId, InstanceId, Name, Input:{"id": reqId, ...}} | EventRaised{Name: reqId, Input:{"result": ...}} |
| 9 SignalEntity, 4 ContinueAsNew| 1        | EventSent / new execution                      | none |
| 11 / 12 WhenAny / WhenAll      | 0 (children use IDs) | none                               | none |

Retry rule (DTFx `RetryInterceptor`, mirrored by the SDK's `RetryAbleTask`): after each failed
attempt the SDK allocates the next ID for a retry timer; when that timer fires it allocates the
next ID for a new attempt if attempts remain. After the LAST attempt fails one more timer is still
created, and only when it fires does the error reach user code.

Because those retry IDs are allocated while the SDK *processes* a completion, and IDs for new
actions are allocated when user code *yields*, the host only feeds an episode at most one
retry-related event, and always first; the allocation order in that episode is then: the retry ID
(if any), followed by the new leaf actions in order. See `split_batch`.

Nondeterminism: after each replay the flattened leaf actions must start with the leaves recorded
before, compared by (action type, name); a mismatch fails the instance with DTFx's wording.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# History event types (HistoryEventType.py).
EXECUTION_STARTED = 0
EXECUTION_COMPLETED = 1
EXECUTION_FAILED = 2
EXECUTION_TERMINATED = 3
TASK_SCHEDULED = 4
TASK_COMPLETED = 5
TASK_FAILED = 6
SUB_ORCHESTRATION_CREATED = 7
SUB_ORCHESTRATION_COMPLETED = 8
SUB_ORCHESTRATION_FAILED = 9
TIMER_CREATED = 10
TIMER_FIRED = 11
ORCHESTRATOR_STARTED = 12
ORCHESTRATOR_COMPLETED = 13
EVENT_SENT = 14
EVENT_RAISED = 15
CONTINUE_AS_NEW = 16

EVENT_NAMES = {
    0: "ExecutionStarted", 1: "ExecutionCompleted", 2: "ExecutionFailed", 3: "ExecutionTerminated",
    4: "TaskScheduled", 5: "TaskCompleted", 6: "TaskFailed", 7: "SubOrchestrationInstanceCreated",
    8: "SubOrchestrationInstanceCompleted", 9: "SubOrchestrationInstanceFailed", 10: "TimerCreated",
    11: "TimerFired", 12: "OrchestratorStarted", 13: "OrchestratorCompleted", 14: "EventSent",
    15: "EventRaised", 16: "ContinueAsNew",
}

# Action types (ActionType.py).
CALL_ACTIVITY = 0
CALL_ACTIVITY_WITH_RETRY = 1
CALL_SUB_ORCHESTRATOR = 2
CALL_SUB_ORCHESTRATOR_WITH_RETRY = 3
CONTINUE_AS_NEW_ACTION = 4
CREATE_TIMER = 5
WAIT_FOR_EXTERNAL_EVENT = 6
CALL_ENTITY = 7
CALL_HTTP = 8
SIGNAL_ENTITY = 9
WHEN_ANY = 11
WHEN_ALL = 12

ACTION_KINDS = {
    CALL_ACTIVITY: "an activity task", CALL_ACTIVITY_WITH_RETRY: "an activity task",
    CALL_SUB_ORCHESTRATOR: "a sub-orchestration", CALL_SUB_ORCHESTRATOR_WITH_RETRY: "a sub-orchestration",
    CONTINUE_AS_NEW_ACTION: "a continue-as-new", CREATE_TIMER: "a timer",
    WAIT_FOR_EXTERNAL_EVENT: "an external event wait", CALL_ENTITY: "an entity call",
    CALL_HTTP: "an HTTP call", SIGNAL_ENTITY: "an entity signal",
}

# Actions that consume one task ID when first scheduled (everything but waits and compounds).
ID_CONSUMING = frozenset({
    CALL_ACTIVITY, CALL_ACTIVITY_WITH_RETRY, CALL_SUB_ORCHESTRATOR, CALL_SUB_ORCHESTRATOR_WITH_RETRY,
    CONTINUE_AS_NEW_ACTION, CREATE_TIMER, CALL_ENTITY, CALL_HTTP, SIGNAL_ENTITY,
})


# Events the SDK's replay never reads (TaskOrchestrationExecutor.process_event ignores them; research
# table 1.2). They stay in the stored history (status API, nondeterminism bookkeeping) but are left
# out of the replay payload: the SDK parses every event's timestamp with dateutil on every replay,
# which is most of the replay cost, and a long chain's replay work grows quadratically.
REPLAY_NEUTRAL = frozenset({TASK_SCHEDULED, SUB_ORCHESTRATION_CREATED, TIMER_CREATED, ORCHESTRATOR_COMPLETED,
                            EXECUTION_COMPLETED, EXECUTION_FAILED, EXECUTION_TERMINATED})


def replay_view(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["EventType"] not in REPLAY_NEUTRAL]


def utc_now() -> datetime:
    return datetime.now(UTC)


def fmt_ts(moment: datetime) -> str:
    """The timestamp format the SDK parses (dateutil), always UTC with a `Z`."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(text: str) -> datetime:
    cleaned = text.rstrip("Z")
    if "." in cleaned:
        head, frac = cleaned.split(".", 1)
        cleaned = f"{head}.{frac[:6].ljust(6, '0')}"
        moment = datetime.strptime(cleaned, "%Y-%m-%dT%H:%M:%S.%f")
    else:
        moment = datetime.strptime(cleaned[:19], "%Y-%m-%dT%H:%M:%S")
    return moment.replace(tzinfo=UTC)


def event(event_type: int, when: datetime, event_id: int = -1, **fields: Any) -> dict[str, Any]:
    """A history event as the SDK expects it: the four positional keys plus named fields."""
    return {"EventType": event_type, "EventId": event_id, "IsPlayed": False, "Timestamp": fmt_ts(when),
            **fields}


@dataclass(frozen=True)
class Leaf:
    """One schedulable action from the flattened action list."""

    action_type: int
    name: str
    action: dict[str, Any]


def leaf_name(action: dict[str, Any]) -> str:
    kind = action.get("actionType")
    if kind in (CALL_ACTIVITY, CALL_ACTIVITY_WITH_RETRY, CALL_SUB_ORCHESTRATOR, CALL_SUB_ORCHESTRATOR_WITH_RETRY):
        return str(action.get("functionName"))
    if kind in (CALL_ENTITY, SIGNAL_ENTITY):
        return f"{action.get('instanceId')}:{action.get('operation')}"
    if kind == WAIT_FOR_EXTERNAL_EVENT:
        return str(action.get("externalEventName"))
    if kind == CALL_HTTP:
        request = action.get("httpRequest") or {}
        return f"{request.get('method')} {request.get('uri')}"
    return ""


def flatten(actions: Iterable[Any]) -> Iterator[Leaf]:
    """Depth-first through `compoundActions`, in order: the order the SDK allocated IDs in."""
    for item in actions:
        if isinstance(item, list):
            yield from flatten(item)
            continue
        kind = item.get("actionType")
        if kind in (WHEN_ANY, WHEN_ALL):
            yield from flatten(item.get("compoundActions") or [])
        else:
            yield Leaf(int(kind), leaf_name(item), item)


def nondeterminism_message(recorded: tuple[int, str, int | None], replayed: Leaf | None) -> str:
    """DTFx's wording for a replay that no longer schedules what a previous execution did."""
    kind, name, task_id = recorded
    seq = "" if task_id is None else f" with sequence ID {task_id}"
    what = ACTION_KINDS.get(kind, "an action")
    message = (f"Non-Deterministic workflow detected: A previous execution of this orchestration scheduled "
               f"{what}{seq} and name '{name}', but the current replay execution ")
    if replayed is None:
        message += "hasn't (yet?) scheduled this task."
    else:
        message += (f"scheduled {ACTION_KINDS.get(replayed.action_type, 'an action')} "
                    f"named '{replayed.name}' instead.")
    return message + (" Was a change made to the orchestrator code after this instance had already "
                      "started running?")


def check_determinism(recorded: list[list[Any]], leaves: list[Leaf]) -> str | None:
    """Compare the recorded (type, name, id) prefix with the replayed leaves; None when consistent."""
    for index, (kind, name, task_id) in enumerate(recorded):
        if index >= len(leaves):
            # A replay that stops early (e.g. the code now fails sooner) is not a schedule mismatch.
            return None
        leaf = leaves[index]
        if leaf.action_type != kind or leaf.name != name:
            return nondeterminism_message((kind, name, task_id), leaf)
    return None


def is_retry_related(evt: dict[str, Any], retry_tasks: dict[str, Any], retry_timers: dict[str, Any]) -> bool:
    """Whether processing this completion makes the SDK allocate (or resolve) retry IDs."""
    kind = evt.get("EventType")
    if kind in (TASK_FAILED, SUB_ORCHESTRATION_FAILED):
        return str(evt.get("TaskScheduledId")) in retry_tasks
    if kind == TIMER_FIRED:
        return str(evt.get("TimerId")) in retry_timers
    return False


def split_batch(events: list[dict[str, Any]], retry_tasks: dict[str, Any],
                retry_timers: dict[str, Any]) -> int:
    """How many of the pending events (in arrival order) go into the next episode.

    At most one retry-related event per episode, and only as the first one (module docstring).
    """
    if not events:
        return 0
    count = 1 if is_retry_related(events[0], retry_tasks, retry_timers) else 0
    for evt in events[count:]:
        if is_retry_related(evt, retry_tasks, retry_timers):
            break
        count += 1
    return count


def parse_out_of_proc(text: str) -> tuple[str, dict[str, Any] | None]:
    """Split the SDK's failure text `msg\\n\\n$OutOfProcData$:{state}` (section 1.3)."""
    marker = "\n\n$OutOfProcData$:"
    if marker not in text:
        return text, None
    message, _, state = text.partition(marker)
    try:
        parsed = json.loads(state)
    except json.JSONDecodeError:
        return message, None
    return message, parsed if isinstance(parsed, dict) else None


def friendly_event(evt: dict[str, Any], names: dict[int, str], show_output: bool) -> dict[str, Any]:
    """The projection Azure returns in `historyEvents` (string EventType, FunctionName, ...)."""
    kind = evt["EventType"]
    out: dict[str, Any] = {"EventType": EVENT_NAMES.get(kind, str(kind)), "Timestamp": evt["Timestamp"]}
    if kind == EXECUTION_STARTED:
        out["FunctionName"] = evt.get("Name")
        if show_output:
            out["Input"] = evt.get("Input")
    elif kind in (TASK_COMPLETED, SUB_ORCHESTRATION_COMPLETED):
        out["FunctionName"] = names.get(evt.get("TaskScheduledId", -1))
        out["ScheduledTime"] = evt.get("ScheduledTime")
        if show_output:
            out["Result"] = _loads_or_text(evt.get("Result"))
    elif kind in (TASK_FAILED, SUB_ORCHESTRATION_FAILED):
        out["FunctionName"] = names.get(evt.get("TaskScheduledId", -1))
        out["ScheduledTime"] = evt.get("ScheduledTime")
        out["Reason"] = evt.get("Reason")
        out["Details"] = evt.get("Details")
    elif kind in (TIMER_CREATED, TIMER_FIRED):
        out["FireAt"] = evt.get("FireAt")
    elif kind == EVENT_RAISED:
        out["Name"] = evt.get("Name")
        if show_output:
            out["Input"] = _loads_or_text(evt.get("Input"))
    elif kind in (EXECUTION_COMPLETED, EXECUTION_FAILED, EXECUTION_TERMINATED):
        out["OrchestrationStatus"] = evt.get("OrchestrationStatus")
        if show_output:
            out["Result"] = _loads_or_text(evt.get("Result"))
        if evt.get("FailureDetails"):
            out["FailureDetails"] = evt.get("FailureDetails")
    return out


def _loads_or_text(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value
