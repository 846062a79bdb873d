"""L0 cold writer (public HTTP, token checked in code): one chunk into the NEARLINE bucket."""

from __future__ import annotations

import functions_framework

from payload_functions.common.settings import Settings
from payload_functions.core.receivers import cold_writer as receive
from payload_functions.gcp.gcs_store import cold_store
from payload_functions.gcp.runtime import HttpRequest, http
from shared.contracts import Function, Setting

FUNCTION = Function.COLD_WRITER
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.INTER_CLOUD_TOKEN, Setting.INTER_CLOUD_TOKEN_PREVIOUS,
                   Setting.COLD_GCS_BUCKET})


@functions_framework.http
def cold_writer(request: HttpRequest) -> tuple[str, int, dict[str, str]]:
    settings = Settings(READS)
    return http(str(FUNCTION), request, lambda req: receive(req, settings, lambda: cold_store(settings)))
