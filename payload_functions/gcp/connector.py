"""L1 connector (private HTTP, called by the dispatcher): forward a reading to the remote L2
ingestion in the envelope, with the inter-cloud token."""

from __future__ import annotations

import functions_framework

from payload_functions.common.settings import Settings
from payload_functions.core.pipeline import connect
from payload_functions.gcp.runtime import PROVIDER, HttpRequest, http
from shared.contracts import Function, Setting

FUNCTION = Function.CONNECTOR
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.REMOTE_INGESTION_URL, Setting.INTER_CLOUD_TOKEN})


@functions_framework.http
def connector(request: HttpRequest) -> tuple[str, int, dict[str, str]]:
    settings = Settings(READS)
    return http(str(FUNCTION), request, lambda req: connect(req.json(), settings, PROVIDER))
