"""State of the sandbox's IoT Hubs: the device registry, SAS verification, device-to-cloud messages.

ARM creates hubs; the hook sets `properties.hostName = 127.0.0.1:PORT/iothub/<hub>` so that
`HostName=...` connection strings reach this data plane. Shared access policy keys are ARM's (what
`listkeys` answers), read at request time. A device-to-cloud message raises
`Microsoft.Devices.DeviceTelemetry` into the hub's Event Grid system topics, shaped as IoT Hub
does (the body is JSON only for content type application/json with encoding utf-8).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from sandbox.core.context import SandboxContext

RESOURCE_TYPE = "Microsoft.Devices/IotHubs"
URL_PREFIX = "/iothub"
TELEMETRY_EVENT = "Microsoft.Devices.DeviceTelemetry"
MAX_MESSAGE_BYTES = 256 * 1024
MESSAGES_KEPT = 1000
DEVICE_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.+%_#*?!(),:=@$'")
NEVER = "0001-01-01T00:00:00Z"

# Service APIs also take Entra tokens for this audience, honouring these built-in roles
# (device-to-cloud does not: devices authenticate with SAS or X.509 only).
ENTRA_AUDIENCES = frozenset({"https://iothubs.azure.net", "https://iothubs.azure.net/"})
DATA_CONTRIBUTOR_ROLE = "4fc6c259-987e-4a07-842e-c321cc9d413f"
REGISTRY_CONTRIBUTOR_ROLE = "4ea46cd5-c1b2-4a8e-910b-273211f9ce47"
DATA_READER_ROLE = "b447c946-2db7-41ec-983d-d8bf3b1c77e3"
TWIN_CONTRIBUTOR_ROLE = "494bdba2-168f-4f31-a0a1-191d2f7c028c"
ROLES_FOR_RIGHT = {
    "RegistryRead": {DATA_CONTRIBUTOR_ROLE, REGISTRY_CONTRIBUTOR_ROLE, DATA_READER_ROLE},
    "RegistryWrite": {DATA_CONTRIBUTOR_ROLE, REGISTRY_CONTRIBUTOR_ROLE},
    # Twin reads and updates are ServiceConnect operations (what the `service` policy grants).
    "ServiceConnect": {DATA_CONTRIBUTOR_ROLE, TWIN_CONTRIBUTOR_ROLE},
}

# Rights of the built-in shared access policies (ARM's IoT Hub keys).
POLICY_RIGHTS = {
    "iothubowner": {"RegistryRead", "RegistryWrite", "ServiceConnect", "DeviceConnect"},
    "service": {"ServiceConnect"},
    "device": {"DeviceConnect"},
    "registryread": {"RegistryRead"},
    "registryreadwrite": {"RegistryRead", "RegistryWrite"},
}


class IotHubError(Exception):
    """An IoT Hub error: `{"Message": "ErrorCode:<code>;<text>", "ExceptionMessage": ...}` with a status
    and the `iothub-errorcode` header, as the service answers."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        stamp = datetime.now(UTC).strftime("%m/%d/%Y %H:%M:%S")
        return {
            "Message": f"ErrorCode:{self.code};{self.message}",
            "ExceptionMessage": f"Tracking ID:{uuid.uuid4().hex}-G:0-TimeStamp:{stamp}",
        }


