"""L2 persister: DynamoDB (or the remote hot writer), then the remote ADT Pusher when L4 is on
Azure, then the event checker (`{twin}-event-checker`, async) when enabled."""

from __future__ import annotations

from typing import Any

from payload_functions.aws.runtime import PROVIDER, direct, invoke_async, naming
from payload_functions.aws.stores import DynamoHotStore
from payload_functions.common.settings import Settings
from payload_functions.core.pipeline import persist
from shared.contracts import Function, Setting

FUNCTION = Function.PERSISTER
READS = frozenset({
    Setting.DIGITAL_TWIN_INFO, Setting.DYNAMODB_TABLE_NAME, Setting.USE_EVENT_CHECKING, Setting.REMOTE_WRITER_URL,
    Setting.INTER_CLOUD_TOKEN, Setting.REMOTE_ADT_PUSHER_URL,
})


def handler(event: Any, context: Any = None) -> Any:
    settings = Settings(READS)

    def check_events(reading: dict[str, Any]) -> dict[str, Any]:
        name = naming(settings).function(str(Function.EVENT_CHECKER))
        invoke_async(name, reading)
        return {"invoked": name}

    return direct(str(FUNCTION), event, lambda e: persist(
        e, settings, PROVIDER, lambda: DynamoHotStore(settings.require(Setting.DYNAMODB_TABLE_NAME)),
        check_events=check_events))
