"""L0 hot writer (Function URL): token check, upsert one reading into DynamoDB."""

from __future__ import annotations

from typing import Any

from payload_functions.aws.runtime import http
from payload_functions.aws.stores import DynamoHotStore
from payload_functions.common.settings import Settings
from payload_functions.core.receivers import hot_writer
from shared.contracts import Function, Setting

FUNCTION = Function.HOT_WRITER
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.INTER_CLOUD_TOKEN, Setting.INTER_CLOUD_TOKEN_PREVIOUS,
                   Setting.DYNAMODB_TABLE_NAME})


def handler(event: Any, context: Any = None) -> Any:
    settings = Settings(READS)
    return http(str(FUNCTION), event, lambda req: hot_writer(
        req, settings, lambda: DynamoHotStore(settings.require(Setting.DYNAMODB_TABLE_NAME))))
