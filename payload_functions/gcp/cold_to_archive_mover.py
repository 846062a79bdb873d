"""Cold -> archive mover (private HTTP, run by its Cloud Scheduler job): cold objects older than
the cold retention to the ARCHIVE bucket, or to the remote archive writer when the archive is on
another cloud. The schedule time is the run's "now" (`runtime.run_time`)."""

from __future__ import annotations

import functions_framework

from payload_functions.common.settings import Settings
from payload_functions.core.movers import cold_to_archive
from payload_functions.gcp.gcs_store import archive_store, cold_store
from payload_functions.gcp.runtime import PROVIDER, HttpRequest, http, run_time
from shared.contracts import Function, Setting

FUNCTION = Function.COLD_TO_ARCHIVE_MOVER
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.COLD_GCS_BUCKET, Setting.ARCHIVE_GCS_BUCKET,
                   Setting.REMOTE_ARCHIVE_WRITER_URL, Setting.INTER_CLOUD_TOKEN})


@functions_framework.http
def cold_to_archive_mover(request: HttpRequest) -> tuple[str, int, dict[str, str]]:
    settings = Settings(READS)
    return http(str(FUNCTION), request, lambda req: cold_to_archive(
        settings, PROVIDER, lambda: cold_store(settings), lambda: archive_store(settings), run_time(request)))
