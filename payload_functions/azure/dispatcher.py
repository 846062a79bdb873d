"""L1 dispatcher: IoT Hub telemetry (Event Grid, `Microsoft.Devices.DeviceTelemetry`) to the L2
processor (HTTP, function key) or, when L2 is on another cloud, the connector (in-process)."""

from __future__ import annotations

from typing import Any

import azure.functions as func

from payload_functions.azure.connector import forward
from payload_functions.azure.runtime import call_processor, telemetry_of, triggered
from payload_functions.common.settings import Settings
from payload_functions.core.pipeline import dispatch
from shared.contracts import Function, Setting

FUNCTION = Function.DISPATCHER
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.TARGET_FUNCTION, Setting.PROCESSOR_URL,
                   Setting.PROCESSOR_KEY})

bp = func.Blueprint()


def route_event(event: func.EventGridEvent, settings: Settings) -> dict[str, Any]:
    raw = telemetry_of(event, lambda: settings.twin_info().twin_name)
    calls = {Function.PROCESSOR: call_processor(settings), Function.CONNECTOR: forward}
    return dispatch(raw, settings, calls, "event.data.body")


@bp.function_name(name="dispatcher")
@bp.event_grid_trigger(arg_name="event")
def dispatcher_function(event: func.EventGridEvent) -> None:
    settings = Settings(READS)
    triggered(str(FUNCTION), lambda: route_event(event, settings))
