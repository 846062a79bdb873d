"""L0 cold writer: token check, write one chunk to the cold container (Cool tier)."""

from __future__ import annotations

import azure.functions as func

from payload_functions.azure.blob_store import cold_store
from payload_functions.azure.runtime import http
from payload_functions.common.settings import Settings
from payload_functions.core.receivers import cold_writer
from shared.contracts import Function, Setting

FUNCTION = Function.COLD_WRITER
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.INTER_CLOUD_TOKEN, Setting.INTER_CLOUD_TOKEN_PREVIOUS,
                   Setting.BLOB_CONNECTION_STRING, Setting.COLD_STORAGE_CONTAINER})

bp = func.Blueprint()


@bp.function_name(name="cold-writer")
@bp.route(route="cold-writer", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def cold_writer_function(req: func.HttpRequest) -> func.HttpResponse:
    settings = Settings(READS)
    return http(str(FUNCTION), req, lambda r: cold_writer(r, settings, lambda: cold_store(settings)))
