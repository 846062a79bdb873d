"""L2 persister (private HTTP, called by the processor): Firestore (or the remote hot writer),
then the Azure ADT Pusher when L4 is on Azure (`REMOTE_ADT_PUSHER_URL`, inter-cloud token), then
the event checker (private HTTP) when enabled."""

from __future__ import annotations

from typing import Any

import functions_framework

from payload_functions.common.settings import Settings
from payload_functions.core.pipeline import persist
from payload_functions.gcp.firestore_store import hot_store
from payload_functions.gcp.runtime import PROVIDER, HttpRequest, call_function, http
from shared.contracts import Function, Setting

FUNCTION = Function.PERSISTER
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.FIRESTORE_DATABASE, Setting.FIRESTORE_COLLECTION,
                   Setting.USE_EVENT_CHECKING, Setting.REMOTE_WRITER_URL, Setting.INTER_CLOUD_TOKEN,
                   Setting.REMOTE_ADT_PUSHER_URL, Setting.EVENT_CHECKER_URL})
EVENT_CHECK_TIMEOUT = 10.0
"""The event check is best effort after the reading is stored and the twin updated: one retry,
bounded, so a slow checker cannot hold up the telemetry path."""


def persist_reading(raw: Any) -> dict[str, Any]:
    settings = Settings(READS)

    def check_events(reading: dict[str, Any]) -> Any:
        return call_function(settings.require(Setting.EVENT_CHECKER_URL), reading, retries=1,
                             timeout=EVENT_CHECK_TIMEOUT).body

    return persist(raw, settings, PROVIDER, lambda: hot_store(settings), check_events=check_events)


@functions_framework.http
def persister(request: HttpRequest) -> tuple[str, int, dict[str, str]]:
    return http(str(FUNCTION), request, lambda req: persist_reading(req.json()))
