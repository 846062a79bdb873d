"""L0 archive writer (public HTTP, token checked in code): one object into the ARCHIVE bucket."""

from __future__ import annotations

import functions_framework

from payload_functions.common.settings import Settings
from payload_functions.core.receivers import archive_writer as receive
from payload_functions.gcp.gcs_store import archive_store
from payload_functions.gcp.runtime import HttpRequest, http
from shared.contracts import Function, Setting

FUNCTION = Function.ARCHIVE_WRITER
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.INTER_CLOUD_TOKEN, Setting.INTER_CLOUD_TOKEN_PREVIOUS,
                   Setting.ARCHIVE_GCS_BUCKET})


@functions_framework.http
def archive_writer(request: HttpRequest) -> tuple[str, int, dict[str, str]]:
    settings = Settings(READS)
    return http(str(FUNCTION), request, lambda req: receive(req, settings, lambda: archive_store(settings)))
