"""L1: one device identity in the IoT Hub registry, through the registry REST API
(`https://{hub hostName}/devices/{id}?api-version=2021-04-12`) with a SAS token computed here
from the hub's `registryReadWrite` policy key; no azure-iot-hub / AMQP dependency.
Output: the device's connection string (secret). A registry device carries no tags: it is its
hub's, and the hub's tags name its owner (another twin's hub: refused, and never deleted from)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import urllib.parse
from typing import Any

from azure.core import PipelineClient
from azure.core.exceptions import ResourceNotFoundError
from azure.core.pipeline.policies import RetryPolicy
from azure.core.rest import HttpRequest
from azure.mgmt.iothub import IotHubClient

from activities.providers.azure._common import clouds, mgmt
from activities.providers.azure.iot_hub import REGISTRY_POLICY, hub_policy_key
from activities.providers.typed import TypedProvider, creating, is_ours, may_delete, require_own, to_create
from activities.registry import register
from shared.engine.errors import PermanentError, TransientError
from shared.engine.types import Action, EnsureResult, ReadResult, ResourceCall
from shared.resources.azure import AzureIotDeviceConfig

REGISTRY_API_VERSION = "2021-04-12"
SAS_LIFETIME_SECONDS = 3600


def sas_token(host: str, policy: str, key: str, expiry: int | None = None) -> str:
    """`SharedAccessSignature sr=..&sig=..&se=..&skn=..` for the hub `host` (IoT Hub's SAS format)."""
    se = int(expiry if expiry is not None else time.time() + SAS_LIFETIME_SECONDS)
    resource = urllib.parse.quote(host.lower(), safe="")
    digest = hmac.new(base64.b64decode(key), f"{resource}\n{se}".encode(), hashlib.sha256).digest()
    sig = urllib.parse.quote(base64.b64encode(digest).decode(), safe="")
    return f"SharedAccessSignature sr={resource}&sig={sig}&se={se}&skn={policy}"


class Registry:
    """The hub's device registry over REST (`hub_tags`: the hub's owner tags)."""

    def __init__(self, config: AzureIotDeviceConfig) -> None:
        desc = mgmt(IotHubClient).iot_hub_resource.get(config.resource_group, config.hub)
        self.hub_tags = dict(desc.tags or {})
        host = desc.properties.host_name if desc.properties is not None else None
        if not host:
            raise TransientError(f"IoT Hub {config.hub}: no hostName yet")
        self.host = str(host)
        self.key = hub_policy_key(config.resource_group, config.hub, REGISTRY_POLICY)
        self.client = PipelineClient(f"https://{self.host}", policies=[RetryPolicy()], **clouds().azure_client_kwargs())

    def _send(self, method: str, device: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        request = HttpRequest(
            method, f"https://{self.host}/devices/{urllib.parse.quote(device, safe='')}",
            params={"api-version": REGISTRY_API_VERSION}, json=body,
            headers={"Authorization": sas_token(self.host, REGISTRY_POLICY, self.key), **(headers or {})},
        )
        try:
            return self.client.send_request(request)
        except Exception as exc:  # connection-level failures: the hub may still be starting
            raise TransientError(f"IoT Hub registry {self.host}: {type(exc).__name__}") from exc

    def get(self, device: str) -> dict[str, Any] | None:
        response = self._send("GET", device)
        if response.status_code == 404:
            return None
        _check(response, f"read device {device}")
        return dict(response.json())

    def put(self, device: str, etag: str | None) -> dict[str, Any]:
        body = {"deviceId": device, "status": "enabled", "authentication": {"type": "sas"}}
        response = self._send("PUT", device, body, {"If-Match": f'"{etag}"'} if etag else None)
        _check(response, f"create device {device}")
        return dict(response.json())

    def delete(self, device: str) -> bool:
        response = self._send("DELETE", device, headers={"If-Match": "*"})
        if response.status_code == 404:
            return False
        _check(response, f"delete device {device}")
        return True


def _check(response: Any, what: str) -> None:
    if 200 <= response.status_code < 300:
        return
    text = f"IoT Hub registry could not {what} (HTTP {response.status_code})"
    if response.status_code in (408, 429, 500, 502, 503, 504, 401):
        raise TransientError(text)  # 401 right after the hub appears: its keys are still propagating
    raise PermanentError(text)


def _connection_string(host: str, device: dict[str, Any]) -> str:
    keys = ((device.get("authentication") or {}).get("symmetricKey") or {})
    key = keys.get("primaryKey")
    if not key:
        raise TransientError(f"IoT Hub device {device.get('deviceId')}: no SAS key yet")
    return f"HostName={host};DeviceId={device['deviceId']};SharedAccessKey={key}"


@register("azure", "iot-device")
class IotDevice(TypedProvider[AzureIotDeviceConfig]):
    model = AzureIotDeviceConfig

    def ensure(self, call: ResourceCall) -> EnsureResult:
        config = self.config(call)
        registry = Registry(config)
        require_own(call, config, registry.hub_tags, f"IoT Hub {config.hub}")
        device = registry.get(config.name)
        action: Action = "created" if creating(call) else "unchanged"
        if device is None:
            if not creating(call):
                return to_create(f"IoT Hub device {config.name} is being created")
            device = registry.put(config.name, None)
        elif str(device.get("status", "enabled")).lower() != "enabled" or (
            (device.get("authentication") or {}).get("type") != config.auth
        ):
            device = registry.put(config.name, str(device.get("etag") or "") or None)
            action = "created" if action == "created" else "updated"
        return EnsureResult(action, {p: _connection_string(registry.host, device) for p in call.resource.produces})

    def poll(self, call: ResourceCall) -> EnsureResult:
        return self.ensure(call)  # only the creation `ensure` decided on is polled

    def read(self, call: ResourceCall) -> ReadResult:
        config = self.config(call)
        registry = Registry(config)
        device = registry.get(config.name)
        if device is None or not is_ours(call, config, registry.hub_tags):
            return ReadResult(False)
        return ReadResult(True, {p: _connection_string(registry.host, device) for p in call.resource.produces},
                          {"deviceId": device.get("deviceId"), "status": device.get("status")})

    def delete(self, call: ResourceCall) -> EnsureResult:
        config = self.config(call)
        try:
            registry = Registry(config)
        except ResourceNotFoundError:
            return EnsureResult("absent")  # the hub itself is gone: so are its devices
        if not may_delete(call, config, registry.hub_tags, f"IoT Hub {config.hub}"):
            return EnsureResult("absent")
        return EnsureResult("deleted" if registry.delete(config.name) else "absent")