def unauthorized(detail: str) -> IotHubError:
    return IotHubError(401, "IotHubUnauthorizedAccess", f"Unauthorized: {detail}")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def new_device_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _valid_key(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        return False
    return 16 <= len(raw) <= 64


# Device twin limits (learn.microsoft.com "Understand and use device twins in IoT Hub").
MAX_DESIRED_BYTES = 32 * 1024
MAX_TAGS_BYTES = 32 * 1024
MAX_TWIN_DEPTH = 10
FORBIDDEN_KEY_CHARS = frozenset(". $")


@dataclass
class TwinState:
    """The service-side half of a device twin: tags and desired properties (reported ones are the
    device's, which the sandbox's HTTPS device API does not write)."""

    tags: dict[str, Any] = field(default_factory=dict)
    desired: dict[str, Any] = field(default_factory=dict)
    desired_metadata: dict[str, Any] = field(default_factory=dict)
    desired_version: int = 1
    version: int = 1
    etag_counter: int = 1
    created: str = field(default_factory=now_iso)

    @property
    def etag(self) -> str:
        return base64.b64encode(self.etag_counter.to_bytes(8, "big")).decode()


@dataclass
class Device:
    doc: dict[str, Any]
    messages_sent: int = 0
    twin: TwinState = field(default_factory=TwinState)

    @property
    def keys(self) -> list[str]:
        sym = (self.doc.get("authentication") or {}).get("symmetricKey") or {}
        return [k for k in (sym.get("primaryKey"), sym.get("secondaryKey")) if k]


@dataclass
class Hub:
    name: str
    resource_id: str
    devices: dict[str, Device] = field(default_factory=dict)
    messages: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MESSAGES_KEPT))
    etag_counter: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)

    def next_etag(self) -> str:
        self.etag_counter += 1
        return base64.b64encode(str(self.etag_counter).encode()).decode()

    # --- registry --------------------------------------------------------------------------------

    def get_device(self, device_id: str) -> dict[str, Any]:
        with self.lock:
            device = self.devices.get(device_id)
            if device is None:
                raise device_not_found(device_id, self.name)
            return copy.deepcopy(device.doc)

    def list_devices(self, top: int) -> list[dict[str, Any]]:
        with self.lock:
            return [copy.deepcopy(d.doc) for d in list(self.devices.values())[:top]]

    def put_device(self, device_id: str, body: Any, if_match: str | None) -> tuple[dict[str, Any], bool]:
        """Create or update a device identity; returns (device, created)."""
        check_device_id(device_id)
        if not isinstance(body, dict):
            raise IotHubError(400, "ArgumentInvalid", "The request body must be a JSON device identity.")
        if body.get("deviceId") not in (None, device_id):
            raise IotHubError(
                400, "ArgumentInvalid", f"deviceId in the body ({body.get('deviceId')!r}) differs from the URL ({device_id!r})."
            )
        status = str(body.get("status") or "enabled")
        if status not in ("enabled", "disabled"):
            raise IotHubError(400, "ArgumentInvalid", f"status: must be 'enabled' or 'disabled', got {status!r}.")
        auth: dict[str, Any] = body["authentication"] if isinstance(body.get("authentication"), dict) else {}
        auth_type = str(auth.get("type") or "sas")
        if auth_type != "sas":
            raise IotHubError(
                400, "ArgumentInvalid", f"authentication.type {auth_type!r} is not supported by the sandbox; use 'sas'."
            )
        sym: dict[str, Any] = auth["symmetricKey"] if isinstance(auth.get("symmetricKey"), dict) else {}
        with self.lock:
            existing = self.devices.get(device_id)
            if existing is None:
                if if_match and if_match.strip().strip('"') != "*":
                    raise device_not_found(device_id, self.name)
            else:
                current = existing.doc["etag"]
                if not if_match:
                    raise IotHubError(
                        409, "DeviceAlreadyExists", f"A device with ID '{device_id}' is already registered."
                    )
                if if_match.strip().strip('"') not in ("*", current):
                    raise IotHubError(
                        412,
                        "PreconditionFailed",
                        f"Precondition failed: the device '{device_id}' has etag {current}, not {if_match}.",
                    )
            old_keys = ((existing.doc["authentication"].get("symmetricKey") or {}) if existing else {})
            primary = sym.get("primaryKey") or old_keys.get("primaryKey") or new_device_key()
            secondary = sym.get("secondaryKey") or old_keys.get("secondaryKey") or new_device_key()
            for name, key in (("primaryKey", primary), ("secondaryKey", secondary)):
                if not _valid_key(key):
                    raise IotHubError(
                        400,
                        "ArgumentInvalid",
                        f"authentication.symmetricKey.{name}: must be base64 of 16 to 64 bytes.",
                    )
            now = now_iso()
            doc = {
                "deviceId": device_id,
                "generationId": existing.doc["generationId"] if existing else str(int(time.time() * 1e6) % 10**18),
                "etag": self.next_etag(),
                "connectionState": "Disconnected",
                "status": status,
                "statusReason": body.get("statusReason"),
                "connectionStateUpdatedTime": existing.doc["connectionStateUpdatedTime"] if existing else NEVER,
                "statusUpdatedTime": now if existing is None or existing.doc["status"] != status else existing.doc["statusUpdatedTime"],
                "lastActivityTime": existing.doc["lastActivityTime"] if existing else NEVER,
                "cloudToDeviceMessageCount": 0,
                "authentication": {
                    "symmetricKey": {"primaryKey": primary, "secondaryKey": secondary},
                    "x509Thumbprint": {"primaryThumbprint": None, "secondaryThumbprint": None},
                    "type": "sas",
                },
                "capabilities": {"iotEdge": bool((body.get("capabilities") or {}).get("iotEdge", False))},
            }
            self.devices[device_id] = Device(
                doc, existing.messages_sent if existing else 0, existing.twin if existing else TwinState()
            )
            return copy.deepcopy(doc), existing is None

    def delete_device(self, device_id: str, if_match: str | None) -> None:
        if not if_match:
            raise IotHubError(
                400, "ArgumentNull", "The If-Match header is required to delete a device: use \"*\" or the device's etag."
            )
        with self.lock:
            device = self.devices.get(device_id)
            if device is None:
                raise device_not_found(device_id, self.name)
            if if_match.strip().strip('"') not in ("*", device.doc["etag"]):
                raise IotHubError(
                    412, "PreconditionFailed", f"Precondition failed: the device '{device_id}' has etag {device.doc['etag']}."
                )
            del self.devices[device_id]

    # --- device twins ----------------------------------------------------------------------------

    def get_twin(self, device_id: str) -> dict[str, Any]:
        with self.lock:
            device = self.devices.get(device_id)
            if device is None:
                raise device_not_found(device_id, self.name)
            return twin_document(device)

    def patch_twin(self, device_id: str, body: Any, if_match: str | None) -> dict[str, Any]:
        """`PATCH /twins/{id}`: JSON merge of `tags` and `properties.desired` (null removes a key);
        bumps the twin `version`, the desired `$version` and the etag."""
        if not isinstance(body, dict):
            raise IotHubError(400, "ArgumentInvalid", "The request body must be a JSON twin patch object.")
        unknown = sorted(set(body) - {"tags", "properties", "deviceId", "etag"})
        if unknown:
            raise IotHubError(400, "ArgumentInvalid", f"A twin patch may change tags and properties.desired only, not {unknown}.")
        if body.get("deviceId") not in (None, device_id):
            raise IotHubError(400, "ArgumentInvalid", f"deviceId in the body ({body.get('deviceId')!r}) differs from the URL ({device_id!r}).")
        tags = body.get("tags")
        props = body.get("properties")
        if props is not None and not isinstance(props, dict):
            raise IotHubError(400, "ArgumentInvalid", "properties: must be an object with a 'desired' object.")
        props = props or {}
        if "reported" in props:
            raise IotHubError(400, "ArgumentInvalid", "properties.reported: reported properties are written by the device only.")
        if set(props) - {"desired"}:
            raise IotHubError(400, "ArgumentInvalid", f"properties: unknown section(s) {sorted(set(props) - {'desired'})}.")
        desired = props.get("desired")
        for name, section in (("tags", tags), ("properties.desired", desired)):
            if section is not None:
                if not isinstance(section, dict):
                    raise IotHubError(400, "ArgumentInvalid", f"{name}: must be a JSON object.")
                check_twin_section(section, name)
        with self.lock:
            device = self.devices.get(device_id)
            if device is None:
                raise device_not_found(device_id, self.name)
            twin = device.twin
            if if_match and if_match.strip().strip('"') not in ("*", twin.etag):
                raise IotHubError(
                    412, "PreconditionFailed", f"Precondition failed: the twin of '{device_id}' has etag {twin.etag}, not {if_match}."
                )
            new_tags = merge_patch(twin.tags, tags) if tags is not None else twin.tags
            new_desired = merge_patch(twin.desired, desired) if desired is not None else twin.desired
            for name, section, limit in (("tags", new_tags, MAX_TAGS_BYTES), ("properties.desired", new_desired, MAX_DESIRED_BYTES)):
                size = len(json.dumps(section, separators=(",", ":")).encode())
                if size > limit:
                    raise IotHubError(400, "ArgumentInvalid", f"{name}: {size} bytes after the patch; at most {limit} are allowed.")
            now = now_iso()
            twin.tags = new_tags
            if desired is not None:
                twin.desired_version += 1
                twin.desired = new_desired
                for key, value in desired.items():
                    if value is None:
                        twin.desired_metadata.pop(key, None)
                    else:
                        twin.desired_metadata[key] = {"$lastUpdated": now, "$lastUpdatedVersion": twin.desired_version}
            twin.version += 1
            twin.etag_counter += 1
            return twin_document(device)

    # --- device-to-cloud -------------------------------------------------------------------------

    def accept_message(self, device_id: str, body: bytes, system: dict[str, str], app: dict[str, str]) -> dict[str, Any]:
        """Record a device-to-cloud message; returns the Event Grid `data` of its telemetry event."""
        if len(body) > MAX_MESSAGE_BYTES:
            raise IotHubError(413, "MessageTooLarge", f"The message is {len(body)} bytes; at most {MAX_MESSAGE_BYTES} are allowed.")
        with self.lock:
            device = self.devices.get(device_id)
            if device is None:
                raise device_not_found(device_id, self.name)
            if device.doc["status"] != "enabled":
                raise unauthorized(f"the device '{device_id}' is disabled.")
            device.messages_sent += 1
            device.doc["lastActivityTime"] = now_iso()
            generation = device.doc["generationId"]
        data = telemetry_event_data(device_id, generation, body, system, app)
        with self.lock:
            self.messages.append({"deviceId": device_id, "data": copy.deepcopy(data)})
        return data


