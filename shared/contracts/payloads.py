"""What crosses a cloud boundary or lands in storage: the inter-cloud header and envelope, the
telemetry and stored-reading field names, and the bodies receivers accept."""

from __future__ import annotations

from enum import StrEnum

INTER_CLOUD_TOKEN_HEADER = "X-Inter-Cloud-Token"
"""Header carrying the inter-cloud token; receivers compare it in constant time, 401 otherwise."""


class Envelope(StrEnum):
    """Fields of the JSON envelope senders POST to remote receivers."""

    SOURCE_CLOUD = "source_cloud"
    TARGET_LAYER = "target_layer"
    MESSAGE_TYPE = "message_type"
    TIMESTAMP = "timestamp"
    PAYLOAD = "payload"
    TRACE_ID = "trace_id"


MESSAGE_TYPE_TELEMETRY = "telemetry"
MESSAGE_TYPE_FEEDBACK = "feedback"
"""Envelope `message_type` of event feedback sent to `event-feedback` on another cloud."""


class Telemetry(StrEnum):
    """Canonical telemetry fields: every reading carries `device_id` and an ISO-8601 UTC
    `timestamp`; the other keys are the device's property values."""

    DEVICE_ID = "device_id"
    TIMESTAMP = "timestamp"


LEGACY_DEVICE_ID_FIELDS: tuple[str, ...] = ("iotDeviceId", "deviceId")
"""Accepted on input and normalised to `device_id` (the original project's field names)."""
LEGACY_TIMESTAMP_FIELDS: tuple[str, ...] = ("time", "ts")
"""Accepted on input and normalised to `timestamp`."""

PUBSUB_DEVICE_ID_ATTRIBUTE = "deviceId"
"""GCP L1: the Pub/Sub message attribute naming the publishing device. Devices (and `simulate`)
set it on every message to the telemetry topic; the dispatcher takes the device id from it when the
JSON body has none, and refuses a message whose body names another device."""


class StorageKey(StrEnum):
    """Keys of a stored reading in every hot store (DynamoDB hash/range, Cosmos partition key,
    Firestore document id parts)."""

    PARTITION = "device_id"
    SORT = "timestamp"


COSMOS_PARTITION_KEY_PATH = "/device_id"


class AdtPush(StrEnum):
    """Body the persister POSTs (inside the envelope) to the Azure L0 `adt-pusher`."""

    DEVICE_ID = "device_id"
    TELEMETRY = "telemetry"
    TIMESTAMP = "timestamp"


class ColdChunk(StrEnum):
    """Body the hot-to-cold mover POSTs to a remote `cold-writer`."""

    DEVICE_ID = "device_id"
    CHUNK_INDEX = "chunk_index"
    START_TIMESTAMP = "start_timestamp"
    END_TIMESTAMP = "end_timestamp"
    ITEMS = "items"
    SOURCE_CLOUD = "source_cloud"


class ArchiveObject(StrEnum):
    """Body the cold-to-archive mover POSTs to a remote `archive-writer`."""

    OBJECT_KEY = "object_key"
    DATA = "data"
    SOURCE_CLOUD = "source_cloud"


class FeedbackField(StrEnum):
    """The event checker's call to `event-feedback`: `{"detail": {"digitalTwinName",
    "iotDeviceId", "payload"}}` (the original project's shape, kept so its event
    rules and action functions work unchanged)."""

    DETAIL = "detail"
    TWIN = "digitalTwinName"
    DEVICE_ID = "iotDeviceId"
    PAYLOAD = "payload"
    SENT_AT = "sentAt"
    """Added by `event-feedback` to what reaches the device (UTC ISO-8601)."""


EVENT_ACTION_NAME_PARAM = "name"
"""Azure `event-action`: the query parameter naming the action (the spec's `functionName`)."""
EVENT_ACTION_EVENT = "e"
"""What an event action receives: `{"e": the fired rule, "reading": the reading}`."""
FEEDBACK_DESIRED_PROPERTY = "feedback"
"""Azure: the device twin desired property `event-feedback` writes (`properties.desired.feedback`)."""
IOT_HUB_SERVICE_API_VERSION = "2021-04-12"
"""IoT Hub service REST api-version (registry and twins)."""


def adt_property_name(telemetry_name: str) -> str:
    """The twin Property a telemetry value is patched into: `temperature` -> `lastTemperature`
    (DTDL v3 needs unique content names, so the Property sits next to the Telemetry)."""
    return "last" + telemetry_name[:1].upper() + telemetry_name[1:]
