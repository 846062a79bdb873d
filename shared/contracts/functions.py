"""Payload functions: their names, triggers, whether they are cross-cloud receivers, and their
HTTP routes inside a Function App."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from shared.contracts.layers import Layer


class Function(StrEnum):
    """Payload function names: the Azure function name and HTTP route, the suffix of the AWS
    Lambda / GCP Cloud Function name (`{twin}-{function}`), and the code package name."""

    INGESTION = "ingestion"
    HOT_WRITER = "hot-writer"
    COLD_WRITER = "cold-writer"
    ARCHIVE_WRITER = "archive-writer"
    HOT_READER = "hot-reader"
    HOT_READER_LAST_ENTRY = "hot-reader-last-entry"
    ADT_PUSHER = "adt-pusher"
    DISPATCHER = "dispatcher"
    CONNECTOR = "connector"
    PROCESSOR = "processor"
    PERSISTER = "persister"
    EVENT_CHECKER = "event-checker"
    EVENT_FEEDBACK = "event-feedback"
    HOT_TO_COLD_MOVER = "hot-to-cold-mover"
    COLD_TO_ARCHIVE_MOVER = "cold-to-archive-mover"
    ADT_UPDATER = "adt-updater"
    DT_READER = "dt-reader"
    """AWS L4 side of the hot-reader boundary: TwinMaker's dataReader forwarding to a remote reader."""
    DT_READER_LAST_ENTRY = "dt-reader-last-entry"
    USER_PROCESSOR = "user-processor"
    """Azure: runs a device's own `process` (users' code, in the L2 user-functions app)."""
    EVENT_ACTION = "event-action"
    """A user's event action (`autoDeploy`): its code runs in this function (users' code)."""


USER_CODE_FUNCTIONS: frozenset[Function] = frozenset({Function.USER_PROCESSOR, Function.EVENT_ACTION})
"""Functions whose package carries users' code (a processor's package may too)."""

Trigger = Literal["http", "event-grid", "timer", "pubsub", "iot-rule", "invoke"]


@dataclass(frozen=True)
class FunctionContract:
    """What one payload function is: where it runs, how it is triggered, and whether it is a
    public inter-cloud receiver (token-checked, reachable from other clouds)."""

    name: Function
    layer: Layer
    trigger: Trigger
    receiver: bool = False
    description: str = ""


FUNCTIONS: dict[Function, FunctionContract] = {
    c.name: c
    for c in (
        FunctionContract(Function.INGESTION, Layer.L0, "http", True, "L1->L2 receiver on the L2 cloud; calls the local processor."),
        FunctionContract(Function.HOT_WRITER, Layer.L0, "http", True, "L2->L3_hot receiver on the hot cloud; upserts one reading."),
        FunctionContract(Function.COLD_WRITER, Layer.L0, "http", True, "L3_hot->L3_cold receiver; writes one chunk."),
        FunctionContract(Function.ARCHIVE_WRITER, Layer.L0, "http", True, "L3_cold->L3_archive receiver; writes one object."),
        FunctionContract(Function.HOT_READER, Layer.L0, "http", True, "L3_hot->L4/L5 receiver; time-range query."),
        FunctionContract(Function.HOT_READER_LAST_ENTRY, Layer.L0, "http", True, "L3_hot->L4/L5 receiver; latest value."),
        FunctionContract(Function.ADT_PUSHER, Layer.L0, "http", True, "Azure L0: a remote persister's reading -> twin patch."),
        FunctionContract(Function.DISPATCHER, Layer.L1, "event-grid", False, "Routes telemetry to the processor or the connector."),
        FunctionContract(Function.CONNECTOR, Layer.L1, "http", False, "L1 sender when L2 is on another cloud."),
        FunctionContract(Function.PROCESSOR, Layer.L2, "http", False, "Runs the device's processing, then calls the persister."),
        FunctionContract(Function.PERSISTER, Layer.L2, "http", False, "Stores a reading (locally or remote), updates twins when it owns that."),
        FunctionContract(Function.EVENT_CHECKER, Layer.L2, "http", False, "Evaluates the spec's event rules."),
        FunctionContract(Function.EVENT_FEEDBACK, Layer.L0, "http", True,
                         "Publishes feedback back to a device; on L1's cloud a token-checked receiver when L2 is elsewhere."),
        FunctionContract(Function.HOT_TO_COLD_MOVER, Layer.L3_HOT, "timer", False, "Moves expired hot readings to cold storage."),
        FunctionContract(Function.COLD_TO_ARCHIVE_MOVER, Layer.L3_COLD, "timer", False, "Moves expired cold objects to the archive."),
        FunctionContract(Function.ADT_UPDATER, Layer.L4, "event-grid", False, "All-Azure path: IoT Hub telemetry -> twin patch."),
        FunctionContract(Function.DT_READER, Layer.L4, "invoke", False, "TwinMaker dataReader forwarding to the remote hot reader."),
        FunctionContract(Function.DT_READER_LAST_ENTRY, Layer.L4, "invoke", False, "TwinMaker last-entry reader forwarding to the remote reader."),
        FunctionContract(Function.USER_PROCESSOR, Layer.L2, "http", False, "Azure: a device's own process(event) (users' code)."),
        FunctionContract(Function.EVENT_ACTION, Layer.L2, "http", False, "A user's event action, run when its rule fires."),
    )
}

ROUTE_PREFIX = "api"
"""Azure Functions' default HTTP route prefix (host.json `extensions.http.routePrefix`)."""


def route(function: Function | str) -> str:
    """The `route=` of an HTTP-triggered Azure function: the function name itself."""
    return str(Function(function))


def url_path(function: Function | str) -> str:
    """The URL path of an HTTP function in a Function App, e.g. `/api/hot-writer`."""
    return f"/{ROUTE_PREFIX}/{route(function)}"


def azure_function_url(app_host: str, function: Function | str) -> str:
    """`https://{app_host}/api/{function}` (app_host is the ARM `defaultHostName`)."""
    return f"https://{app_host}{url_path(function)}"
