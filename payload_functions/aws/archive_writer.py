"""L0 archive writer (Function URL): token check, write one object as DEEP_ARCHIVE."""

from __future__ import annotations

from typing import Any

from payload_functions.aws.runtime import http
from payload_functions.aws.stores import ARCHIVE_STORAGE_CLASS, S3Store
from payload_functions.common.settings import Settings
from payload_functions.core.receivers import archive_writer
from shared.contracts import Function, Setting

FUNCTION = Function.ARCHIVE_WRITER
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.INTER_CLOUD_TOKEN, Setting.INTER_CLOUD_TOKEN_PREVIOUS,
                   Setting.ARCHIVE_S3_BUCKET_NAME})


def handler(event: Any, context: Any = None) -> Any:
    settings = Settings(READS)
    return http(str(FUNCTION), event, lambda req: archive_writer(
        req, settings, lambda: S3Store(settings.require(Setting.ARCHIVE_S3_BUCKET_NAME), ARCHIVE_STORAGE_CLASS)))
