"""Event Grid for the sandbox: custom topics (publish endpoint), system topics, subscriptions, delivery.

Mounted by the sandbox server at `/eventgrid/`. A topic created through ARM gets
`properties.endpoint = https://127.0.0.1:PORT/eventgrid/<topic>/api/events`; its keys come
from `topic_keys(ctx, topic_id)` (what ARM's `listKeys` answers).
"""

import uuid
from datetime import UTC, datetime
from typing import Any

from sandbox.core.context import SandboxContext
from sandbox.eventgrid.models import DeliveryRecord, EventGridBackend, EventGridError, Subscription, Topic
from sandbox.eventgrid.urls import backend, create_app, install

__all__ = [
    "DeliveryRecord",
    "EventGridBackend",
    "EventGridError",
    "Subscription",
    "Topic",
    "backend",
    "create_app",
    "dead_letters",
    "deliveries",
    "install",
    "publish_device_telemetry",
    "publish_system_event",
    "regenerate_topic_key",
    "reset",
    "topic_keys",
    "wait_for_deliveries",
]


def topic_keys(ctx: SandboxContext, topic_resource_id: str) -> dict[str, str]:
    """`{"key1", "key2"}` of a custom topic (ARM's `POST .../topics/<t>/listKeys`); KeyError if unknown."""
    return backend(ctx).keys(topic_resource_id)


def regenerate_topic_key(ctx: SandboxContext, topic_resource_id: str, key_name: str) -> dict[str, str]:
    """ARM's `POST .../topics/<t>/regenerateKey {"keyName": "key1"|"key2"}`: new key, both returned."""
    return backend(ctx).regenerate_key(topic_resource_id, key_name)


def deliveries(ctx: SandboxContext, topic: str | None = None) -> list[dict[str, Any]]:
    """Successful deliveries (oldest first) of a topic (name or resource id), or of all topics."""
    return backend(ctx).deliveries(topic, "delivered")


def dead_letters(ctx: SandboxContext, topic: str | None = None) -> list[dict[str, Any]]:
    """Events that could not be delivered, with the reason and the number of attempts."""
    return backend(ctx).deliveries(topic, "dead-lettered")


def wait_for_deliveries(
    ctx: SandboxContext, topic: str | None, count: int, timeout: float = 10.0, outcome: str | None = "delivered"
) -> list[dict[str, Any]]:
    """Block until `count` records (`outcome` "delivered", "dead-lettered" or None for both) exist."""
    return backend(ctx).wait_for(topic, count, timeout, outcome)


def publish_system_event(
    ctx: SandboxContext, source_resource_id: str, event_type: str, subject: str, data: Any, data_version: str = ""
) -> list[str]:
    """Raise an Azure resource's event (e.g. IoT Hub `Microsoft.Devices.DeviceTelemetry`) into the system
    topics whose source it is; returns their resource ids. Any thread."""
    return backend(ctx).publish_system_event(source_resource_id, event_type, subject, data, data_version)


def publish_device_telemetry(
    ctx: SandboxContext,
    hub_resource_id: str,
    device_id: str,
    body: Any,
    properties: dict[str, str] | None = None,
) -> list[str]:
    """Raise IoT Hub's `Microsoft.Devices.DeviceTelemetry` for one device-to-cloud message, shaped as
    IoT Hub sends it (subject `devices/<id>`; data with `properties`, `systemProperties`, `body`;
    a JSON body stays JSON, as with content type application/json and encoding utf-8)."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    data = {
        "properties": dict(properties or {}),
        "systemProperties": {
            "iothub-content-type": "application/json",
            "iothub-content-encoding": "utf-8",
            "iothub-connection-device-id": device_id,
            "iothub-connection-auth-method": '{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}',
            "iothub-connection-auth-generation-id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{hub_resource_id}/{device_id}")),
            "iothub-enqueuedtime": now,
            "iothub-message-source": "Telemetry",
        },
        "body": body,
    }
    return publish_system_event(ctx, hub_resource_id, "Microsoft.Devices.DeviceTelemetry", f"devices/{device_id}", data)


def reset(ctx: SandboxContext) -> None:
    """Forget every topic, subscription and delivery record (the control endpoint's `POST /reset`)."""
    backend(ctx).reset()
