"""Azure IoT Hub data plane for the sandbox: device registry and HTTPS device-to-cloud telemetry.

Mounted by the sandbox server at `/iothub/`; a hub created through ARM has
`properties.hostName = 127.0.0.1:PORT/iothub/<hub>`, so `HostName=...` connection strings and
`https://{hostName}/devices/{id}?api-version=2021-04-12` work; device twins are served at
`/twins/{id}` (GET, PATCH of tags and desired properties). Telemetry raises
`Microsoft.Devices.DeviceTelemetry` into the hub's Event Grid system topics.
"""

from typing import Any

from sandbox.core.context import SandboxContext
from sandbox.iothub.models import Hub, IotHubBackend, IotHubError, telemetry_event_data
from sandbox.iothub.urls import backend, create_app, install

__all__ = [
    "Hub", "IotHubBackend", "IotHubError", "backend", "create_app", "device_twin", "install", "messages", "reset",
    "telemetry_event_data",
]


def messages(ctx: SandboxContext, hub_name: str) -> list[dict[str, Any]]:
    """Device-to-cloud messages a hub received (oldest first, the last 1000): `{deviceId, data}`
    with `data` as raised to Event Grid. Empty for an unknown hub."""
    hub = backend(ctx).hub(hub_name)
    if hub is None:
        return []
    with hub.lock:
        return list(hub.messages)


def device_twin(ctx: SandboxContext, hub_name: str, device_id: str) -> dict[str, Any] | None:
    """A device's twin as `GET /twins/{id}` answers it (tests read feedback from its desired
    properties); None for an unknown hub or device."""
    hub = backend(ctx).hub(hub_name)
    if hub is None:
        return None
    try:
        return hub.get_twin(device_id)
    except IotHubError:
        return None


def reset(ctx: SandboxContext) -> None:
    """Forget every hub's devices and messages (the control endpoint's `POST /reset`)."""
    backend(ctx).reset()
