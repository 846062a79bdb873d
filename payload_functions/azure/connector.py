"""L1 connector: forward a reading to the remote L2 ingestion (envelope + token). The dispatcher
in the same app calls `forward` in-process; the HTTP route serves other callers."""

from __future__ import annotations

from typing import Any

import azure.functions as func

from payload_functions.azure.runtime import PROVIDER, http
from payload_functions.common.settings import Settings
from payload_functions.core.pipeline import connect
from shared.contracts import Function, Setting

FUNCTION = Function.CONNECTOR
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.REMOTE_INGESTION_URL, Setting.INTER_CLOUD_TOKEN})

bp = func.Blueprint()


def forward(reading: Any) -> dict[str, Any]:
    return connect(reading, Settings(READS), PROVIDER)


@bp.function_name(name="connector")
@bp.route(route="connector", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def connector_function(req: func.HttpRequest) -> func.HttpResponse:
    return http(str(FUNCTION), req, lambda r: forward(r.json()))
