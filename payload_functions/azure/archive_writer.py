"""L0 archive writer: token check, write one object to the archive container (Archive tier)."""

from __future__ import annotations

import azure.functions as func

from payload_functions.azure.blob_store import archive_store
from payload_functions.azure.runtime import http
from payload_functions.common.settings import Settings
from payload_functions.core.receivers import archive_writer
from shared.contracts import Function, Setting

FUNCTION = Function.ARCHIVE_WRITER
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.INTER_CLOUD_TOKEN, Setting.INTER_CLOUD_TOKEN_PREVIOUS,
                   Setting.BLOB_CONNECTION_STRING, Setting.ARCHIVE_STORAGE_CONTAINER})

bp = func.Blueprint()


@bp.function_name(name="archive-writer")
@bp.route(route="archive-writer", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def archive_writer_function(req: func.HttpRequest) -> func.HttpResponse:
    settings = Settings(READS)
    return http(str(FUNCTION), req, lambda r: archive_writer(r, settings, lambda: archive_store(settings)))
