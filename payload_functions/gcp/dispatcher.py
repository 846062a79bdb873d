"""L1 dispatcher (Pub/Sub telemetry topic -> Eventarc CloudEvent): route each reading to the L2
processor of the reading's device or, when L2 is on another cloud, to the connector (both private HTTP, ID token)."""

from __future__ import annotations

from typing import Any

import functions_framework

from payload_functions.common.settings import Settings
from payload_functions.core.pipeline import dispatch
from payload_functions.gcp.runtime import CloudEvent, call_function, pubsub_reading, triggered
from shared.contracts import Function, Setting, Telemetry

FUNCTION = Function.DISPATCHER
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.TARGET_FUNCTION, Setting.PROCESSOR_URL,
                   Setting.CONNECTOR_URL})


def route_event(event: CloudEvent, settings: Settings) -> dict[str, Any]:
    def to_processor(reading: dict[str, Any]) -> Any:
        # Each device's own processor function (keyed by device id); another device: 422.
        return call_function(settings.for_device(Setting.PROCESSOR_URL, reading[Telemetry.DEVICE_ID]), reading).body

    def to_connector(reading: dict[str, Any]) -> Any:
        return call_function(settings.require(Setting.CONNECTOR_URL), reading).body

    calls = {Function.PROCESSOR: to_processor, Function.CONNECTOR: to_connector}
    return dispatch(pubsub_reading(event), settings, calls, "event.data.message.data")


@functions_framework.cloud_event
def dispatcher(event: CloudEvent) -> None:
    settings = Settings(READS)
    triggered(str(FUNCTION), lambda: route_event(event, settings))
