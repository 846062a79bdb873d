"""Cold -> archive mover (timer, daily at midnight UTC): old cold blobs to the archive
container (Archive tier), or to the remote archive writer."""

from __future__ import annotations

from datetime import UTC, datetime

import azure.functions as func

from payload_functions.azure.blob_store import archive_store, cold_store
from payload_functions.azure.runtime import PROVIDER, triggered
from payload_functions.common.settings import Settings
from payload_functions.core.movers import cold_to_archive
from shared.contracts import Function, Setting

FUNCTION = Function.COLD_TO_ARCHIVE_MOVER
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.BLOB_CONNECTION_STRING, Setting.COLD_STORAGE_CONTAINER,
                   Setting.ARCHIVE_STORAGE_CONTAINER, Setting.REMOTE_ARCHIVE_WRITER_URL, Setting.INTER_CLOUD_TOKEN})

bp = func.Blueprint()


@bp.function_name(name="cold-to-archive-mover")
@bp.timer_trigger(arg_name="timer", schedule="0 0 0 * * *", run_on_startup=False)
def cold_to_archive_mover_function(timer: func.TimerRequest) -> None:
    settings = Settings(READS)
    triggered(str(FUNCTION), lambda: cold_to_archive(
        settings, PROVIDER, lambda: cold_store(settings), lambda: archive_store(settings), datetime.now(UTC)))
