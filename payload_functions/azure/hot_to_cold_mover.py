"""Hot -> cold mover (timer, daily at midnight UTC): expired Cosmos readings to the cold
container, or to the remote cold writer when cold storage is on another cloud."""

from __future__ import annotations

from datetime import UTC, datetime

import azure.functions as func

from payload_functions.azure.blob_store import cold_store
from payload_functions.azure.cosmos_store import hot_store
from payload_functions.azure.runtime import PROVIDER, triggered
from payload_functions.common.settings import Settings
from payload_functions.core.movers import hot_to_cold
from shared.contracts import Function, Setting

FUNCTION = Function.HOT_TO_COLD_MOVER
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.COSMOS_DB_ENDPOINT, Setting.COSMOS_DB_KEY,
                   Setting.COSMOS_DB_DATABASE, Setting.COSMOS_DB_CONTAINER, Setting.BLOB_CONNECTION_STRING,
                   Setting.COLD_STORAGE_CONTAINER, Setting.REMOTE_COLD_WRITER_URL, Setting.INTER_CLOUD_TOKEN})

bp = func.Blueprint()


@bp.function_name(name="hot-to-cold-mover")
@bp.timer_trigger(arg_name="timer", schedule="0 0 0 * * *", run_on_startup=False)
def hot_to_cold_mover_function(timer: func.TimerRequest) -> None:
    settings = Settings(READS)
    triggered(str(FUNCTION), lambda: hot_to_cold(
        settings, PROVIDER, lambda: hot_store(settings), lambda: cold_store(settings), datetime.now(UTC)))
