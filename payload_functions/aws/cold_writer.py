"""L0 cold writer (Function URL): token check, write one chunk to the cold bucket (STANDARD_IA)."""

from __future__ import annotations

from typing import Any

from payload_functions.aws.runtime import http
from payload_functions.aws.stores import COLD_STORAGE_CLASS, S3Store
from payload_functions.common.settings import Settings
from payload_functions.core.receivers import cold_writer
from shared.contracts import Function, Setting

FUNCTION = Function.COLD_WRITER
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.INTER_CLOUD_TOKEN, Setting.INTER_CLOUD_TOKEN_PREVIOUS,
                   Setting.COLD_S3_BUCKET_NAME})


def handler(event: Any, context: Any = None) -> Any:
    settings = Settings(READS)
    return http(str(FUNCTION), event, lambda req: cold_writer(
        req, settings, lambda: S3Store(settings.require(Setting.COLD_S3_BUCKET_NAME), COLD_STORAGE_CLASS)))
