"""Hot reader: TwinMaker `dataReader` (direct invoke) or a remote reader's Function URL call
(token-checked), both in TwinMaker's request/response shapes."""

from __future__ import annotations

from typing import Any

from payload_functions.aws.runtime import either
from payload_functions.aws.stores import DynamoHotStore
from payload_functions.common.settings import Settings
from payload_functions.core.readers import read_range
from payload_functions.core.receivers import authorise
from shared.contracts import Function, Setting

FUNCTION = Function.HOT_READER
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.INTER_CLOUD_TOKEN, Setting.INTER_CLOUD_TOKEN_PREVIOUS,
                   Setting.DYNAMODB_TABLE_NAME})


def handler(event: Any, context: Any = None) -> Any:
    settings = Settings(READS)

    def read(body: Any) -> Any:
        store = DynamoHotStore(settings.require(Setting.DYNAMODB_TABLE_NAME))
        return read_range(body, store, settings.twin_info().twin_name)

    def over_http(req: Any) -> Any:
        authorise(req, settings)
        return read(req.json())

    return either(str(FUNCTION), event, read, over_http)
