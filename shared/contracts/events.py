"""Control-plane events: the CloudEvent types the control plane emits, the Azure Resource
Manager events it watches, and their `source` and `data` fields."""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    """CloudEvents 1.0 `type`s the control plane emits on its Event Grid topic."""

    OUTPUT_CHANGED = "twin.output.changed"
    LAYER_COMPLETED = "twin.layer.completed"
    DEPLOYMENT_COMPLETED = "twin.deployment.completed"
    DEPLOYMENT_FAILED = "twin.deployment.failed"


class ArmEventType(StrEnum):
    """Azure Resource Manager's own events (Event Grid `Microsoft.Resources.*` system topics) the
    control plane watches to notice changes made outside a deployment."""

    WRITE_SUCCESS = "Microsoft.Resources.ResourceWriteSuccess"
    DELETE_SUCCESS = "Microsoft.Resources.ResourceDeleteSuccess"


EVENT_SOURCE_PREFIX = "/twins/"


def event_source(twin: str) -> str:
    """CloudEvent `source` of every event about `twin`."""
    return f"{EVENT_SOURCE_PREFIX}{twin}"


class OutputChangedData(StrEnum):
    """Fields of a `twin.output.changed` event's `data` (`value` only when not secret)."""

    OUTPUT = "output"
    VERSION = "version"
    PRODUCER = "producer"
    SECRET = "secret"
    VALUE = "value"
