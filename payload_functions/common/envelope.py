"""The inter-cloud envelope senders wrap payloads in, and its unwrapping on receipt."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from payload_functions.common.errors import BadRequest
from payload_functions.common.telemetry import now_timestamp
from shared.contracts import MESSAGE_TYPE_TELEMETRY, Envelope


def build_envelope(
    payload: Any, source_cloud: str, target_layer: str, message_type: str = MESSAGE_TYPE_TELEMETRY,
    trace_id: str | None = None,
) -> dict[str, Any]:
    return {
        str(Envelope.SOURCE_CLOUD): source_cloud,
        str(Envelope.TARGET_LAYER): target_layer,
        str(Envelope.MESSAGE_TYPE): message_type,
        str(Envelope.TIMESTAMP): now_timestamp(),
        str(Envelope.PAYLOAD): payload,
        str(Envelope.TRACE_ID): trace_id or str(uuid.uuid4()),
    }


@dataclass(frozen=True)
class Received:
    payload: Any
    source_cloud: str | None = None
    trace_id: str | None = None


def unwrap(body: Any) -> Received:
    """The envelope's payload with its metadata, or the raw body when it is not an envelope."""
    if isinstance(body, Mapping) and str(Envelope.PAYLOAD) in body and str(Envelope.SOURCE_CLOUD) in body:
        payload = body[str(Envelope.PAYLOAD)]
        if not isinstance(payload, Mapping | list):
            raise BadRequest("body.payload: the envelope's payload must be a JSON object or array")
        source = body.get(str(Envelope.SOURCE_CLOUD))
        trace = body.get(str(Envelope.TRACE_ID))
        return Received(payload, str(source) if source else None, str(trace) if trace else None)
    return Received(body)
