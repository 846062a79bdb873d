"""L1 connector: forward a reading to the remote L2 ingestion (envelope + token)."""

from __future__ import annotations

from typing import Any

from payload_functions.aws.runtime import PROVIDER, direct
from payload_functions.common.settings import Settings
from payload_functions.core.pipeline import connect
from shared.contracts import Function, Setting

FUNCTION = Function.CONNECTOR
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.REMOTE_INGESTION_URL, Setting.INTER_CLOUD_TOKEN})


def handler(event: Any, context: Any = None) -> Any:
    settings = Settings(READS)
    return direct(str(FUNCTION), event, lambda e: connect(e, settings, PROVIDER))
