"""L2 processor: the user's `process` (or pass-through), then the persister in-process (the
same app hosts both, so no key or URL is needed between them)."""

from __future__ import annotations

import azure.functions as func

from payload_functions.azure.persister import persist_reading
from payload_functions.azure.runtime import http
from payload_functions.core.pipeline import process
from shared.contracts import Function, Setting

FUNCTION = Function.PROCESSOR
READS = frozenset({Setting.DIGITAL_TWIN_INFO})

bp = func.Blueprint()


@bp.function_name(name="processor")
@bp.route(route="processor", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def processor_function(req: func.HttpRequest) -> func.HttpResponse:
    return http(str(FUNCTION), req, lambda r: process(r.json(), persist_reading))
