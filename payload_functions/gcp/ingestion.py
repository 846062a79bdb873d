"""L0 ingestion (public HTTP, token checked in code): unwrap, call the reading's device's L2 processor (private,
ID token)."""

from __future__ import annotations

from typing import Any

import functions_framework

from payload_functions.common.settings import Settings
from payload_functions.core.receivers import ingestion as receive
from payload_functions.gcp.runtime import HttpRequest, call_function, http
from shared.contracts import Function, Setting, Telemetry

FUNCTION = Function.INGESTION
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.INTER_CLOUD_TOKEN, Setting.INTER_CLOUD_TOKEN_PREVIOUS,
                   Setting.PROCESSOR_URL})


@functions_framework.http
def ingestion(request: HttpRequest) -> tuple[str, int, dict[str, str]]:
    settings = Settings(READS)

    def to_processor(reading: dict[str, Any]) -> Any:
        # Each device's own processor function (keyed by device id); another device: 422.
        return call_function(settings.for_device(Setting.PROCESSOR_URL, reading[Telemetry.DEVICE_ID]), reading).body

    return http(str(FUNCTION), request, lambda req: receive(req, settings, to_processor))
