"""L2 processor (private HTTP, called by the dispatcher or ingestion): the user's `process` (or
pass-through), then the persister (private HTTP, ID token)."""

from __future__ import annotations

from typing import Any

import functions_framework

from payload_functions.common.settings import Settings
from payload_functions.core.pipeline import process
from payload_functions.gcp.runtime import HttpRequest, call_function, http
from shared.contracts import Function, Setting

FUNCTION = Function.PROCESSOR
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.PERSISTER_URL})


@functions_framework.http
def processor(request: HttpRequest) -> tuple[str, int, dict[str, str]]:
    settings = Settings(READS)

    def to_persister(reading: dict[str, Any]) -> Any:
        return call_function(settings.require(Setting.PERSISTER_URL), reading).body

    return http(str(FUNCTION), request, lambda req: process(req.json(), to_persister))
