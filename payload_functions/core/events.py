"""Event checker: evaluate the spec's rules (`A OP B`) for a reading and fire the actions.

Operands are `entity.component.property` (a live value) or typed literals `DOUBLE(30)`,
`INTEGER(5)`, `STRING(x)`. A reference whose entity or component is the reading's device takes
the value from the reading itself; any other reference asks `live_value` (the twin service on
this cloud), and a rule whose value is unknown is skipped, not fired.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from payload_functions.common.auth import check_token
from payload_functions.common.envelope import build_envelope, unwrap
from payload_functions.common.errors import BadRequest
from payload_functions.common.http import post_json
from payload_functions.common.settings import InvalidSetting, Settings
from payload_functions.common.telemetry import normalise
from payload_functions.core.api import Request
from shared.contracts import (
    EVENT_ACTION_EVENT,
    MESSAGE_TYPE_FEEDBACK,
    FeedbackField,
    Layer,
    Setting,
    Telemetry,
)
from shared.wiring import sends_remote

_REFERENCE = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)")
_CONSTANT = re.compile(r"(DOUBLE|INTEGER|STRING)\((.*)\)", re.DOTALL)
_OPERATORS = ("==", "<", ">")


@dataclass(frozen=True)
class Ref:
    entity: str
    component: str
    property: str


def _operand(text: str) -> Ref | float | int | str:
    text = text.strip()
    ref = _REFERENCE.fullmatch(text)
    if ref:
        return Ref(*ref.groups())
    const = _CONSTANT.fullmatch(text)
    if not const:
        raise ValueError(f"operand {text!r} is neither entity.component.property nor DOUBLE/INTEGER/STRING(...)")
    kind, raw = const.groups()
    if kind == "DOUBLE":
        return float(raw)
    if kind == "INTEGER":
        return int(raw)
    return raw


def parse(condition: str) -> tuple[Ref | float | int | str, str, Ref | float | int | str]:
    """Split at the one operator outside parentheses (a STRING(...) may contain one)."""
    depth = 0
    for i, ch in enumerate(condition):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0:
            for op in _OPERATORS:
                if condition.startswith(op, i):
                    return _operand(condition[:i]), op, _operand(condition[i + len(op):])
    raise ValueError("expected 'A OP B' with OP one of <, >, ==")


def compare(left: Any, op: str, right: Any) -> bool:
    try:
        if op == "==":
            return bool(left == right)
        if op == "<":
            return bool(left < right)
        return bool(left > right)
    except TypeError:
        return False


def check(
    raw: Any,
    settings: Settings,
    live_value: Callable[[Ref], Any],
    fire: Callable[[Mapping[str, Any], dict[str, Any]], Any],
) -> dict[str, Any]:
    reading = normalise(raw)
    text = settings.optional(Setting.EVENT_RULES)
    try:
        rules = json.loads(text) if text else []
    except ValueError:
        raise InvalidSetting(str(Setting.EVENT_RULES), "not valid JSON") from None
    if not isinstance(rules, list):
        raise InvalidSetting(str(Setting.EVENT_RULES), "expected a JSON list of rules")
    device = reading[Telemetry.DEVICE_ID]
    fired: list[str] = []
    skipped: list[str] = []

    def value(side: Ref | float | int | str) -> Any:
        if not isinstance(side, Ref):
            return side
        if device in (side.entity, side.component) and side.property in reading:
            return reading[side.property]
        return live_value(side)

    for rule in rules:
        condition = rule.get("condition") if isinstance(rule, Mapping) else None
        if not isinstance(condition, str):
            skipped.append(repr(rule)[:80])
            continue
        try:
            left, op, right = parse(condition)
        except ValueError:
            skipped.append(condition)
            continue
        refs = [s for s in (left, right) if isinstance(s, Ref)]
        # Only rules about this reading's device fire on it; others wait for their own device.
        if not any(device in (r.entity, r.component) for r in refs):
            continue
        a, b = value(left), value(right)
        if a is None or b is None:
            skipped.append(condition)
            continue
        if compare(a, op, b):
            fire(rule, reading)
            fired.append(condition)
    return {"fired": fired, "skipped": skipped}


# --- device feedback ---------------------------------------------------------------------------

# The spec's device id rule (shared.validation): it becomes part of an MQTT topic and a URL path,
# so `/`, `+`, `#` and the like must never get through.
FEEDBACK_DEVICE_ID = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62}[A-Za-z0-9])?")
MAX_FEEDBACK_PAYLOAD_BYTES = 16 * 1024
"""Well under both channels' limits (IoT Core message 128 KB, IoT Hub desired properties 32 KB)."""


