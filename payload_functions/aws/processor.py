"""L2 processor (one Lambda per device): the user's `process` (or pass-through), then the
persister (`{twin}-persister`, async)."""

from __future__ import annotations

from typing import Any

from payload_functions.aws.runtime import direct, invoke_async, naming
from payload_functions.common.settings import Settings
from payload_functions.core.pipeline import process
from shared.contracts import Function, Setting

FUNCTION = Function.PROCESSOR
READS = frozenset({Setting.DIGITAL_TWIN_INFO})


def handler(event: Any, context: Any = None) -> Any:
    settings = Settings(READS)

    def to_persister(reading: dict[str, Any]) -> None:
        invoke_async(naming(settings).function(str(Function.PERSISTER)), reading)

    return direct(str(FUNCTION), event, lambda e: process(e, to_persister))
