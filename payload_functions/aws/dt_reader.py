"""AWS L4 data connector when hot storage is on another cloud: TwinMaker's `dataReader` request
is forwarded unchanged to the remote hot reader (token in `X-Inter-Cloud-Token`)."""

from __future__ import annotations

from typing import Any

from payload_functions.aws.runtime import direct
from payload_functions.common.http import post_json
from payload_functions.common.settings import Settings
from shared.contracts import Function, Setting

FUNCTION = Function.DT_READER
URL_SETTING = Setting.REMOTE_READER_URL
READS = frozenset({Setting.DIGITAL_TWIN_INFO, URL_SETTING, Setting.INTER_CLOUD_TOKEN})


def forward(event: Any, settings: Settings, url_setting: Setting) -> Any:
    answer = post_json(settings.require(url_setting), event, token=settings.require(Setting.INTER_CLOUD_TOKEN))
    return answer.body


def handler(event: Any, context: Any = None) -> Any:
    settings = Settings(READS)
    return direct(str(FUNCTION), event, lambda e: forward(e, settings, URL_SETTING))
