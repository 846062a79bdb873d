"""Hot reader, latest value, over HTTP (token-checked), TwinMaker
`attributePropertyValueReaderByEntity` request/response shapes."""

from __future__ import annotations

import azure.functions as func

from payload_functions.azure.cosmos_store import hot_store
from payload_functions.azure.runtime import http
from payload_functions.common.settings import Settings
from payload_functions.core.readers import read_latest
from payload_functions.core.receivers import hot_reader
from shared.contracts import Function, Setting

FUNCTION = Function.HOT_READER_LAST_ENTRY
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.INTER_CLOUD_TOKEN, Setting.INTER_CLOUD_TOKEN_PREVIOUS,
                   Setting.COSMOS_DB_ENDPOINT, Setting.COSMOS_DB_KEY, Setting.COSMOS_DB_DATABASE,
                   Setting.COSMOS_DB_CONTAINER})

bp = func.Blueprint()


@bp.function_name(name="hot-reader-last-entry")
@bp.route(route="hot-reader-last-entry", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def hot_reader_last_entry_function(req: func.HttpRequest) -> func.HttpResponse:
    settings = Settings(READS)
    return http(str(FUNCTION), req, lambda r: hot_reader(r, settings, lambda: hot_store(settings), read_latest))
