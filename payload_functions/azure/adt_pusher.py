"""L0 ADT Pusher: a remote persister's reading (in the envelope) -> the device's twin, `add` on
the `lastX` properties its model declares, with the reading's timestamp as their `sourceTime`.
Concurrent readings for one twin are merged into one paced write, and an older reading never
overwrites a newer one (see `payload_functions.azure.digitaltwins`). 503 until L4 exists."""

from __future__ import annotations

import azure.functions as func

from payload_functions.azure.digitaltwins import ADT_READS, TwinPatcher
from payload_functions.azure.runtime import http
from payload_functions.common.settings import Settings
from payload_functions.core.receivers import adt_pusher
from shared.contracts import Function, Setting

FUNCTION = Function.ADT_PUSHER
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.INTER_CLOUD_TOKEN, Setting.INTER_CLOUD_TOKEN_PREVIOUS,
                   *ADT_READS})

bp = func.Blueprint()


@bp.function_name(name="adt-pusher")
@bp.route(route="adt-pusher", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def adt_pusher_function(req: func.HttpRequest) -> func.HttpResponse:
    settings = Settings(READS)
    patcher = TwinPatcher(settings)
    return http(str(FUNCTION), req, lambda r: adt_pusher(r, settings, lambda t, v, w: patcher.patch(t, v, w).to_json()))
