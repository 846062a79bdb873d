"""L0 hot reader (public HTTP, token checked in code): a remote L4/L5 reader's time-range query
over Firestore, in IoT TwinMaker's `dataReader` shapes (AWS `dt-reader` forwards them as is)."""

from __future__ import annotations

import functions_framework

from payload_functions.common.settings import Settings
from payload_functions.core.readers import read_range
from payload_functions.core.receivers import HotRead
from payload_functions.core.receivers import hot_reader as receive
from payload_functions.gcp.firestore_store import hot_store
from payload_functions.gcp.runtime import HttpRequest, http
from shared.contracts import Function, Setting

FUNCTION = Function.HOT_READER
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.INTER_CLOUD_TOKEN, Setting.INTER_CLOUD_TOKEN_PREVIOUS,
                   Setting.FIRESTORE_DATABASE, Setting.FIRESTORE_COLLECTION})


def serve(function: Function, read: HotRead, request: HttpRequest) -> tuple[str, int, dict[str, str]]:
    """Both hot readers (they read the same settings)."""
    settings = Settings(READS)
    return http(str(function), request, lambda req: receive(req, settings, lambda: hot_store(settings), read))


@functions_framework.http
def hot_reader(request: HttpRequest) -> tuple[str, int, dict[str, str]]:
    return serve(FUNCTION, read_range, request)
