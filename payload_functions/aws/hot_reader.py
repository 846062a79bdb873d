"""Hot reader: TwinMaker `dataReader` (direct invoke) or a remote reader's Function URL call
(token-checked), both in TwinMaker's request/response shapes."""

from __future__ import annotations

from typing import Any

from payload_functions.aws.runtime import either
from payload_functions.aws.stores import DynamoHotStore
from payload_functions.common.settings import Settings
from payload_functions.core.readers import read_range
from payload_functions.core.receivers import HotRead, hot_reader
from shared.contracts import Function, Setting

FUNCTION = Function.HOT_READER
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.INTER_CLOUD_TOKEN, Setting.INTER_CLOUD_TOKEN_PREVIOUS,
                   Setting.DYNAMODB_TABLE_NAME})


def serve(function: Function, read: HotRead, event: Any) -> Any:
    """Both hot readers (they read the same settings): TwinMaker invokes them directly, remote
    readers call their Function URL with the inter-cloud token."""
    settings = Settings(READS)

    def store() -> DynamoHotStore:
        return DynamoHotStore(settings.require(Setting.DYNAMODB_TABLE_NAME))

    return either(str(function), event, lambda body: read(body, store(), settings.twin_info().twin_name),
                  lambda req: hot_reader(req, settings, store, read))


def handler(event: Any, context: Any = None) -> Any:
    return serve(FUNCTION, read_range, event)
