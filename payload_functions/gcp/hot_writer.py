"""L0 hot writer (public HTTP, token checked in code): upsert one reading into Firestore."""

from __future__ import annotations

import functions_framework

from payload_functions.common.settings import Settings
from payload_functions.core.receivers import hot_writer as receive
from payload_functions.gcp.firestore_store import hot_store
from payload_functions.gcp.runtime import HttpRequest, http
from shared.contracts import Function, Setting

FUNCTION = Function.HOT_WRITER
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.INTER_CLOUD_TOKEN, Setting.INTER_CLOUD_TOKEN_PREVIOUS,
                   Setting.FIRESTORE_DATABASE, Setting.FIRESTORE_COLLECTION})


@functions_framework.http
def hot_writer(request: HttpRequest) -> tuple[str, int, dict[str, str]]:
    settings = Settings(READS)
    return http(str(FUNCTION), request, lambda req: receive(req, settings, lambda: hot_store(settings)))
