"""AWS L4 data connector (latest value) forwarding to the remote hot reader's last-entry URL."""

from __future__ import annotations

from typing import Any

from payload_functions.aws.dt_reader import forward
from payload_functions.aws.runtime import direct
from payload_functions.common.settings import Settings
from shared.contracts import Function, Setting

FUNCTION = Function.DT_READER_LAST_ENTRY
URL_SETTING = Setting.REMOTE_READER_LAST_ENTRY_URL
READS = frozenset({Setting.DIGITAL_TWIN_INFO, URL_SETTING, Setting.INTER_CLOUD_TOKEN})


def handler(event: Any, context: Any = None) -> Any:
    settings = Settings(READS)
    return direct(str(FUNCTION), event, lambda e: forward(e, settings, URL_SETTING))
