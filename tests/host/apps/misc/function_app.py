"""Odd corners: renamed functions called by object, unsupported triggers, optional route params."""

from __future__ import annotations

import json

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.activity_trigger(input_name="value", activity="Renamed")
def renamed_activity(value: str) -> str:
    return value


@app.orchestration_trigger(context_name="context")
def CallsByObject(context: df.DurableOrchestrationContext):
    # Passing the function object sends its Python name, not the registered 'Renamed' (research 2.1).
    result = yield context.call_activity(renamed_activity, "x")
    return result


@app.route(route="items/{category}/{id?}", methods=["GET"])
def items(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(dict(req.route_params)), mimetype="application/json")


@app.route(route="echo", methods=["POST"])
def echo(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(req.get_body(), status_code=201, headers={"X-Echo": req.headers.get("x-in", "")})


@app.route(route="crash", methods=["GET"])
def crash(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("secret-ish detail that must not leak")


@app.queue_trigger(arg_name="msg", queue_name="q", connection="AzureWebJobsStorage")
def on_queue(msg: func.QueueMessage) -> None:
    return None


@app.timer_trigger(schedule="0 0 * * * *", arg_name="timer")
def hourly(timer: func.TimerRequest) -> None:
    return None
