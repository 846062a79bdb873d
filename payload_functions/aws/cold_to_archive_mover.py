"""Cold -> archive mover (EventBridge schedule): old cold objects to DEEP_ARCHIVE, or to the
remote archive writer when the archive is on another cloud."""

from __future__ import annotations

from typing import Any

from payload_functions.aws.hot_to_cold_mover import scheduled_time
from payload_functions.aws.runtime import PROVIDER, direct
from payload_functions.aws.stores import ARCHIVE_STORAGE_CLASS, COLD_STORAGE_CLASS, S3Store
from payload_functions.common.settings import Settings
from payload_functions.core.movers import cold_to_archive
from shared.contracts import Function, Setting

FUNCTION = Function.COLD_TO_ARCHIVE_MOVER
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.COLD_S3_BUCKET_NAME, Setting.ARCHIVE_S3_BUCKET_NAME,
                   Setting.REMOTE_ARCHIVE_WRITER_URL, Setting.INTER_CLOUD_TOKEN})


def handler(event: Any, context: Any = None) -> Any:
    settings = Settings(READS)
    return direct(str(FUNCTION), event, lambda e: cold_to_archive(
        settings, PROVIDER,
        lambda: S3Store(settings.require(Setting.COLD_S3_BUCKET_NAME), COLD_STORAGE_CLASS),
        lambda: S3Store(settings.require(Setting.ARCHIVE_S3_BUCKET_NAME), ARCHIVE_STORAGE_CLASS),
        scheduled_time(e)))