@dataclass(frozen=True)
class Feedback:
    twin: str
    device_id: str
    payload: Any

    def message(self, sent_at: str) -> dict[str, Any]:
        """What reaches the device (the MQTT message / the desired property value)."""
        return {str(FeedbackField.TWIN): self.twin, str(FeedbackField.DEVICE_ID): self.device_id,
                str(FeedbackField.PAYLOAD): self.payload, str(FeedbackField.SENT_AT): sent_at}


def feedback_request(twin: str, device_id: Any, payload: Any) -> dict[str, Any]:
    """The body the event checker sends to `event-feedback` (`parse_feedback` reads it)."""
    return {str(FeedbackField.DETAIL): {str(FeedbackField.TWIN): twin, str(FeedbackField.DEVICE_ID): device_id,
                                        str(FeedbackField.PAYLOAD): payload}}


def feedback_for(rule: Mapping[str, Any], reading: Mapping[str, Any], twin: str) -> dict[str, Any] | None:
    """The feedback request a fired rule asks for (`action.feedback`), or None. The device
    defaults to the reading's own device."""
    action = rule.get("action")
    feedback = action.get("feedback") if isinstance(action, Mapping) else None
    if not isinstance(feedback, Mapping):
        return None
    device = feedback.get(str(FeedbackField.DEVICE_ID)) or reading.get(Telemetry.DEVICE_ID)
    return feedback_request(twin, device, feedback.get(str(FeedbackField.PAYLOAD)))


def parse_feedback(raw: Any, twin: str) -> Feedback:
    """Validate an `event-feedback` input: `{"detail": {"digitalTwinName", "iotDeviceId",
    "payload"}}`. Every problem is a 400 naming the field."""
    detail_key = str(FeedbackField.DETAIL)
    if not isinstance(raw, Mapping) or not isinstance(raw.get(detail_key), Mapping):
        raise BadRequest(f"body.{detail_key}: expected an object with {FeedbackField.DEVICE_ID} and {FeedbackField.PAYLOAD}")
    detail = raw[detail_key]
    path = f"body.{detail_key}"
    named = detail.get(str(FeedbackField.TWIN))
    if named is not None and named != twin:
        raise BadRequest(f"{path}.{FeedbackField.TWIN}: feedback for twin {named!r} reached twin {twin!r}")
    device = detail.get(str(FeedbackField.DEVICE_ID))
    if not isinstance(device, str) or not device:
        raise BadRequest(f"{path}.{FeedbackField.DEVICE_ID}: required, the id of the device to send feedback to")
    if not FEEDBACK_DEVICE_ID.fullmatch(device):
        raise BadRequest(f"{path}.{FeedbackField.DEVICE_ID}: {device[:80]!r} is not a device id "
                         "(1-64 letters, digits, - and _, starting and ending with a letter or digit)")
    payload = detail.get(str(FeedbackField.PAYLOAD))
    if payload is None or payload == "":
        raise BadRequest(f"{path}.{FeedbackField.PAYLOAD}: required, what to send to device {device!r}")
    size = len(json.dumps(payload, separators=(",", ":"), default=str).encode("utf-8"))
    if size > MAX_FEEDBACK_PAYLOAD_BYTES:
        raise BadRequest(f"{path}.{FeedbackField.PAYLOAD}: {size} bytes; at most {MAX_FEEDBACK_PAYLOAD_BYTES} are sent")
    return Feedback(twin, device, payload)


def feedback_is_remote(settings: Settings) -> bool:
    """Feedback goes to `event-feedback` on L1's cloud when the event checker's L2 is elsewhere
    (the plan's boundary `L2->L1`, decided from the same placement)."""
    return sends_remote(settings.twin_info().providers, Layer.L2, Layer.L1)


def send_feedback(request: Mapping[str, Any], settings: Settings, provider: str,
                  local: Callable[[Mapping[str, Any]], Any]) -> Any:
    """Deliver a feedback request: through this cloud's own `event-feedback` (`local`), or to the
    token-checked one on L1's cloud, in the inter-cloud envelope."""
    if not feedback_is_remote(settings):
        return local(request)
    url = settings.require(Setting.REMOTE_FEEDBACK_URL)
    envelope = build_envelope(dict(request), provider, str(Layer.L1), message_type=MESSAGE_TYPE_FEEDBACK)
    answer = post_json(url, envelope, token=settings.require(Setting.INTER_CLOUD_TOKEN))
    return answer.body if isinstance(answer.body, dict) else {"status": answer.status}


def feedback_received(request: Request, settings: Settings) -> Any:
    """`event-feedback` called from another cloud: the token first, then the envelope's payload."""
    check_token(request.headers, settings.tokens())
    return unwrap(request.json()).payload


def action_event(rule: Mapping[str, Any], reading: Mapping[str, Any]) -> dict[str, Any]:
    """What an event action gets: the fired rule (`e`, as the original project sent it) and the
    reading that fired it."""
    return {EVENT_ACTION_EVENT: dict(rule), "reading": dict(reading)}
