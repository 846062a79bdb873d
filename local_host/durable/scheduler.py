"""The orchestration engine: episodes, activities, timers, sub-orchestrations, entities, retries.

Everything here runs on the host's event loop, except user code (orchestrator replays, entity
batches, sync activities), which runs in thread pools. Per instance, at most one episode runs at a
time. A new episode is started whenever the instance has visible inbox messages (completions,
fired timers, raised events). Timers are inbox messages whose `visible_at` is the fire time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import logging
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import aiohttp
from azure.functions import meta
from azure.functions.durable_functions import ActivityTriggerConverter

from ..app_loader import FunctionRegistry, build_kwargs
from . import history as h
from .store import InboxMessage, Instance, Store, WorkItem

log = logging.getLogger("local_host")

TERMINAL = frozenset({"Completed", "Failed", "Terminated", "Canceled"})
CUSTOM_STATUS_LIMIT = 16 * 1024  # bytes of UTF-16 JSON, as the extension enforces (PR #3113)
# Azure Storage's timer settings, sent with replay schema V3 (research 1.4).
MAX_SHORT_TIMER = "6.00:00:00"
LONG_TIMER_INTERVAL = "3.00:00:00"


class EngineError(Exception):
    """A request the engine refuses (unknown orchestrator, instance already running, ...)."""


class HostStopping(Exception):
    """User code could not even be started: the host (or the interpreter) is shutting down. Nothing
    is recorded for it, so the work is still there, and resumed, when the host starts again."""


def _submit(loop: asyncio.AbstractEventLoop, pool: ThreadPoolExecutor, fn: Callable[[], Any]) -> Any:
    """`loop.run_in_executor`, telling a pool that no longer takes work (`RuntimeError: cannot
    schedule new futures after shutdown`) apart from a failure of the user code itself."""
    try:
        return loop.run_in_executor(pool, fn)
    except RuntimeError as exc:
        raise HostStopping(str(exc)) from exc


# While an orchestration's activities complete one after another, the gap between two of its
# episodes is this many times the last one's length: the orchestrator holds the GIL a quarter of
# the time at most (each episode replays the whole history; one per completion starves the
# activities), and a cheap orchestration waits next to nothing.
COMPLETION_GATHER = 3.0
COMPLETION_GATHER_MAX_SECONDS = 0.05
PAYLOAD_WARNING = 64 * 1024  # Azure Storage queue message size; larger payloads go through blobs


def warn_large(what: str, text: str | None) -> None:
    """Research 5/7.9: large payloads are loaded on every replay; suggest blob references."""
    if text is not None and len(text) > PAYLOAD_WARNING:
        log.warning("%s is %d bytes (over 64 KB): every replay loads it; pass a blob reference instead",
                    what, len(text))


def _new_state() -> dict[str, Any]:
    return {"next_id": 0, "leaves": [], "retry_tasks": {}, "retry_timers": {}, "canceled_timers": [],
            "names": {}, "entity_requests": [], "events_seen": {}}


class DurableEngine:
    def __init__(self, registry: FunctionRegistry, store: Store, *, activity_concurrency: int = 8,
                 orchestrator_concurrency: int = 4, clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self.store = store
        self.clock = clock
        self.activity_concurrency = activity_concurrency
        self._activity_pool = ThreadPoolExecutor(activity_concurrency, thread_name_prefix="activity")
        self._user_pool = ThreadPoolExecutor(orchestrator_concurrency, thread_name_prefix="orchestrator")
        self._sem: asyncio.Semaphore | None = None
        self._dirty: set[str] = set()
        self._running: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wake: asyncio.Event | None = None
        self._timer_wake: asyncio.Event | None = None
        self._stopping = False
        self._cache: dict[str, tuple[Instance, list[dict[str, Any]]]] = {}
        # Per execution: how much of the history was seen, and the replayed events as JSON text.
        self._replay_cache: dict[tuple[str, str], tuple[int, list[str]]] = {}
        self._http: aiohttp.ClientSession | None = None
        self.stats = {"episodes": 0, "events_replayed": 0, "replay_seconds": 0.0, "activities": 0}
        self._in_flight: dict[str, int] = {}  # instance -> its activities queued or running
        self._last_episode: dict[str, tuple[float, float]] = {}  # instance -> (when its last episode ended, its length)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._sem = asyncio.Semaphore(self.activity_concurrency)
        self._wake = asyncio.Event()
        self._timer_wake = asyncio.Event()
        self._spawn(self._dispatch_loop())
        self._spawn(self._timer_loop())
        # Recovery after a restart: run outstanding work again (at-least-once) and replay inboxes.
        for item in self.store.all_work():
            self.dispatch(item)
        for iid in self.store.instances_with_visible_messages(self.clock()):
            self._mark(iid)
        self._timer_wake.set()

    async def stop(self) -> None:
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._http is not None:
            await self._http.close()
        self._activity_pool.shutdown(wait=True, cancel_futures=True)
        self._user_pool.shutdown(wait=True, cancel_futures=True)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _mark(self, instance_id: str) -> None:
        self._dirty.add(instance_id)
        if self._wake is not None:
            self._wake.set()

    def _timer_added(self) -> None:
        if self._timer_wake is not None:
            self._timer_wake.set()

    async def _dispatch_loop(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            for iid in list(self._dirty):
                if iid in self._running:
                    continue
                self._dirty.discard(iid)
                self._running.add(iid)
                self._spawn(self._drain(iid))

    async def _drain(self, iid: str) -> None:
        try:
            while not self._stopping:
                self._dirty.discard(iid)
                if iid.startswith("@"):
                    worked = await self._entity_batch(iid)
                else:
                    await self._gather_completions(iid)
                    began = time.monotonic()
                    worked = await self._episode(iid)
                    if worked:
                        ended = time.monotonic()
                        self._last_episode[iid] = (ended, ended - began)
                if not worked:
                    break
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("internal error while running instance %s", iid)
            if not iid.startswith("@"):
                self._fail_internal(iid, exc)
        finally:
            self._running.discard(iid)
            if iid in self._dirty and self._wake is not None:
                self._wake.set()

    async def _timer_loop(self) -> None:
        assert self._timer_wake is not None
        while True:
            # One `now` for both questions, so that every message is either due (marked here) or
            # later (waited for): with two readings of the clock, a timer falling between them
            # would be neither, and the loop would sleep past it.
            now = self.clock()
            for iid in self.store.instances_with_visible_messages(now):
                self._mark(iid)
            nxt = self.store.next_visible_at(now)
            delay = 3600.0 if nxt is None else max(0.0, nxt - now)
            # Not asyncio.wait_for: on 3.11 cancelling it while the event fires can leave it hanging.
            waiter = asyncio.ensure_future(self._timer_wake.wait())
            try:
                await asyncio.wait({waiter}, timeout=delay)
            finally:
                waiter.cancel()
            self._timer_wake.clear()

    def _fail_internal(self, iid: str, exc: Exception) -> None:
        """A host bug must not leave an instance Running forever: fail it, and tell its parent."""
        try:
            inst = self.store.get_instance(iid)
            if inst is None or inst.status in TERMINAL:
                return
            message = f"internal error in the local host: {type(exc).__name__}: {exc}"
            reason = f"Orchestrator function '{inst.name}' failed: {message}"
            inst.status = "Failed"
            inst.output = json.dumps(reason)
            inst.last_updated_time = h.fmt_ts(h.utc_now())
            with self.store.transaction():
                self.store.delete_inbox(iid)
                self.store.put_instance(inst)
                if inst.parent:
                    self.store.add_message(inst.parent["instance_id"], inst.parent["execution_id"], 0.0,
                                           h.event(h.SUB_ORCHESTRATION_FAILED, h.utc_now(),
                                                   TaskScheduledId=inst.parent["task_id"], Reason=reason,
                                                   Details=None))
            self._forget(iid)
            if inst.parent:
                self._mark(inst.parent["instance_id"])
        except Exception:
            log.exception("could not record the failure of instance %s", iid)

    # -- client operations -----------------------------------------------------------------------

    def start_orchestration(self, name: str, instance_id: str | None, input_text: str | None,
                            parent: dict[str, Any] | None = None) -> str:
        if name not in self.registry.orchestrators:
            raise EngineError(f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator "
                              "function. Additional info: the orchestrator functions of this app are: "
                              f"{', '.join(sorted(self.registry.orchestrators)) or '(none)'}.")
        iid = instance_id or uuid.uuid4().hex
        existing = self.store.get_instance(iid)
        if existing is not None and existing.status not in TERMINAL:
            raise EngineError(f"An Orchestration instance with the status {existing.status} already exists.")
        now = h.utc_now()
        inst = Instance(instance_id=iid, name=name, execution_id=uuid.uuid4().hex, status="Pending",
                        input=input_text, created_time=h.fmt_ts(now), last_updated_time=h.fmt_ts(now),
                        parent=parent, state=_new_state())
        started = self._execution_started(inst, now)
        with self.store.transaction():
            if existing is not None:
                self.store.delete_instance(iid)
            self.store.put_instance(inst)
            self.store.add_message(iid, inst.execution_id, 0.0, started)
        self._forget(iid)
        self._mark(iid)
        return iid

    @staticmethod
    def _execution_started(inst: Instance, now: Any) -> dict[str, Any]:
        parent = None
        if inst.parent:
            parent = {"OrchestrationInstance": {"InstanceId": inst.parent["instance_id"],
                                                "ExecutionId": inst.parent["execution_id"]},
                      "TaskScheduleId": inst.parent["task_id"]}
        return h.event(h.EXECUTION_STARTED, now, Name=inst.name, Version="", Input=inst.input,
                       OrchestrationInstance={"InstanceId": inst.instance_id, "ExecutionId": inst.execution_id},
                       ParentInstance=parent)

    def rename_hint(self, name: str) -> str:
        """Research 2.1: calling a renamed function by its function object sends the Python name."""
        durable = self.registry.renamed.get(name)
        if durable is None:
            return ""
        return (f" '{name}' is the Python name of the function registered as '{durable}'; passing the "
                f"function object sends the Python name, which Azure cannot resolve either. Call it by "
                f"its registered name '{durable}'.")

    def raise_event(self, instance_id: str, name: str, input_text: str) -> None:
        self.store.add_message(instance_id, None, 0.0,
                               h.event(h.EVENT_RAISED, h.utc_now(), Name=name, Input=input_text))
        self._mark(instance_id)

    def terminate(self, instance_id: str, reason: str | None) -> None:
        inst = self.store.get_instance(instance_id)
        if inst is None or inst.status in TERMINAL:
            return
        hist = self._history(inst)
        now = h.utc_now()
        evt = h.event(h.EXECUTION_TERMINATED, now, OrchestrationStatus="Terminated", Input=reason)
        inst.status = "Terminated"
        inst.output = json.dumps(reason)
        inst.last_updated_time = h.fmt_ts(now)
        with self.store.transaction():
            self.store.append_history(instance_id, len(hist), [evt])
            self.store.delete_inbox(instance_id)
            self.store.put_instance(inst)
        self._forget(instance_id)
        log.info("orchestration %s instance=%s terminated: %s", inst.name, instance_id, reason)

    def suspend(self, instance_id: str) -> None:
        self._set_status(instance_id, "Suspended")

    def resume(self, instance_id: str) -> None:
        self._set_status(instance_id, "Running")
        self._mark(instance_id)

    def _set_status(self, instance_id: str, status: str) -> None:
        inst = self.store.get_instance(instance_id)
        if inst is None or inst.status in TERMINAL:
            return
        inst.status = status
        inst.last_updated_time = h.fmt_ts(h.utc_now())
        self.store.put_instance(inst)
        cached = self._cache.get(instance_id)
        if cached is not None:
            self._cache[instance_id] = (inst, cached[1])

    def purge(self, instance_id: str) -> bool:
        if self.store.get_instance(instance_id) is None:
            return False
        with self.store.transaction():
            self.store.delete_instance(instance_id)
        self._forget(instance_id)
        return True

    def signal_entity(self, entity_id: str, operation: str, input_text: str | None) -> None:
        msg = {"op": operation, "input": input_text, "signal": True}
        self.store.add_message(entity_id, None, 0.0, msg)
        self._mark(entity_id)

    def history(self, instance_id: str) -> list[dict[str, Any]]:
        inst = self.store.get_instance(instance_id)
        return self._history(inst) if inst else []

    def _history(self, inst: Instance) -> list[dict[str, Any]]:
        cached = self._cache.get(inst.instance_id)
        if cached is not None and cached[0].execution_id == inst.execution_id:
            return cached[1]
        hist = self.store.load_history(inst.instance_id)
        if inst.status not in TERMINAL:  # finished instances are read from the store, not kept in memory
            self._cache[inst.instance_id] = (inst, hist)
        return hist

    async def _gather_completions(self, iid: str) -> None:
        """While a fan-out's activities complete one by one, leave `COMPLETION_GATHER` times the
        length of the instance's last episode between two of its episodes. Each episode replays the
        whole history, so one per completion or two has the orchestrator, not the activities,
        holding the one GIL (measured: 48 episodes of about 9 ms for 100 completions, the last
        completing 0.5 s after the first). A lone completion, the last of a fan-out, and every other
        message run at once; the gathering ends when the last activity lands."""
        last = self._last_episode.get(iid)
        if last is None or not self._in_flight.get(iid):
            return
        ended, length = last
        until = ended + min(COMPLETION_GATHER * length, COMPLETION_GATHER_MAX_SECONDS)
        if until <= time.monotonic():
            return
        msgs = self.store.visible_messages(iid, self.clock())
        if not msgs or any(m.event["EventType"] not in (h.TASK_COMPLETED, h.TASK_FAILED) for m in msgs):
            return
        while self._in_flight.get(iid) and not self._stopping:
            left = until - time.monotonic()
            if left <= 0:
                break
            await asyncio.sleep(min(left, 0.005))

    def _forget(self, instance_id: str) -> None:
        self._last_episode.pop(instance_id, None)
        self._cache.pop(instance_id, None)
        for key in [k for k in self._replay_cache if k[0] == instance_id]:
            del self._replay_cache[key]

    # -- episodes --------------------------------------------------------------------------------

    def _replay_history(self, inst: Instance, hist: list[dict[str, Any]]) -> list[str]:
        """The stored history minus the events the SDK never reads, as JSON texts, cached and
        extended incrementally: an event is final once stored, and encoding the whole history
        again for every episode was the host's largest cost in a deployment's profile."""
        key = (inst.instance_id, inst.execution_id)
        cached = self._replay_cache.get(key)
        if cached is None or cached[0] > len(hist):
            cached = (0, [])
        seen, texts = cached
        texts.extend(json.dumps(e) for e in h.replay_view(hist[seen:]))
        self._replay_cache[key] = (len(hist), texts)
        return texts

    async def _episode(self, iid: str) -> bool:
        inst = self.store.get_instance(iid)
        msgs = self.store.visible_messages(iid, self.clock())
        if not msgs:
            return False
        if inst is None or inst.status in TERMINAL:
            # Late completions (terminated or finished instance, or a purged one) are dropped.
            with self.store.transaction():
                self.store.delete_messages([m.msg_id for m in msgs])
            return False
        if inst.status == "Suspended":
            return False  # messages wait in the inbox until resume
        state = inst.state
        canceled = set(state["canceled_timers"])
        usable: list[InboxMessage] = []
        dropped: list[int] = []
        for m in msgs:
            stale = m.execution_id is not None and m.execution_id != inst.execution_id
            cancel = m.event["EventType"] == h.TIMER_FIRED and m.event.get("TimerId") in canceled
            (dropped.append(m.msg_id) if stale or cancel else usable.append(m))
        count = h.split_batch([m.event for m in usable], state["retry_tasks"], state["retry_timers"])
        batch = usable[:count]
        if not batch:
            if dropped:
                with self.store.transaction():
                    self.store.delete_messages(dropped)
            return bool(dropped)
        hist = self._history(inst)
        now = h.utc_now()
        new_events = [h.event(h.ORCHESTRATOR_STARTED, now)] + [m.event for m in batch]
        replayed = self._replay_history(inst, hist)
        history = "[" + ",".join([*replayed, *(json.dumps(e) for e in new_events)]) + "]"
        payload = '{"history": ' + history + ", " + json.dumps({
            "input": inst.input, "instanceId": iid, "isReplaying": False,
            "parentInstanceId": inst.parent["instance_id"] if inst.parent else None,
            "upperSchemaVersion": 1, "upperSchemaVersionNew": 2,
            "longRunningTimerIntervalDuration": LONG_TIMER_INTERVAL,
            "maximumShortTimerDuration": MAX_SHORT_TIMER,
            "defaultHttpAsyncRequestSleepTimeMillseconds": 30000,
        })[1:]
        orch = self.registry.orchestrators.get(inst.name)
        started = time.perf_counter()
        error: str | None = None
        result: dict[str, Any] | None = None
        if orch is None:
            error = f"The orchestrator function '{inst.name}' no longer exists in this app."
        else:
            try:
                running = _submit(asyncio.get_running_loop(), self._user_pool,
                                  functools.partial(orch.fn, **{orch.trigger_param: payload}))
            except HostStopping:
                return False  # the messages stay in the inbox: the episode runs after a restart
            try:
                result = json.loads(await running)
            except Exception as exc:
                error, result = h.parse_out_of_proc(str(exc) or type(exc).__name__)
        elapsed = time.perf_counter() - started
        self.stats["episodes"] += 1
        self.stats["events_replayed"] += len(replayed) + len(new_events)
        self.stats["replay_seconds"] += elapsed
        if self._stopping:
            return False
        # Terminate, purge, suspend or a restart may have happened while user code ran.
        current = self.store.get_instance(iid)
        if current is None or current.execution_id != inst.execution_id or current.status in TERMINAL:
            return True  # the next pass drops the messages of a finished or replaced instance
        if inst.status == "Pending":
            inst.status = "Running"
        ep = _Episode(self, inst, hist, now)
        ep.appended.extend(new_events)
        ep.consumed = [m.msg_id for m in batch] + dropped
        ep.apply(batch[0].event if h.is_retry_related(batch[0].event, state["retry_tasks"],
                                                      state["retry_timers"]) else None,
                 result, error)
        if current.status == "Suspended" and inst.status not in TERMINAL:
            inst.status = "Suspended"
        ep.commit()
        log.info("orchestrator %s instance=%s episode events=%d duration_ms=%.1f status=%s", inst.name, iid,
                 len(hist) + len(new_events), elapsed * 1000, inst.status)
        return True

    # -- activities ------------------------------------------------------------------------------

    def dispatch(self, item: WorkItem) -> None:
        self._in_flight[item.instance_id] = self._in_flight.get(item.instance_id, 0) + 1
        self._spawn(self._run_work(item))

    def _landed(self, instance_id: str) -> None:
        left = self._in_flight.get(instance_id, 1) - 1
        if left > 0:
            self._in_flight[instance_id] = left
        else:
            self._in_flight.pop(instance_id, None)

    async def _run_work(self, item: WorkItem) -> None:
        try:
            await self._run_work_item(item)
        finally:
            self._landed(item.instance_id)

    async def _run_work_item(self, item: WorkItem) -> None:
        assert self._sem is not None
        async with self._sem:
            started = time.perf_counter()
            try:
                if item.kind == "http":
                    evt = await self._run_http(item)
                else:
                    evt = await self._run_activity(item)
            except HostStopping:
                return  # the work item stays stored: it runs again when the host starts
            duration = (time.perf_counter() - started) * 1000
        self.stats["activities"] += 1
        outcome = "Succeeded" if evt["EventType"] == h.TASK_COMPLETED else "Failed"
        log.info("activity %s instance=%s task=%d duration_ms=%.1f %s", item.name, item.instance_id,
                 item.task_id, duration, outcome)
        if self._stopping:
            return
        with self.store.transaction():
            if self.store.delete_work(item.work_id):
                self.store.add_message(item.instance_id, item.execution_id, 0.0, evt)
        self._mark(item.instance_id)

    async def _run_activity(self, item: WorkItem) -> dict[str, Any]:
        now = h.utc_now()
        activity = self.registry.activities.get(item.name)
        if activity is None:
            return h.event(h.TASK_FAILED, now, TaskScheduledId=item.task_id, ScheduledTime=item.scheduled_time,
                           Reason=f"The function '{item.name}' doesn't exist, is disabled, or is not an "
                                  f"activity function.{self.rename_hint(item.name)}", Details=None)
        try:
            value = ActivityTriggerConverter.decode(meta.Datum(type="json", value=item.input or "null"),
                                                    trigger_metadata=None)
            kwargs = build_kwargs(activity.fn, activity.function_name, self.registry.app_dir,
                                  {activity.trigger_param: value})
            if inspect.iscoroutinefunction(activity.fn):
                out = await activity.fn(**kwargs)
            else:
                out = await _submit(asyncio.get_running_loop(), self._activity_pool,
                                    functools.partial(activity.fn, **kwargs))
            datum = ActivityTriggerConverter.encode(out, expected_type=None)
            warn_large(f"output of activity {item.name} (instance {item.instance_id}, task {item.task_id})",
                       datum.value)
            return h.event(h.TASK_COMPLETED, h.utc_now(), TaskScheduledId=item.task_id,
                           ScheduledTime=item.scheduled_time, Result=datum.value)
        except (asyncio.CancelledError, HostStopping):
            raise
        except Exception as exc:
            return h.event(h.TASK_FAILED, h.utc_now(), TaskScheduledId=item.task_id,
                           ScheduledTime=item.scheduled_time,
                           Reason=f"Activity function '{item.name}' failed: Result: Failure\n"
                                  f"Exception: {type(exc).__name__}: {exc}",
                           Details="".join(traceback.format_exception(exc)).strip())

    async def _run_http(self, item: WorkItem) -> dict[str, Any]:
        request = json.loads(item.input or "{}")
        if request.get("tokenSource"):
            return h.event(h.TASK_FAILED, h.utc_now(), TaskScheduledId=item.task_id,
                           ScheduledTime=item.scheduled_time,
                           Reason="Activity function 'BuiltIn::HttpActivity' failed: managed identity tokens "
                                  "(token_source) are not available on the local host", Details=None)
        if self._http is None:
            self._http = aiohttp.ClientSession()
        try:
            content = request.get("content")
            async with self._http.request(request.get("method", "GET"), request["uri"],
                                          headers=request.get("headers") or None,
                                          data=content if content is not None else None) as resp:
                body = await resp.text()
                result = {"statusCode": resp.status, "headers": dict(resp.headers), "content": body}
            return h.event(h.TASK_COMPLETED, h.utc_now(), TaskScheduledId=item.task_id,
                           ScheduledTime=item.scheduled_time, Result=json.dumps(result))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return h.event(h.TASK_FAILED, h.utc_now(), TaskScheduledId=item.task_id,
                           ScheduledTime=item.scheduled_time,
                           Reason=f"Activity function 'BuiltIn::HttpActivity' failed: {type(exc).__name__}: {exc}",
                           Details=None)

    # -- entities --------------------------------------------------------------------------------

    async def _entity_batch(self, entity_id: str) -> bool:
        msgs = self.store.visible_messages(entity_id, self.clock())
        if not msgs:
            return False
        _, name, key = entity_id.split("@", 2)
        entity = self.registry.entities.get(name.lower())
        current = self.store.get_entity(entity_id)
        ops = [m.event for m in msgs]
        results: list[dict[str, Any]]
        exists = current is not None
        state_text = current[0] if current else None
        started = time.perf_counter()
        if entity is None:
            results = [{"isError": True, "result": json.dumps(f"The entity '{name}' is not defined in this app.")}
                       for _ in ops]
        else:
            context = json.dumps({"self": {"name": name, "key": key}, "exists": exists, "state": state_text,
                                  "batch": [{"name": op["op"], "input": json.dumps(op.get("input") or "null")}
                                            for op in ops]})
            try:
                running = _submit(asyncio.get_running_loop(), self._user_pool,
                                  functools.partial(entity.fn, **{entity.trigger_param: context}))
            except HostStopping:
                return False  # the operations stay in the inbox: they run after a restart
            try:
                out = json.loads(await running)
                results = out.get("results") or []
                exists = bool(out.get("entityExists"))
                state_text = out.get("entityState")
                if out.get("signals"):
                    log.warning("entity %s sent signals to other entities; the local host does not deliver "
                                "entity-to-entity signals", entity_id)
            except Exception as exc:
                results = [{"isError": True, "result": json.dumps(f"{type(exc).__name__}: {exc}")} for _ in ops]
        if self._stopping:
            return False
        now = h.fmt_ts(h.utc_now())
        with self.store.transaction():
            if exists:
                self.store.put_entity(entity_id, name, key, state_text, now)
            else:
                self.store.delete_entity(entity_id)
            for op, res in zip(ops, results, strict=False):
                if op.get("signal") or not op.get("parent"):
                    continue
                response: dict[str, Any] = {"result": res.get("result") or "null"}
                if res.get("isError"):
                    response["exceptionType"] = "Exception"
                self.store.add_message(op["parent"], op.get("parent_execution"), 0.0,
                                       h.event(h.EVENT_RAISED, h.utc_now(), Name=op["request_id"],
                                               Input=json.dumps(response)))
            self.store.delete_messages([m.msg_id for m in msgs])
        for op in ops:
            if op.get("parent"):
                self._mark(op["parent"])
        log.info("entity %s operations=%d duration_ms=%.1f", entity_id, len(ops),
                 (time.perf_counter() - started) * 1000)
        return True


class _Episode:
    """Applies one replay result: allocates IDs, records leaves, schedules work, settles the instance."""

    def __init__(self, engine: DurableEngine, inst: Instance, hist: list[dict[str, Any]], now: Any) -> None:
        self.engine = engine
        self.inst = inst
        self.hist = hist
        self.now = now
        self.appended: list[dict[str, Any]] = []
        self.consumed: list[int] = []
        self.messages: list[tuple[str, str | None, float, dict[str, Any]]] = []
        self.work: list[tuple[int, str, str, str | None]] = []
        self.children: list[Instance] = []
        self.continue_input: str | None = None
        self.continue_as_new = False

    # ID allocation -------------------------------------------------------------------------------

    def _next_id(self) -> int:
        tid = int(self.inst.state["next_id"])
        self.inst.state["next_id"] = tid + 1
        return tid

    def _schedule_timer(self, tid: int, fire_at: Any) -> None:
        fire_text = h.fmt_ts(fire_at)
        self.appended.append(h.event(h.TIMER_CREATED, self.now, tid, FireAt=fire_text))
        self.messages.append((self.inst.instance_id, self.inst.execution_id, fire_at.timestamp(),
                              h.event(h.TIMER_FIRED, fire_at, TimerId=tid, FireAt=fire_text)))

    def _schedule_activity(self, tid: int, name: str, input_text: str | None, kind: str = "activity") -> None:
        warn_large(f"input of activity {name} (instance {self.inst.instance_id}, task {tid})", input_text)
        self.appended.append(h.event(h.TASK_SCHEDULED, self.now, tid, Name=name, Input=input_text))
        self.inst.state["names"][str(tid)] = name
        self.work.append((tid, kind, name, input_text))

    def _schedule_child(self, tid: int, name: str, child_id: str | None, input_text: str | None) -> None:
        iid = child_id or f"{self.inst.instance_id}:{tid:04d}"
        self.appended.append(h.event(h.SUB_ORCHESTRATION_CREATED, self.now, tid, Name=name, InstanceId=iid,
                                     Input=input_text))
        self.inst.state["names"][str(tid)] = name
        parent = {"instance_id": self.inst.instance_id, "execution_id": self.inst.execution_id, "task_id": tid}
        problem = None
        if name not in self.engine.registry.orchestrators:
            problem = (f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator function."
                       f"{self.engine.rename_hint(name)}")
        else:
            existing = self.engine.store.get_instance(iid)
            if existing is not None and existing.status not in TERMINAL:
                problem = f"An Orchestration instance with the status {existing.status} already exists."
        if problem:
            self.messages.append((self.inst.instance_id, self.inst.execution_id, 0.0,
                                  h.event(h.SUB_ORCHESTRATION_FAILED, self.now, TaskScheduledId=tid,
                                          Reason=problem, Details=None)))
            return
        stamp = h.fmt_ts(self.now)
        self.children.append(Instance(instance_id=iid, name=name, execution_id=uuid.uuid4().hex, status="Pending",
                                      input=input_text, created_time=stamp, last_updated_time=stamp,
                                      parent=parent, state=_new_state()))

    def _retry_allocation(self, evt: dict[str, Any]) -> None:
        state = self.inst.state
        if evt["EventType"] in (h.TASK_FAILED, h.SUB_ORCHESTRATION_FAILED):
            group = state["retry_tasks"].pop(str(evt["TaskScheduledId"]))
            timer_id = self._next_id()
            fire = self.now + timedelta(milliseconds=group["interval_ms"])
            self._schedule_timer(timer_id, fire)
            state["retry_timers"][str(timer_id)] = group
            return
        group = state["retry_timers"].pop(str(evt["TimerId"]))
        if group["attempts"] >= group["max_attempts"]:
            return  # the extra final timer fired: the SDK now raises the last error (no new ID)
        tid = self._next_id()
        group["attempts"] += 1
        state["retry_tasks"][str(tid)] = group
        if group["kind"] == "activity":
            self._schedule_activity(tid, group["name"], group["input"])
        else:
            self._schedule_child(tid, group["name"], group.get("instance_id"), group["input"])

    def _schedule_leaf(self, leaf: h.Leaf) -> int | None:
        a = leaf.action
        kind = leaf.action_type
        if kind == h.WAIT_FOR_EXTERNAL_EVENT:
            return None
        tid = self._next_id()
        if kind in (h.CALL_ACTIVITY, h.CALL_ACTIVITY_WITH_RETRY):
            self._schedule_activity(tid, a["functionName"], a.get("input"))
        elif kind in (h.CALL_SUB_ORCHESTRATOR, h.CALL_SUB_ORCHESTRATOR_WITH_RETRY):
            self._schedule_child(tid, a["functionName"], a.get("instanceId"), a.get("input"))
        elif kind == h.CREATE_TIMER:
            if a.get("isCanceled"):
                self.inst.state["canceled_timers"].append(tid)
                self.appended.append(h.event(h.TIMER_CREATED, self.now, tid, FireAt=a.get("fireAt")))
            else:
                self._schedule_timer(tid, h.parse_ts(a["fireAt"]))
        elif kind in (h.CALL_ENTITY, h.SIGNAL_ENTITY):
            request_id = str(uuid.uuid4())
            entity_id = a["instanceId"]
            signal = kind == h.SIGNAL_ENTITY
            if not signal:
                self.inst.state.setdefault("entity_requests", []).append(request_id)
            self.appended.append(h.event(h.EVENT_SENT, self.now, tid, InstanceId=entity_id, Name="op",
                                         Input=json.dumps({"id": request_id, "op": a.get("operation"),
                                                           "signal": signal})))
            self.messages.append((entity_id, None, 0.0, {
                "op": a.get("operation"), "input": a.get("input"), "signal": signal,
                "parent": None if signal else self.inst.instance_id,
                "parent_execution": self.inst.execution_id, "request_id": request_id}))
        elif kind == h.CALL_HTTP:
            self._schedule_activity(tid, "BuiltIn::HttpActivity", json.dumps(a.get("httpRequest") or {}), "http")
        elif kind == h.CONTINUE_AS_NEW_ACTION:
            self.continue_as_new = True
            self.continue_input = a.get("input")
        if kind in (h.CALL_ACTIVITY_WITH_RETRY, h.CALL_SUB_ORCHESTRATOR_WITH_RETRY):
            options = a.get("retryOptions") or {}
            self.inst.state["retry_tasks"][str(tid)] = {
                "kind": "activity" if kind == h.CALL_ACTIVITY_WITH_RETRY else "suborchestration",
                "name": a["functionName"], "input": a.get("input"), "instance_id": a.get("instanceId"),
                "interval_ms": int(options.get("firstRetryIntervalInMilliseconds") or 1000),
                "max_attempts": int(options.get("maxNumberOfAttempts") or 1), "attempts": 1}
        return tid

    # applying the replay result -----------------------------------------------------------------

    def _note_early_events(self, raised: list[dict[str, Any]], waits: dict[str, int]) -> None:
        """Research 1.7 / issue #507: an event raised before its wait is returned to every later wait."""
        state = self.inst.state
        requests = state.setdefault("entity_requests", [])
        seen = state.setdefault("events_seen", {})
        for evt in raised:
            name = str(evt.get("Name"))
            if name in requests:
                requests.remove(name)  # an entity response, not an external event
                continue
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > waits.get(name, 0):
                log.warning("instance %s: event '%s' arrived before the orchestration waited for it; with "
                            "azure-functions-durable 1.x every later wait_for_external_event('%s') returns this "
                            "same value again (issue #507). Use unique event names or one wait per name.",
                            self.inst.instance_id, name, name)

    def apply(self, retry_event: dict[str, Any] | None, result: dict[str, Any] | None, error: str | None) -> None:
        if retry_event is not None:
            self._retry_allocation(retry_event)
        result = result or {}
        leaves = list(h.flatten(result.get("actions") or []))
        recorded: list[list[Any]] = self.inst.state["leaves"]
        mismatch = h.check_determinism(recorded, leaves)
        if mismatch is not None:
            self._fail(mismatch)
            return
        for leaf in leaves[len(recorded):]:
            tid = self._schedule_leaf(leaf)
            recorded.append([leaf.action_type, leaf.name, tid])
        # Counting the waits known after this replay errs towards silence: an event that lands in the
        # same episode as the completion leading to its wait is not early.
        waits: dict[str, int] = {}
        for kind, name, _ in recorded:
            if kind == h.WAIT_FOR_EXTERNAL_EVENT:
                waits[name] = waits.get(name, 0) + 1
        self._note_early_events([e for e in self.appended if e["EventType"] == h.EVENT_RAISED], waits)
        for index, leaf in enumerate(leaves[:len(recorded)]):
            tid = recorded[index][2]
            if (leaf.action_type == h.CREATE_TIMER and leaf.action.get("isCanceled")
                    and tid not in self.inst.state["canceled_timers"]):
                self.inst.state["canceled_timers"].append(tid)
        if "customStatus" in result:
            status_text = json.dumps(result["customStatus"])
            size = len(status_text.encode("utf-16-le"))
            if size > CUSTOM_STATUS_LIMIT:
                self._fail(f"The UTF-16 size of the JSON-serialized custom status payload is {size} bytes, "
                           f"which exceeds the limit of {CUSTOM_STATUS_LIMIT} bytes (16 KB). Reduce the size "
                           "of the value passed to set_custom_status.")
                return
            self.inst.custom_status = status_text
        if error is not None:
            self._fail(error)
        elif result.get("isDone"):
            if self.continue_as_new:
                return
            self._complete(result.get("output"))

    def _settle_parent(self, evt_type: int, **fields: Any) -> None:
        parent = self.inst.parent
        if parent:
            self.messages.append((parent["instance_id"], parent["execution_id"], 0.0,
                                  h.event(evt_type, self.now, TaskScheduledId=parent["task_id"], **fields)))

    def _complete(self, output: Any) -> None:
        output_text = json.dumps(output)
        self.inst.status = "Completed"
        self.inst.output = output_text
        self.appended.append(h.event(h.EXECUTION_COMPLETED, self.now, OrchestrationStatus="Completed",
                                     Result=output_text))
        self._settle_parent(h.SUB_ORCHESTRATION_COMPLETED, Result=output_text)

    def _fail(self, message: str) -> None:
        reason = f"Orchestrator function '{self.inst.name}' failed: {message}"
        self.inst.status = "Failed"
        self.inst.output = json.dumps(reason)
        self.appended.append(h.event(h.EXECUTION_FAILED, self.now, OrchestrationStatus="Failed",
                                     Result=json.dumps(reason), FailureDetails={"ErrorMessage": message}))
        self._settle_parent(h.SUB_ORCHESTRATION_FAILED, Reason=reason, Details=None)
        log.warning("orchestration %s instance=%s failed: %s", self.inst.name, self.inst.instance_id, message)

    def commit(self) -> None:
        engine, store, inst = self.engine, self.engine.store, self.inst
        self.appended.append(h.event(h.ORCHESTRATOR_COMPLETED, self.now))
        inst.last_updated_time = h.fmt_ts(self.now)
        created_work: list[WorkItem] = []
        with store.transaction():
            store.delete_messages(self.consumed)
            if self.continue_as_new:
                # Work for the old execution is abandoned; messages to others (signals) still go out.
                outgoing = [m for m in self.messages if m[0] != inst.instance_id]
                self.work, self.children = [], []
                inst.execution_id = uuid.uuid4().hex
                inst.input = self.continue_input
                inst.state = _new_state()
                inst.status = "Running"
                store.clear_history(inst.instance_id)
                store.delete_inbox(inst.instance_id, keep_event_raised=True)
                store.add_message(inst.instance_id, inst.execution_id, 0.0,
                                  engine._execution_started(inst, self.now))
                self.hist = []
            else:
                for evt in self.appended:
                    evt["IsPlayed"] = True  # replayed from now on (research 7.6)
                store.append_history(inst.instance_id, len(self.hist), self.appended)
                self.hist.extend(self.appended)
                if inst.status in TERMINAL:
                    # Only the parent notification (and entity signals) leave a finished instance.
                    store.delete_inbox(inst.instance_id)
                    outgoing = [m for m in self.messages if m[0] != inst.instance_id]
                    self.work, self.children = [], []
                else:
                    outgoing = self.messages
            for iid, exec_id, visible, evt in outgoing:
                store.add_message(iid, exec_id, visible, evt)
            for tid, kind, name, input_text in self.work:
                created_work.append(store.add_work(inst.instance_id, inst.execution_id, tid, kind, name,
                                                   input_text, h.fmt_ts(self.now)))
            for child in self.children:
                store.delete_instance(child.instance_id)
                store.put_instance(child)
                store.add_message(child.instance_id, child.execution_id, 0.0,
                                  engine._execution_started(child, self.now))
            store.put_instance(inst)
        self.messages = outgoing
        if inst.status in TERMINAL or self.continue_as_new:
            engine._forget(inst.instance_id)
        else:
            engine._cache[inst.instance_id] = (inst, self.hist)
        for item in created_work:
            engine.dispatch(item)
        for child in self.children:
            engine._forget(child.instance_id)
            engine._mark(child.instance_id)
        for iid, _, visible, _ in self.messages:
            if visible > 0:
                engine._timer_added()
            else:
                engine._mark(iid)
        if self.continue_as_new:
            engine._mark(inst.instance_id)
        if inst.status in TERMINAL:
            log.info("orchestration %s instance=%s %s", inst.name, inst.instance_id, inst.status.lower())
