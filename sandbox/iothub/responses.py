"""HTTP side of the IoT Hub data plane: the registry (`/devices/{id}`), device twins
(`GET`/`PATCH /twins/{id}`, the service side: tags and desired properties) and device-to-cloud
telemetry over HTTPS (`POST /devices/{id}/messages/events`). Registry and twin calls take a shared
access policy SAS token (registry: RegistryRead/Write; twins: ServiceConnect) or an Entra token
(audience https://iothubs.azure.net, with an IoT Hub data role); telemetry takes the device's SAS
token or a policy with DeviceConnect.

Message headers as IoT Hub's HTTPS device API takes them: `iothub-contenttype`,
`iothub-contentencoding`, `iothub-messageid`, `iothub-correlationid`, and each application
property as `iothub-app-<name>`. The HTTP `Content-Type` is the transport's, not the message's.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from sandbox.core.auth import audience_from_request, principal_from_request
from sandbox.core.context import SandboxContext
from sandbox.iothub.models import TELEMETRY_EVENT, Hub, IotHubBackend, IotHubError, now_iso

BACKEND_KEY: web.AppKey[IotHubBackend] = web.AppKey("iothub_backend", IotHubBackend)
CTX_KEY: web.AppKey[SandboxContext] = web.AppKey("iothub_ctx", SandboxContext)

Handler = Callable[[web.Request, Hub], Awaitable[web.StreamResponse]]


def error_response(err: IotHubError) -> web.Response:
    return web.Response(
        body=json.dumps(err.body()).encode(),
        status=err.status,
        content_type="application/json",
        headers={"iothub-errorcode": err.code},
    )


def fault_response(request: web.Request, status: int, retry_after: int) -> web.StreamResponse:
    if status == 429:
        err = IotHubError(429, "ThrottlingException", "The request rate is too high for this hub's units; retry later.")
    else:
        err = IotHubError(503, "ServerBusy", "The IoT hub is temporarily unavailable; retry later.")
    resp = error_response(err)
    resp.headers["Retry-After"] = str(retry_after)
    return resp


def json_ok(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=json.dumps(body).encode(), status=status, content_type="application/json", headers=headers)


def hub_handler(fn: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Resolve the hub, require api-version, shape IoT Hub errors."""

    async def handler(request: web.Request) -> web.StreamResponse:
        backend = request.app[BACKEND_KEY]
        try:
            hub = backend.hub(request.match_info["hub"])
            if hub is None:
                raise IotHubError(
                    404,
                    "IotHubNotFound",
                    f"No IoT hub named {request.match_info['hub']!r} is served here: it does not exist or was deleted.",
                )
            if not request.query.get("api-version"):
                raise IotHubError(400, "InvalidProtocolVersion", "The api-version query parameter is required.")
            return await fn(request, hub)
        except IotHubError as err:
            return error_response(err)

    handler.__name__ = fn.__name__
    return handler


def _target(request: web.Request, hub: Hub, device_id: str) -> str:
    return f"{request.app[BACKEND_KEY].host_name(hub.name)}/devices/{device_id}".lower()


def _authorize(request: web.Request, hub: Hub, right: str, target: str) -> None:
    request.app[BACKEND_KEY].authorize_service(
        hub,
        request.headers.get("Authorization"),
        right,
        target,
        principal_from_request(request),
        audience_from_request(request),
    )


async def _json_body(request: web.Request) -> Any:
    """The request's JSON body (None when empty); IoT Hub's 400 when it is not JSON."""
    raw = await request.read()
    try:
        return json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise IotHubError(400, "ArgumentInvalid", f"The request body is not valid JSON: {exc}.") from exc


def _etag_header(doc: dict[str, Any]) -> dict[str, str]:
    return {"ETag": f'"{doc["etag"]}"'}


@hub_handler
async def get_device(request: web.Request, hub: Hub) -> web.StreamResponse:
    device_id = request.match_info["device"]
    _authorize(request, hub, "RegistryRead", _target(request, hub, device_id))
    doc = hub.get_device(device_id)
    return json_ok(doc, headers=_etag_header(doc))


@hub_handler
async def list_devices(request: web.Request, hub: Hub) -> web.StreamResponse:
    _authorize(request, hub, "RegistryRead", f"{request.app[BACKEND_KEY].host_name(hub.name)}/devices".lower())
    raw = request.query.get("top", "1000")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise IotHubError(400, "ArgumentInvalid", f"top: must be an integer from 1 to 1000, got {raw!r}.")
    return json_ok(hub.list_devices(int(raw)))


