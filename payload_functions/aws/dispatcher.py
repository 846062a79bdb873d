"""L1 dispatcher (IoT topic rule -> Lambda): route each reading to the device's processor
(`{twin}-{device}-processor`) or, when L2 is on another cloud, to the connector."""

from __future__ import annotations

from typing import Any

from payload_functions.aws.runtime import direct, invoke_async, naming
from payload_functions.common.settings import Settings
from payload_functions.core.pipeline import dispatch
from shared.contracts import Function, Setting, Telemetry

FUNCTION = Function.DISPATCHER
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.TARGET_FUNCTION})


def handler(event: Any, context: Any = None) -> Any:
    settings = Settings(READS)

    def to_processor(reading: dict[str, Any]) -> None:
        invoke_async(naming(settings).function(f"{reading[Telemetry.DEVICE_ID]}-{Function.PROCESSOR}"), reading)

    def to_connector(reading: dict[str, Any]) -> None:
        invoke_async(naming(settings).function(str(Function.CONNECTOR)), reading)

    calls = {Function.PROCESSOR: to_processor, Function.CONNECTOR: to_connector}
    return direct(str(FUNCTION), event, lambda e: dispatch(e, settings, calls, "event"))
