"""Hot -> cold mover (private HTTP, run by its Cloud Scheduler job): expired Firestore readings
to the NEARLINE bucket, or to the remote cold writer when cold storage is on another cloud. The
job's `X-CloudScheduler-ScheduleTime` is the run's "now", so a retried run moves the same
readings (`runtime.run_time`)."""

from __future__ import annotations

import functions_framework

from payload_functions.common.settings import Settings
from payload_functions.core.movers import hot_to_cold
from payload_functions.gcp.firestore_store import hot_store
from payload_functions.gcp.gcs_store import cold_store
from payload_functions.gcp.runtime import PROVIDER, HttpRequest, http, run_time
from shared.contracts import Function, Setting

FUNCTION = Function.HOT_TO_COLD_MOVER
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.FIRESTORE_DATABASE, Setting.FIRESTORE_COLLECTION,
                   Setting.COLD_GCS_BUCKET, Setting.REMOTE_COLD_WRITER_URL, Setting.INTER_CLOUD_TOKEN})


@functions_framework.http
def hot_to_cold_mover(request: HttpRequest) -> tuple[str, int, dict[str, str]]:
    settings = Settings(READS)
    return http(str(FUNCTION), request, lambda req: hot_to_cold(
        settings, PROVIDER, lambda: hot_store(settings), lambda: cold_store(settings), run_time(request)))