@hub_handler
async def put_device(request: web.Request, hub: Hub) -> web.StreamResponse:
    device_id = request.match_info["device"]
    _authorize(request, hub, "RegistryWrite", _target(request, hub, device_id))
    body = await _json_body(request)
    doc, created = hub.put_device(device_id, body, request.headers.get("If-Match"))
    if created:
        _lifecycle_event(request, hub, "DeviceCreated", doc)
    return json_ok(doc, headers=_etag_header(doc))


@hub_handler
async def delete_device(request: web.Request, hub: Hub) -> web.StreamResponse:
    device_id = request.match_info["device"]
    _authorize(request, hub, "RegistryWrite", _target(request, hub, device_id))
    doc = hub.get_device(device_id)
    hub.delete_device(device_id, request.headers.get("If-Match"))
    _lifecycle_event(request, hub, "DeviceDeleted", doc)
    return web.Response(status=204)


def _twin_target(request: web.Request, hub: Hub, device_id: str) -> str:
    return f"{request.app[BACKEND_KEY].host_name(hub.name)}/twins/{device_id}".lower()


@hub_handler
async def get_twin(request: web.Request, hub: Hub) -> web.StreamResponse:
    device_id = request.match_info["device"]
    _authorize(request, hub, "ServiceConnect", _twin_target(request, hub, device_id))
    doc = hub.get_twin(device_id)
    return json_ok(doc, headers=_etag_header(doc))


@hub_handler
async def patch_twin(request: web.Request, hub: Hub) -> web.StreamResponse:
    """Update tags / desired properties (the service side of a twin; `ServiceConnect`)."""
    device_id = request.match_info["device"]
    _authorize(request, hub, "ServiceConnect", _twin_target(request, hub, device_id))
    body = await _json_body(request)
    doc = hub.patch_twin(device_id, body, request.headers.get("If-Match"))
    return json_ok(doc, headers=_etag_header(doc))


def _lifecycle_event(request: web.Request, hub: Hub, op: str, doc: dict[str, Any]) -> None:
    """IoT Hub raises `Microsoft.Devices.DeviceCreated` / `DeviceDeleted` into its system topics."""
    from sandbox import eventgrid  # a peer service: imported when needed

    twin = {
        "deviceId": doc["deviceId"],
        "etag": "AAAAAAAAAAE=",
        "deviceEtag": doc["etag"],
        "status": doc["status"],
        "statusUpdateTime": doc["statusUpdatedTime"],
        "connectionState": doc["connectionState"],
        "lastActivityTime": doc["lastActivityTime"],
        "cloudToDeviceMessageCount": 0,
        "authenticationType": "sas",
        "x509Thumbprint": {"primaryThumbprint": None, "secondaryThumbprint": None},
        "version": 2,
        "properties": {"desired": {"$metadata": {}, "$version": 1}, "reported": {"$metadata": {}, "$version": 1}},
    }
    data = {"twin": twin, "hubName": hub.name, "deviceId": doc["deviceId"], "operationTimestamp": now_iso(), "opType": op}
    # Registry changes stand even when Event Grid cannot take the event, as in Azure.
    with contextlib.suppress(RuntimeError):
        eventgrid.publish_system_event(
            request.app[CTX_KEY], hub.resource_id, f"Microsoft.Devices.{op}", f"devices/{doc['deviceId']}", data
        )


APP_PROPERTY_PREFIX = "iothub-app-"
SYSTEM_HEADERS = {
    "iothub-contenttype": "content-type",
    "iothub-contentencoding": "content-encoding",
    "iothub-messageid": "message-id",
    "iothub-correlationid": "correlation-id",
}


@hub_handler
async def send_event(request: web.Request, hub: Hub) -> web.StreamResponse:
    device_id = request.match_info["device"]
    backend = request.app[BACKEND_KEY]
    backend.authorize_device(hub, device_id, request.headers.get("Authorization"), _target(request, hub, device_id))
    body = await request.read()
    system = {name: request.headers[h] for h, name in SYSTEM_HEADERS.items() if h in request.headers}
    app = {
        k[len(APP_PROPERTY_PREFIX) :]: v for k, v in request.headers.items() if k.lower().startswith(APP_PROPERTY_PREFIX)
    }
    data = hub.accept_message(device_id, body, system, app)
    from sandbox import eventgrid  # Event Grid is a peer service: imported when a message arrives

    try:
        eventgrid.publish_system_event(
            request.app[CTX_KEY], hub.resource_id, TELEMETRY_EVENT, f"devices/{device_id}", data
        )
    except RuntimeError as exc:
        raise IotHubError(503, "ServerBusy", f"The message could not be routed to Event Grid: {exc}.") from exc
    return web.Response(status=204)
