"""L0 hot writer: token check, upsert one reading into Cosmos DB."""

from __future__ import annotations

import azure.functions as func

from payload_functions.azure.cosmos_store import hot_store
from payload_functions.azure.runtime import http
from payload_functions.common.settings import Settings
from payload_functions.core.receivers import hot_writer
from shared.contracts import Function, Setting

FUNCTION = Function.HOT_WRITER
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.INTER_CLOUD_TOKEN, Setting.INTER_CLOUD_TOKEN_PREVIOUS,
                   Setting.COSMOS_DB_ENDPOINT, Setting.COSMOS_DB_KEY, Setting.COSMOS_DB_DATABASE,
                   Setting.COSMOS_DB_CONTAINER})

bp = func.Blueprint()


@bp.function_name(name="hot-writer")
@bp.route(route="hot-writer", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def hot_writer_function(req: func.HttpRequest) -> func.HttpResponse:
    settings = Settings(READS)
    return http(str(FUNCTION), req, lambda r: hot_writer(r, settings, lambda: hot_store(settings)))
