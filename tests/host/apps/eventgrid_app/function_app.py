"""Event Grid triggered functions, one plain and one that starts an orchestration."""

from __future__ import annotations

import json
import os
from pathlib import Path

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


def _record(entry: dict) -> None:
    # The test points EVENT_LOG at a file; app settings reach functions as environment variables.
    with Path(os.environ["EVENT_LOG"]).open("a") as fh:
        fh.write(json.dumps(entry) + "\n")


@app.event_grid_trigger(arg_name="event")
def on_event(event: func.EventGridEvent) -> None:
    if isinstance(event, func.CloudEvent):
        _record({"schema": "cloudevents", "id": event.id, "type": event.type, "source": event.source,
                 "subject": event.subject, "data": event.get_json()})
    else:
        _record({"schema": "eventgrid", "id": event.id, "type": event.event_type, "subject": event.subject,
                 "topic": event.topic, "data": event.get_json()})


@app.event_grid_trigger(arg_name="event")
@app.durable_client_input(client_name="client")
async def start_on_event(event: func.EventGridEvent, client: df.DurableOrchestrationClient) -> None:
    await client.start_new("Echo", None, {"subject": event.subject})


@app.event_grid_trigger(arg_name="event")
def broken(event: func.EventGridEvent) -> None:
    raise RuntimeError("handler broke")


@app.orchestration_trigger(context_name="context")
def Echo(context: df.DurableOrchestrationContext):
    value = yield context.call_activity("Shout", context.get_input()["subject"])
    return value


@app.activity_trigger(input_name="text")
def Shout(text: str) -> str:
    return text.upper()
