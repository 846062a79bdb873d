"""L2 persister: Cosmos DB (or the remote hot writer), then the twin patch when this persister
owns it (L1 elsewhere, L4 on Azure), then the event checker (in-process) when enabled."""

from __future__ import annotations

from typing import Any

import azure.functions as func

from payload_functions.azure.cosmos_store import hot_store
from payload_functions.azure.digitaltwins import ADT_READS, TwinPatcher
from payload_functions.azure.event_checker import check_reading
from payload_functions.azure.runtime import PROVIDER, http
from payload_functions.common.settings import Settings
from payload_functions.core.pipeline import persist
from shared.contracts import Function, Setting

FUNCTION = Function.PERSISTER
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.COSMOS_DB_ENDPOINT, Setting.COSMOS_DB_KEY,
                   Setting.COSMOS_DB_DATABASE, Setting.COSMOS_DB_CONTAINER, Setting.USE_EVENT_CHECKING,
                   Setting.REMOTE_WRITER_URL, Setting.INTER_CLOUD_TOKEN, *ADT_READS})

bp = func.Blueprint()


def persist_reading(reading: Any) -> dict[str, Any]:
    settings = Settings(READS)
    patcher = TwinPatcher(settings)
    return persist(reading, settings, PROVIDER, lambda: hot_store(settings),
                   patch_twin=lambda twin, values, when: patcher.patch(twin, values, when).to_json(),
                   check_events=check_reading)


@bp.function_name(name="persister")
@bp.route(route="persister", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def persister_function(req: func.HttpRequest) -> func.HttpResponse:
    return http(str(FUNCTION), req, lambda r: persist_reading(r.json()))
