"""Hot -> cold mover (EventBridge schedule): expired DynamoDB readings to the cold bucket, or to
the remote cold writer when cold storage is on another cloud. The schedule event's `time` is the
run's "now", so a retried run moves the same readings."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from payload_functions.aws.runtime import PROVIDER, direct
from payload_functions.aws.stores import COLD_STORAGE_CLASS, DynamoHotStore, S3Store
from payload_functions.common.settings import Settings
from payload_functions.common.telemetry import parse_timestamp
from payload_functions.core.movers import hot_to_cold
from shared.contracts import Function, Setting

FUNCTION = Function.HOT_TO_COLD_MOVER
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.DYNAMODB_TABLE_NAME, Setting.COLD_S3_BUCKET_NAME,
                   Setting.REMOTE_COLD_WRITER_URL, Setting.INTER_CLOUD_TOKEN})


def scheduled_time(event: Any) -> datetime:
    """EventBridge's `time` (the scheduled moment) or the current time."""
    raw = event.get("time") if isinstance(event, dict) else None
    if raw:
        return datetime.fromisoformat(parse_timestamp(raw, "event.time").replace("Z", "+00:00"))
    return datetime.now(UTC)


def handler(event: Any, context: Any = None) -> Any:
    settings = Settings(READS)
    return direct(str(FUNCTION), event, lambda e: hot_to_cold(
        settings, PROVIDER,
        lambda: DynamoHotStore(settings.require(Setting.DYNAMODB_TABLE_NAME)),
        lambda: S3Store(settings.require(Setting.COLD_S3_BUCKET_NAME), COLD_STORAGE_CLASS),
        scheduled_time(e)))
