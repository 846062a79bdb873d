"""Hot reader over HTTP (token-checked), TwinMaker `dataReader` request/response shapes."""

from __future__ import annotations

import azure.functions as func

from payload_functions.azure.cosmos_store import hot_store
from payload_functions.azure.runtime import http
from payload_functions.common.settings import Settings
from payload_functions.core.readers import read_range
from payload_functions.core.receivers import hot_reader
from shared.contracts import Function, Setting

FUNCTION = Function.HOT_READER
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.INTER_CLOUD_TOKEN, Setting.INTER_CLOUD_TOKEN_PREVIOUS,
                   Setting.COSMOS_DB_ENDPOINT, Setting.COSMOS_DB_KEY, Setting.COSMOS_DB_DATABASE,
                   Setting.COSMOS_DB_CONTAINER})

bp = func.Blueprint()


@bp.function_name(name="hot-reader")
@bp.route(route="hot-reader", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def hot_reader_function(req: func.HttpRequest) -> func.HttpResponse:
    settings = Settings(READS)
    return http(str(FUNCTION), req, lambda r: hot_reader(r, settings, lambda: hot_store(settings), read_range))