def telemetry_event_data(
    device_id: str, generation_id: str, body: bytes, system: dict[str, str], app: dict[str, str]
) -> dict[str, Any]:
    """`data` of a `Microsoft.Devices.DeviceTelemetry` event as IoT Hub raises it: `body` is the
    parsed JSON only when the content type is application/json and the encoding utf-8 (the
    device must set both); otherwise it is the base64 of the bytes."""
    content_type = system.get("content-type")
    encoding = system.get("content-encoding")
    sys_props: dict[str, Any] = {}
    if content_type:
        sys_props["iothub-content-type"] = content_type
    if encoding:
        sys_props["iothub-content-encoding"] = encoding
    for name in ("message-id", "correlation-id"):
        if system.get(name):
            sys_props[name] = system[name]
    sys_props.update(
        {
            "iothub-connection-device-id": device_id,
            "iothub-connection-auth-method": '{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}',
            "iothub-connection-auth-generation-id": generation_id,
            "iothub-enqueuedtime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "iothub-message-source": "Telemetry",
        }
    )
    payload: Any = base64.b64encode(body).decode()
    if (content_type or "").split(";")[0].strip().lower() == "application/json" and (encoding or "").lower() in (
        "utf-8",
        "utf8",
    ):
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            payload = base64.b64encode(body).decode()
    return {"properties": dict(app), "systemProperties": sys_props, "body": payload}


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7396 JSON merge patch, as IoT Hub applies twin patches: objects merge, null removes."""
    out = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            current = out.get(key)
            out[key] = merge_patch(current if isinstance(current, dict) else {}, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def check_twin_section(section: dict[str, Any], path: str, depth: int = 1) -> None:
    """Key names without `.`, `$` or spaces, at most 1 KB each; nesting at most MAX_TWIN_DEPTH."""
    if depth > MAX_TWIN_DEPTH:
        raise IotHubError(400, "ArgumentInvalid", f"{path}: nested deeper than {MAX_TWIN_DEPTH} levels.")
    for key, value in section.items():
        if not key or len(key.encode()) > 1024 or any(c in FORBIDDEN_KEY_CHARS or ord(c) < 32 for c in key):
            raise IotHubError(400, "ArgumentInvalid", f"{path}: key {key!r} is not allowed (no '.', '$', spaces or control characters; 1-1024 bytes).")
        if isinstance(value, dict):
            check_twin_section(value, f"{path}.{key}", depth + 1)


def twin_document(device: Device) -> dict[str, Any]:
    """The twin as `GET /twins/{id}` answers it."""
    doc, twin = device.doc, device.twin
    desired_meta = {"$lastUpdated": twin.created, **copy.deepcopy(twin.desired_metadata)}
    if twin.desired_metadata:
        desired_meta["$lastUpdated"] = max(m["$lastUpdated"] for m in twin.desired_metadata.values())
    out: dict[str, Any] = {
        "deviceId": doc["deviceId"],
        "etag": twin.etag,
        "deviceEtag": doc["etag"],
        "status": doc["status"],
        "statusUpdateTime": doc["statusUpdatedTime"],
        "connectionState": doc["connectionState"],
        "lastActivityTime": doc["lastActivityTime"],
        "cloudToDeviceMessageCount": doc["cloudToDeviceMessageCount"],
        "authenticationType": "sas",
        "x509Thumbprint": {"primaryThumbprint": None, "secondaryThumbprint": None},
        "modelId": "",
        "version": twin.version,
        "properties": {
            "desired": {**copy.deepcopy(twin.desired), "$metadata": desired_meta, "$version": twin.desired_version},
            "reported": {"$metadata": {"$lastUpdated": twin.created}, "$version": 1},
        },
        "capabilities": copy.deepcopy(doc["capabilities"]),
    }
    if twin.tags:
        out["tags"] = copy.deepcopy(twin.tags)
    return out


def device_not_found(device_id: str, hub: str) -> IotHubError:
    return IotHubError(404, "DeviceNotFound", f"Device '{device_id}' was not found on IoT hub '{hub}'.")


def check_device_id(device_id: str) -> None:
    if not device_id or len(device_id) > 128 or any(c not in DEVICE_ID_CHARS for c in device_id):
        raise IotHubError(
            400,
            "ArgumentInvalid",
            f"The device id {device_id!r} is invalid: 1-128 characters, letters, digits and - . + % _ # * ? ! ( ) , : = @ $ '.",
        )


# --- SAS tokens ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SasToken:
    resource: str  # sr as sent (URL-encoded as the client signed it)
    signature: str  # decoded base64 signature
    expiry: str
    key_name: str | None

    @property
    def scope(self) -> str:
        """The resource URI the token grants, lower case, without a scheme."""
        sr = unquote(self.resource).lower()
        return sr.split("://", 1)[-1].rstrip("/")


def parse_sas(header: str | None) -> SasToken:
    if not header:
        raise unauthorized("the Authorization header is missing; send a SharedAccessSignature token.")
    scheme, _, rest = header.strip().partition(" ")
    if scheme != "SharedAccessSignature" or not rest:
        raise unauthorized("the Authorization header is not a SharedAccessSignature token.")
    fields: dict[str, str] = {}
    for part in rest.split("&"):
        key, sep, value = part.partition("=")
        if not sep:
            raise unauthorized("the SharedAccessSignature token is malformed.")
        fields[key.strip()] = value
    if not fields.get("sr") or not fields.get("sig") or not fields.get("se"):
        raise unauthorized("the SharedAccessSignature token needs sr, sig and se.")
    return SasToken(fields["sr"], unquote(fields["sig"]), fields["se"], fields.get("skn") or None)


def sign(key: str, resource: str, expiry: str) -> str:
    return base64.b64encode(
        hmac.new(base64.b64decode(key), f"{resource}\n{expiry}".encode(), hashlib.sha256).digest()
    ).decode()


def verify_sas(token: SasToken, keys: list[str], target: str) -> None:
    """Check expiry, that the token's scope covers `target` (host/path, lower case), and the signature."""
    try:
        expiry = int(token.expiry)
    except ValueError as exc:
        raise unauthorized("the token's se (expiry) is not a number.") from exc
    if expiry < time.time():
        raise unauthorized("the SharedAccessSignature token has expired.")
    if not (target == token.scope or target.startswith(token.scope + "/")):
        raise unauthorized(f"the token's resource (sr) does not cover {target}.")
    for key in keys:
        try:
            expected = sign(key, token.resource, token.expiry)
        except ValueError:
            continue
        if hmac.compare_digest(expected, token.signature):
            return
    raise unauthorized("the SharedAccessSignature signature does not match.")


