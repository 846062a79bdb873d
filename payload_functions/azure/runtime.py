"""Function App plumbing: `func.HttpRequest` <-> `Request`/`Response`, Event Grid telemetry
unwrapping, calls to the L2 processor with the app's function key."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from typing import Any

import azure.functions as func

from payload_functions.common.errors import BadRequest, PayloadError
from payload_functions.common.http import post_json
from payload_functions.common.settings import Settings
from payload_functions.common.telemetry import DEVICE_ID_FIELDS
from payload_functions.core.api import Request, Response, answer, failure
from shared.contracts import Setting
from shared.naming import AzureNaming

PROVIDER = "azure"
FUNCTION_KEY_HEADER = "x-functions-key"
"""Azure Functions' header for a function/host key (the L2 processor's auth level is FUNCTION)."""
IOT_HUB_DEVICE_ID = "iothub-connection-device-id"
"""IoT Hub system property naming the sending device (its registry id)."""


class EventFailed(Exception):
    """Raised from an Event Grid / timer function so the platform records a failure and
    Event Grid redelivers."""


def to_request(req: func.HttpRequest) -> Request:
    return Request(method=req.method, headers=dict(req.headers), body=req.get_body() or b"", query=dict(req.params))


def to_http(response: Response) -> func.HttpResponse:
    return func.HttpResponse(response.text(), status_code=response.status, mimetype="application/json")


def http(name: str, req: func.HttpRequest, work: Callable[[Request], Any]) -> func.HttpResponse:
    return to_http(answer(name, lambda: work(to_request(req))))


def triggered(name: str, work: Callable[[], Any]) -> Any:
    """Run an Event Grid / timer function; a refused event fails the invocation."""
    try:
        return work()
    except PayloadError as exc:
        failure(name, exc)
        raise EventFailed(f"{name}: {exc.message}") from None


def _body(data: Mapping[str, Any]) -> Any:
    body = data.get("body")
    if isinstance(body, str):
        # IoT Hub sends the body as JSON only when the device sets content type application/json
        # and encoding utf-8; otherwise it arrives base64-encoded (seed lesson 6).
        try:
            return json.loads(body)
        except ValueError:
            try:
                return json.loads(base64.b64decode(body, validate=True))
            except (ValueError, binascii.Error):
                raise BadRequest("event.data.body: not JSON; devices must send application/json, utf-8") from None
    return body


def telemetry_of(event: func.EventGridEvent, twin_from: Callable[[], str]) -> dict[str, Any]:
    """The reading in an IoT Hub `Microsoft.Devices.DeviceTelemetry` event: `data.body`, with the
    device id from `systemProperties` when the body has none (registry id minus the twin prefix)."""
    data = event.get_json()
    if not isinstance(data, Mapping):
        raise BadRequest("event.data: expected an object")
    body = _body(data)
    if not isinstance(body, Mapping):
        raise BadRequest("event.data.body: expected a JSON object")
    reading = dict(body)
    if not any(reading.get(k) for k in DEVICE_ID_FIELDS):
        registry_id = (data.get("systemProperties") or {}).get(IOT_HUB_DEVICE_ID)
        if not isinstance(registry_id, str) or not registry_id:
            raise BadRequest(f"event.data: no device id in the body or systemProperties.{IOT_HUB_DEVICE_ID}")
        prefix = AzureNaming(twin_from()).iot_device("")
        reading[DEVICE_ID_FIELDS[0]] = registry_id[len(prefix):] if registry_id.startswith(prefix) else registry_id
    return reading


def call_processor(settings: Settings) -> Callable[[dict[str, Any]], Any]:
    """POST a reading to the L2 `processor` with the app's function key."""

    def call(reading: dict[str, Any]) -> Any:
        url = settings.require(Setting.PROCESSOR_URL)
        key = settings.require(Setting.PROCESSOR_KEY)
        return post_json(url, reading, headers={FUNCTION_KEY_HEADER: key}).body

    return call
