"""Small app exercising the Durable contract through the local host (tests/host)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import timedelta

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)

FLAKY_STATE: dict[str, int] = {}


@app.route(route="orchestrators/{functionName}/{instanceId?}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def http_start(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    body = req.get_body()
    payload = json.loads(body) if body else None
    instance_id = await client.start_new(req.route_params["functionName"], req.route_params.get("instanceId"),
                                         payload)
    return client.create_check_status_response(req, instance_id)


@app.route(route="status/{instanceId}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@app.durable_client_input(client_name="client")
async def http_status(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    status = await client.get_status(req.route_params["instanceId"])
    return func.HttpResponse(json.dumps({"runtimeStatus": status.runtime_status.value if status.runtime_status
                                         else None, "output": status.output}), mimetype="application/json")


@app.route(route="hello/{name}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def http_hello(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"hello {req.route_params['name']} {req.params.get('x', '')}".strip())


@app.route(route="setting", methods=["GET"])
def http_setting(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(os.environ.get("SOME_SETTING", "<unset>"))


@app.activity_trigger(input_name="name")
def Hello(name: str) -> str:
    return f"Hello {name}!"


@app.activity_trigger(input_name="payload")
def SlowHello(payload: dict) -> str:
    time.sleep(payload["delay"])
    return f"Hello {payload['name']}!"


@app.activity_trigger(input_name="key")
def Flaky(key: str) -> str:
    # Fails on the first call per key, then succeeds (the retry contract).
    FLAKY_STATE[key] = FLAKY_STATE.get(key, 0) + 1
    if FLAKY_STATE[key] == 1:
        raise ValueError(f"boom {key}")
    return f"flaky-ok {key}"


@app.activity_trigger(input_name="key")
def AlwaysFails(key: str) -> str:
    raise RuntimeError(f"always {key}")


@app.activity_trigger(input_name="value")
async def AsyncDouble(value: int) -> int:
    await asyncio.sleep(0.01)
    return value * 2


@app.orchestration_trigger(context_name="context")
def SubOrch(context: df.DurableOrchestrationContext):
    data = context.get_input()
    greeting = yield context.call_activity("Hello", str(data["x"]))
    return f"sub:{greeting}"


@app.orchestration_trigger(context_name="context")
def Walkthrough(context: df.DurableOrchestrationContext):
    key = context.get_input() or "w"
    a = yield context.call_activity("Hello", "Tokyo")
    b = yield context.call_activity("Hello", "Seattle")
    fan = yield context.task_all([
        context.call_activity("SlowHello", {"name": f"c{i}", "delay": d}) for i, d in enumerate([0.3, 0.05, 0.15])
    ])
    ev = yield context.wait_for_external_event("Approval")
    sub = yield context.call_sub_orchestrator("SubOrch", {"x": 1}, instance_id=f"{context.instance_id}-child")
    yield context.create_timer(context.current_utc_datetime + timedelta(seconds=1))
    r = yield context.call_activity_with_retry("Flaky", df.RetryOptions(100, 3), key)
    return {"a": a, "b": b, "fan": fan, "ev": ev, "sub": sub, "r": r}


@app.orchestration_trigger(context_name="context")
def RetryExhausted(context: df.DurableOrchestrationContext):
    try:
        yield context.call_activity_with_retry("AlwaysFails", df.RetryOptions(50, 2), "x")
    except Exception as exc:
        return {"caught": str(exc)}
    return {"caught": None}


@app.orchestration_trigger(context_name="context")
def RetryInFanOut(context: df.DurableOrchestrationContext):
    key = context.get_input()
    results = yield context.task_all([
        context.call_activity_with_retry("Flaky", df.RetryOptions(50, 3), f"{key}-a"),
        context.call_activity("Hello", "b"),
        context.call_activity_with_retry("Flaky", df.RetryOptions(80, 3), f"{key}-c"),
    ])
    after = yield context.call_activity("Hello", "after")
    return results + [after]


@app.orchestration_trigger(context_name="context")
def ActivityError(context: df.DurableOrchestrationContext):
    try:
        yield context.call_activity("AlwaysFails", "direct")
    except Exception as exc:
        return str(exc)
    return None


@app.orchestration_trigger(context_name="context")
def Unhandled(context: df.DurableOrchestrationContext):
    yield context.call_activity("AlwaysFails", "unhandled")
    return "unreachable"


@app.orchestration_trigger(context_name="context")
def TaskAnyTimer(context: df.DurableOrchestrationContext):
    timer = context.create_timer(context.current_utc_datetime + timedelta(seconds=30))
    work = context.call_activity("Hello", "fast")
    winner = yield context.task_any([work, timer])
    if winner == work:
        timer.cancel()
        return {"winner": "activity", "value": work.result}
    return {"winner": "timer"}


@app.orchestration_trigger(context_name="context")
def WaitEventWithTimeout(context: df.DurableOrchestrationContext):
    timer = context.create_timer(context.current_utc_datetime + timedelta(seconds=30))
    event = context.wait_for_external_event("Go")
    winner = yield context.task_any([event, timer])
    if winner == event:
        timer.cancel()
        return {"event": event.result}
    return {"event": None}


@app.orchestration_trigger(context_name="context")
def Counter(context: df.DurableOrchestrationContext):
    n = context.get_input()
    value = yield context.call_activity("AsyncDouble", n)
    if n < 4:
        context.continue_as_new(n + 1)
        return None
    return {"n": n, "double": value}


@app.orchestration_trigger(context_name="context")
def CustomStatus(context: df.DurableOrchestrationContext):
    size = context.get_input()
    context.set_custom_status({"blob": "x" * size})
    yield context.call_activity("Hello", "status")
    return "done"


@app.orchestration_trigger(context_name="context")
def Nondeterministic(context: df.DurableOrchestrationContext):
    # Reads process state, so a replay after the flag flips schedules a different activity.
    name = "Hello" if os.environ.get("LOCALHOST_TEST_FLIP") != "1" else "AsyncDouble"
    yield context.call_activity(name, "x")
    yield context.wait_for_external_event("Continue")
    return "done"


@app.orchestration_trigger(context_name="context")
def EntityOrch(context: df.DurableOrchestrationContext):
    entity = df.EntityId("Counter", context.get_input())
    context.signal_entity(entity, "add", 5)
    yield context.call_entity(entity, "add", 3)
    value = yield context.call_entity(entity, "get")
    try:
        yield context.call_entity(entity, "explode")
    except Exception as exc:
        return {"value": value, "error": str(exc)}
    return {"value": value, "error": None}


@app.orchestration_trigger(context_name="context")
def LongWait(context: df.DurableOrchestrationContext):
    yield context.wait_for_external_event("Never")
    return "never"


@app.entity_trigger(context_name="context", entity_name="Counter")
def counter_entity(context: df.DurableEntityContext):
    current = context.get_state(lambda: 0)
    op = context.operation_name
    if op == "add":
        current += context.get_input()
        context.set_state(current)
    elif op == "get":
        context.set_result(current)
    elif op == "explode":
        raise ValueError("entity boom")
    context.set_state(current)


@app.timer_trigger(schedule="0 */5 * * * *", arg_name="timer", run_on_startup=False)
def housekeeping(timer: func.TimerRequest) -> None:
    return None


@app.route(route="manage/{op}/{instanceId?}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def http_manage(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Drives the SDK client's RPC calls (research 3.2) so the tests cover each request shape."""
    op = req.route_params["op"]
    iid = req.route_params.get("instanceId")
    body = req.get_json() if req.get_body() else None
    result: object = None
    if op == "raise":
        await client.raise_event(iid, body["name"], body.get("data"))
    elif op == "terminate":
        await client.terminate(iid, body["reason"])
    elif op == "suspend":
        await client.suspend(iid, "pause")
    elif op == "resume":
        await client.resume(iid, "go")
    elif op == "purge":
        result = (await client.purge_instance_history(iid)).instances_deleted
    elif op == "status":
        status = await client.get_status(iid, show_history=True, show_history_output=True)
        result = {"runtimeStatus": status.runtime_status.value, "output": status.output,
                  "historyEvents": getattr(status, "historyEvents", None)}
    elif op == "list":
        statuses = [df.OrchestrationRuntimeStatus(s) for s in body["statuses"]]
        found = await client.get_status_by(runtime_status=statuses)
        result = sorted(s.instance_id for s in found if s.instance_id.startswith(body["prefix"]))
    elif op == "signal":
        await client.signal_entity(df.EntityId("Counter", iid), "add", body["value"])
    elif op == "entity":
        state = await client.read_entity_state(df.EntityId("Counter", iid))
        result = {"exists": state.entity_exists, "state": state.entity_state}
    elif op == "binding":  # where the client binding points the SDK (tests/host/test_host_surfaces.py)
        result = {"rpcBaseUrl": client._orchestration_bindings.rpc_base_url}
    elif op == "wait":
        new_id = await client.start_new("ActivityError")
        return await client.wait_for_completion_or_create_check_status_response(req, new_id, 10000, 50)
    return func.HttpResponse(json.dumps(result), mimetype="application/json")


