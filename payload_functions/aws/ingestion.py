"""L0 ingestion (Function URL): token check, unwrap, invoke the device's processor."""

from __future__ import annotations

from typing import Any

from payload_functions.aws.runtime import http, invoke_async, naming
from payload_functions.common.settings import Settings
from payload_functions.core.receivers import ingestion
from shared.contracts import Function, Setting, Telemetry

FUNCTION = Function.INGESTION
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.INTER_CLOUD_TOKEN, Setting.INTER_CLOUD_TOKEN_PREVIOUS})


def handler(event: Any, context: Any = None) -> Any:
    settings = Settings(READS)

    def to_processor(reading: dict[str, Any]) -> None:
        invoke_async(naming(settings).function(f"{reading[Telemetry.DEVICE_ID]}-{Function.PROCESSOR}"), reading)

    return http(str(FUNCTION), event, lambda req: ingestion(req, settings, to_processor))
