"""No-op activities for benchmarks/host_overhead.py."""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.orchestration_trigger(context_name="context")
def BenchFanOut(context: df.DurableOrchestrationContext):
    n = context.get_input()
    results = yield context.task_all([context.call_activity("Noop", i) for i in range(n)])
    return len(results)


@app.orchestration_trigger(context_name="context")
def BenchChain(context: df.DurableOrchestrationContext):
    n = context.get_input()
    for i in range(n):
        yield context.call_activity("Noop", i)
    return n


@app.activity_trigger(input_name="value")
def Noop(value: int) -> int:
    return value