@app.orchestration_trigger(context_name="context")
def LongTimer(context: df.DurableOrchestrationContext):
    # Ten days: at V3 with Azure Storage settings the SDK emits a chain of 3-day timers.
    yield context.create_timer(context.current_utc_datetime + timedelta(days=10))
    return "woke"


@app.orchestration_trigger(context_name="context")
def FailingChild(context: df.DurableOrchestrationContext):
    yield context.call_activity("AlwaysFails", "child")
    return "unreachable"


@app.orchestration_trigger(context_name="context")
def ParentOfFailing(context: df.DurableOrchestrationContext):
    try:
        yield context.call_sub_orchestrator("FailingChild")
    except Exception as exc:
        retried = yield context.call_sub_orchestrator_with_retry("SubOrch", df.RetryOptions(50, 2), {"x": 2})
        return {"error": str(exc), "retried": retried}
    return None


@app.orchestration_trigger(context_name="context")
def Stepper(context: df.DurableOrchestrationContext):
    first = yield context.call_activity("Hello", "one")
    yield context.wait_for_external_event("Next")
    second = yield context.call_activity("Hello", "two")
    return [first, second]


@app.orchestration_trigger(context_name="context")
def EarlyEvent(context: df.DurableOrchestrationContext):
    yield context.call_activity("SlowHello", {"name": "x", "delay": 0.5})
    first = yield context.wait_for_external_event("E")
    second = yield context.wait_for_external_event("E")
    return [first, second]
