"""Event feedback on GCP (L1 on GCP): Cloud IoT Core and its config/commands channel were retired
in 2023, so feedback goes the way Google recommends for device-bound messages now: published to
the twin's feedback topic (`FEEDBACK_TOPIC`) with the device id in the attribute `deviceId`; each
device pulls its own subscription, filtered on that attribute, with its own key (its account may
consume that subscription only, as it may publish to the telemetry topic only).

This function is the token-checked receiver in L0 of L1's cloud when the event checker runs on
another cloud; with L2 on GCP too, the event checker calls `publish_feedback` itself.
Input: `{"detail": {"digitalTwinName", "iotDeviceId", "payload"}}` (`core.events.parse_feedback`).
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any

import functions_framework

from payload_functions.common.errors import UpstreamError
from payload_functions.common.settings import Settings
from payload_functions.core.events import feedback_received, parse_feedback
from payload_functions.gcp.runtime import HttpRequest, http
from shared.contracts import PUBSUB_DEVICE_ID_ATTRIBUTE, Function, Setting

FUNCTION = Function.EVENT_FEEDBACK
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.FEEDBACK_TOPIC, Setting.INTER_CLOUD_TOKEN,
                   Setting.INTER_CLOUD_TOKEN_PREVIOUS})
PUBLISH_TIMEOUT_SECONDS = 30.0

_lock = threading.Lock()
_publisher: Any = None


def _client() -> Any:
    """One publisher per process (it keeps a channel; `PUBSUB_EMULATOR_HOST` is honoured)."""
    global _publisher
    with _lock:
        if _publisher is None:
            from google.cloud import pubsub_v1  # type: ignore[attr-defined]  # the package has no stubs

            _publisher = pubsub_v1.PublisherClient()
        return _publisher


def publish_feedback(raw: Any, settings: Settings) -> dict[str, Any]:
    """Validate a feedback request and publish it for its device; answers the message id."""
    from google.api_core.exceptions import GoogleAPICallError

    twin = settings.twin_info().twin_name
    feedback = parse_feedback(raw, twin)
    topic = settings.require(Setting.FEEDBACK_TOPIC)
    sent_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    body = json.dumps(feedback.message(sent_at), separators=(",", ":"), sort_keys=True, default=str).encode("utf-8")
    try:
        message_id = _client().publish(topic, body, **{PUBSUB_DEVICE_ID_ATTRIBUTE: feedback.device_id}).result(
            timeout=PUBLISH_TIMEOUT_SECONDS)
    except GoogleAPICallError as exc:
        raise UpstreamError(f"publishing feedback to {topic} failed: {type(exc).__name__}") from None
    except TimeoutError:
        raise UpstreamError(f"publishing feedback to {topic} timed out") from None
    return {"published": topic, "iotDeviceId": feedback.device_id, "messageId": str(message_id), "sentAt": sent_at}


@functions_framework.http
def event_feedback(request: HttpRequest) -> tuple[str, int, dict[str, str]]:
    settings = Settings(READS)
    return http(str(FUNCTION), request, lambda req: publish_feedback(feedback_received(req, settings), settings))