# --- the backend ---------------------------------------------------------------------------------


class _Hooks:
    def __init__(self, owner: IotHubBackend) -> None:
        self.owner = owner

    def on_put(self, resource_id: str, resource: dict[str, Any]) -> None:
        self.owner.on_put(resource_id, resource)

    def on_delete(self, resource_id: str) -> None:
        self.owner.on_delete(resource_id)


class IotHubBackend:
    """Every IoT Hub of one sandbox."""

    def __init__(self, ctx: SandboxContext) -> None:
        self.ctx = ctx
        self.lock = threading.RLock()
        self.hubs: dict[str, Hub] = {}  # lower-case hub name -> hub
        self.hooks = _Hooks(self)

    def reset(self) -> None:
        with self.lock:
            self.hubs.clear()

    def host_name(self, hub_name: str) -> str:
        """`127.0.0.1:PORT/iothub/<hub>`: what ARM answers as `properties.hostName`."""
        return f"{self.ctx.azure_base_url.split('://', 1)[-1]}{URL_PREFIX}/{hub_name}"

    def on_put(self, resource_id: str, resource: dict[str, Any]) -> None:
        name = resource_id.rstrip("/").rsplit("/", 1)[-1]
        with self.lock:
            hub = self.hubs.get(name.lower())
            if hub is None or hub.resource_id.lower() != resource_id.lower():
                self.hubs[name.lower()] = Hub(name, resource_id)
        resource.setdefault("properties", {})["hostName"] = self.host_name(name)

    def on_delete(self, resource_id: str) -> None:
        name = resource_id.rstrip("/").rsplit("/", 1)[-1].lower()
        with self.lock:
            hub = self.hubs.get(name)
            if hub is not None and hub.resource_id.lower() == resource_id.lower():
                del self.hubs[name]

    def hub(self, name: str) -> Hub | None:
        with self.lock:
            return self.hubs.get(name.lower())

    def policy_keys(self, hub: Hub, right: str) -> dict[str, list[str]]:
        """policy name (lower case) -> its keys, for the policies holding `right`."""
        try:
            from sandbox.arm.models import arm_backend
        except ImportError:
            return {}
        res = arm_backend(self.ctx).resources.get(hub.resource_id.lower())
        if res is None:
            return {}
        out: dict[str, list[str]] = {}
        for secret_name, value in res.secrets.items():
            policy, _, _slot = secret_name.partition(":")
            if right in POLICY_RIGHTS.get(policy.lower(), set()):
                out.setdefault(policy.lower(), []).append(value)
        return out

    def authorize_service(
        self, hub: Hub, header: str | None, right: str, target: str, principal: str | None, audience: str | None
    ) -> None:
        """A service call (registry, twins): a policy token (`skn`) whose policy has `right`, or an Entra bearer token
        (`principal`, `audience` read from it) whose principal holds a role granting `right`."""
        if header is not None and header.strip().lower().startswith("bearer "):
            if principal is None:
                raise unauthorized("the bearer token is unreadable or expired.")
            if audience not in ENTRA_AUDIENCES:
                raise unauthorized(f"the bearer token's audience {audience!r} is not https://iothubs.azure.net.")
            if not self.ctx.role_assignments.allows(principal, hub.resource_id, ROLES_FOR_RIGHT[right]):
                # IoT Hub answers RBAC denials with 401 too; a new assignment may still be propagating.
                raise unauthorized(
                    f"principal {principal} holds no role granting {right} on hub '{hub.name}': assign 'IoT Hub "
                    "Registry Contributor' or 'IoT Hub Data Contributor' on the hub (assignments take a while to apply)."
                )
            return
        token = parse_sas(header)
        if token.key_name is None:
            raise unauthorized(f"service operations need a shared access policy token (skn) with {right}.")
        keys = self.policy_keys(hub, right).get(token.key_name.lower())
        if not keys:
            raise unauthorized(f"the policy '{token.key_name}' does not exist or lacks the {right} permission.")
        verify_sas(token, keys, target)

    def authorize_device(self, hub: Hub, device_id: str, header: str | None, target: str) -> None:
        """A device-to-cloud call: the device's own key, or a policy with DeviceConnect."""
        token = parse_sas(header)
        if token.key_name is None:
            with hub.lock:
                device = hub.devices.get(device_id)
                keys = list(device.keys) if device is not None else []
            if device is None:
                raise unauthorized(f"the device '{device_id}' is not registered on this hub.")
        else:
            keys = self.policy_keys(hub, "DeviceConnect").get(token.key_name.lower(), [])
            if not keys:
                raise unauthorized(f"the policy '{token.key_name}' does not exist or lacks the DeviceConnect permission.")
        verify_sas(token, keys, target)
