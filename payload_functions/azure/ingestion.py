"""L0 ingestion: token check, unwrap, POST the reading to the L2 processor (function key)."""

from __future__ import annotations

import azure.functions as func

from payload_functions.azure.runtime import call_processor, http
from payload_functions.common.settings import Settings
from payload_functions.core.receivers import ingestion
from shared.contracts import Function, Setting

FUNCTION = Function.INGESTION
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.INTER_CLOUD_TOKEN, Setting.INTER_CLOUD_TOKEN_PREVIOUS,
                   Setting.PROCESSOR_URL, Setting.PROCESSOR_KEY})

bp = func.Blueprint()


# Literal names: the platform (and the sandbox's indexer) read them statically; the contract
# tests check each one against shared.contracts.
@bp.function_name(name="ingestion")
@bp.route(route="ingestion", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def ingestion_function(req: func.HttpRequest) -> func.HttpResponse:
    settings = Settings(READS)
    return http(str(FUNCTION), req, lambda r: ingestion(r, settings, call_processor(settings)))
