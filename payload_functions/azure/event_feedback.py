"""L2 event feedback: deliver a rule's feedback to the device through its IoT Hub device twin.

Cloud-to-device messages would need AMQP (the service SDK's only C2D transport), which the
project avoids; a twin's desired properties are plain HTTPS on the service side and reach the
device as a desired-property update (MQTT/AMQP devices are notified, HTTPS devices read the twin).
So this function PATCHes `https://{hub}/twins/{registry id}` with
`{"properties": {"desired": {"feedback": {...}}}}`, authenticated by a SAS token computed from
the hub's `service` policy connection string (`IOT_HUB_SERVICE_CONNECTION_STRING`; ServiceConnect
covers twin updates).

The event checker in the same app calls `deliver` in-process; the HTTP route (anonymous,
token-checked) serves an event checker on another cloud, when this app is L0 of L1's cloud.
Input: `{"detail": {"digitalTwinName", "iotDeviceId", "payload"}}` (`core.events.parse_feedback`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import azure.functions as func

from payload_functions.azure.runtime import http
from payload_functions.common.errors import UpstreamError
from payload_functions.common.settings import InvalidSetting, Settings
from payload_functions.core.events import feedback_received, parse_feedback
from shared.contracts import FEEDBACK_DESIRED_PROPERTY, IOT_HUB_SERVICE_API_VERSION, Function, Setting
from shared.naming import AzureNaming

FUNCTION = Function.EVENT_FEEDBACK
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.IOT_HUB_SERVICE_CONNECTION_STRING, Setting.INTER_CLOUD_TOKEN,
                   Setting.INTER_CLOUD_TOKEN_PREVIOUS})
SAS_TTL_SECONDS = 3600
RETRIES = 3
READ_TIMEOUT_SECONDS = 30
# A desired-property merge patch (If-Match "*") applied twice leaves the same twin, so a 429/5xx
# PATCH is safe to retry; azure-core's default allowlist leaves PATCH out.
RETRY_METHODS = frozenset({"GET", "PATCH"})

bp = func.Blueprint()


@dataclass(frozen=True)
class ServiceConnection:
    host: str
    policy: str
    key: str

    @classmethod
    def parse(cls, text: str) -> ServiceConnection:
        """`HostName=...;SharedAccessKeyName=...;SharedAccessKey=...`; errors never echo the value."""
        name = str(Setting.IOT_HUB_SERVICE_CONNECTION_STRING)
        fields: dict[str, str] = {}
        for part in text.strip().split(";"):
            key, sep, value = part.partition("=")
            if sep:
                fields[key.strip().lower()] = value.strip()
        missing = [k for k in ("HostName", "SharedAccessKeyName", "SharedAccessKey") if not fields.get(k.lower())]
        if missing:
            raise InvalidSetting(name, f"lacks {', '.join(missing)} (expected HostName=...;SharedAccessKeyName=...;"
                                       "SharedAccessKey=...)")
        try:
            base64.b64decode(fields["sharedaccesskey"], validate=True)
        except (ValueError, binascii.Error):
            raise InvalidSetting(name, "SharedAccessKey is not base64") from None
        return cls(fields["hostname"], fields["sharedaccesskeyname"], fields["sharedaccesskey"])

    def sas_token(self, ttl: int = SAS_TTL_SECONDS, now: float | None = None) -> str:
        """A service SAS token for the whole hub, computed as the Azure IoT SDKs do."""
        expiry = int(now if now is not None else time.time()) + ttl
        resource = urllib.parse.quote_plus(self.host.lower())
        signed = hmac.new(base64.b64decode(self.key), f"{resource}\n{expiry}".encode(), hashlib.sha256).digest()
        signature = urllib.parse.quote_plus(base64.b64encode(signed).decode())
        return f"SharedAccessSignature sr={resource}&sig={signature}&se={expiry}&skn={urllib.parse.quote_plus(self.policy)}"


def _error_code(response: Any) -> str:
    code = response.headers.get("iothub-errorcode")
    return f" ({code})" if code else ""


def patch_desired(connection: ServiceConnection, registry_id: str, desired: dict[str, Any]) -> dict[str, Any]:
    """PATCH a device twin's desired properties; returns the twin IoT Hub answers."""
    from azure.core import PipelineClient
    from azure.core.exceptions import AzureError
    from azure.core.pipeline.policies import RetryPolicy
    from azure.core.rest import HttpRequest

    base = f"https://{connection.host}"
    # Only the retry policy: no logging policy, so the Authorization header is never logged.
    retry = RetryPolicy(retry_total=RETRIES, retry_backoff_factor=0.5, retry_backoff_max=10)
    client: Any = PipelineClient(base_url=base, policies=[retry])
    path = f"/twins/{urllib.parse.quote(registry_id, safe='')}"
    request = HttpRequest("PATCH", base + path, params={"api-version": IOT_HUB_SERVICE_API_VERSION},
                          json={"properties": {"desired": desired}},
                          headers={"Authorization": connection.sas_token(), "If-Match": "*"})
    where = f"IoT Hub {connection.host} twin {registry_id}"
    try:
        response = client.send_request(request, retry_on_methods=RETRY_METHODS, read_timeout=READ_TIMEOUT_SECONDS)
    except AzureError as exc:
        raise UpstreamError(f"updating {where} failed: {type(exc).__name__}") from None
    finally:
        client.close()
    if response.status_code == 404:
        raise UpstreamError(f"{where}: the device is not registered on the hub{_error_code(response)}")
    if response.status_code in (401, 403):
        raise UpstreamError(f"{where}: the hub refused the service policy "
                            f"{connection.policy!r} ({response.status_code}){_error_code(response)}")
    if response.status_code >= 300:
        raise UpstreamError(f"updating {where} answered {response.status_code}{_error_code(response)}")
    try:
        twin = response.json()
    except ValueError:
        raise UpstreamError(f"updating {where}: the answer is not JSON") from None
    return twin if isinstance(twin, dict) else {}


def deliver(raw: Any) -> dict[str, Any]:
    """Validate a feedback request and write it to the device twin's desired properties."""
    settings = Settings(READS)
    twin = settings.twin_info().twin_name
    feedback = parse_feedback(raw, twin)
    connection = ServiceConnection.parse(settings.require(Setting.IOT_HUB_SERVICE_CONNECTION_STRING))
    registry_id = AzureNaming(twin).iot_device(feedback.device_id)
    sent_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    answered = patch_desired(connection, registry_id, {FEEDBACK_DESIRED_PROPERTY: feedback.message(sent_at)})
    version = ((answered.get("properties") or {}).get("desired") or {}).get("$version")
    return {"delivered": "device-twin", "iotDeviceId": feedback.device_id, "registryId": registry_id,
            "desiredVersion": version, "sentAt": sent_at}


@bp.function_name(name="event-feedback")
@bp.route(route="event-feedback", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def event_feedback_function(req: func.HttpRequest) -> func.HttpResponse:
    settings = Settings(READS)
    return http(str(FUNCTION), req, lambda r: deliver(feedback_received(r, settings)))
