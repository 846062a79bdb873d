"""`python -m control_plane simulate SPEC --sandbox DIR [--device ID] [--count N] [--json]`

Sends device telemetry into a twin's deployed L1 in the sandbox and reports, per message, when
it reached hot storage and the twin. Messages are built from the spec's devices (each property
starting at its `initValue`, changing a little per message), or taken from a payloads file
(`--payloads FILE`, the original project's `iot_device_simulator/payloads.json`, which is also
used when SPEC is an original-layout folder holding one).

- L1 on AWS: `iot-data` `Publish` to the twin's topic (`{twin}/iot-data`), which the topic
  rule hands to the dispatcher Lambda.
- L1 on Azure: device-to-cloud telemetry over HTTPS to the IoT Hub with the device's SAS token
  (the device key is read from the hub's registry with the hub's `iothubowner` key from ARM).
- L1 on GCP: Pub/Sub `Publish` to the twin's telemetry topic (`{twin}-telemetry`) with the
  device id in the message attribute `deviceId`, which Eventarc hands to the dispatcher function
  (as the operator, like the AWS publish: a device's own key stays with the control plane).
Then, per message, hot storage is polled (DynamoDB query / Cosmos query on `device_id` and
`timestamp` / the reading's Firestore document) and the twin (Azure Digital Twins: the `last<Name>` properties equal the values
sent; AWS IoT TwinMaker pulls from hot storage on demand, so its twin is current once stored).
Exit code 0 when every message reached hot storage (and the twin, where it is pushed), 1 when
one did not, 2 for invalid input.

Device feedback on GCP (L1 on GCP, feedback asked for): each simulated device's own feedback
subscription (`{twin}-feedback-{device}-{hash}`) is pulled and acknowledged after the messages, for up to
`--feedback-wait` seconds (default 0: one pull), as the device would, and the report lists what
each received (`feedback`).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import sys
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from shared.contracts import StorageKey, adt_property_name
from shared.naming import AwsNaming, AzureNaming, GcpNaming
from shared.validation import SpecError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
DEFAULT_TIMEOUT_SECONDS = 30.0
POLL_SECONDS = 0.05  # the reported latencies are this precise
PAYLOADS_FILE = Path("iot_device_simulator") / "payloads.json"
DEVICE_ID_KEYS = ("iotDeviceId", "device_id", "deviceId")
TIME_KEYS = ("time", "timestamp", "ts")
IOT_HUB_API_VERSION = "2021-04-12"
SAS_TTL_SECONDS = 3600
IOT_HUB_RETRIES = 6  # throttled registry reads and sends, with backoff (0.2 s doubling, at most 5 s)


class SimulateError(Exception):
    """A problem the user can act on (missing sandbox, resource not deployed ...)."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="send device telemetry into a deployed twin in the sandbox and time its arrival",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("spec", metavar="SPEC", help="a twin.json file or an original-layout folder")
    parser.add_argument("--sandbox", required=True, type=Path, metavar="DIR",
                        help="the sandbox state folder (holds endpoints.json)")
    parser.add_argument("--device", action="append", default=None, metavar="ID",
                        help="only this device (repeatable; default: every device)")
    parser.add_argument("--count", type=int, default=1, metavar="N", help="messages per device (default 1)")
    parser.add_argument("--payloads", type=Path, default=None, metavar="FILE",
                        help="send these readings (a JSON list) instead of building them from the spec")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, metavar="SECONDS",
                        help="how long to wait for each message to arrive (default 30)")
    parser.add_argument("--feedback-wait", type=float, default=0.0, metavar="SECONDS",
                        help="L1 on GCP: how long to keep pulling the devices' feedback (default 0: once)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run)


# --- messages -------------------------------------------------------------------------------


@dataclass
class Message:
    index: int
    device_id: str
    body: dict[str, Any]
    timestamp: str  # as hot storage keys it (the payload functions' canonical form)
    values: dict[str, Any]
    sent_at: float | None = None
    stored_at: float | None = None
    twin_at: float | None = None
    errors: list[str] = field(default_factory=list)
    twin_note: str = ""

    def to_json(self) -> dict[str, Any]:
        def iso(t: float | None) -> str | None:
            if t is None:
                return None
            return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

        def ms(t: float | None) -> float | None:
            return None if t is None or self.sent_at is None else round((t - self.sent_at) * 1000, 1)

        return {
            "index": self.index, "device_id": self.device_id, "timestamp": self.timestamp, "values": self.values,
            "sent_at": iso(self.sent_at), "stored_at": iso(self.stored_at), "twin_at": iso(self.twin_at),
            "stored_ms": ms(self.stored_at), "twin_ms": ms(self.twin_at),
            "twin_note": self.twin_note or None, "errors": self.errors,
        }


def _canonical(stamp: str) -> str:
    from payload_functions.common.telemetry import parse_timestamp  # the storage key's one definition

    return parse_timestamp(stamp)


def _now_iso(offset_ms: int = 0) -> str:
    moment = datetime.now(UTC).timestamp() + offset_ms / 1000
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _value(data_type: str, start: Any, step: int) -> Any:
    if data_type == "BOOLEAN":
        return bool(start) != bool(step % 2)
    if data_type == "STRING":
        return f"{start if start is not None else 'value'}-{step}"
    base = start if isinstance(start, int | float) and not isinstance(start, bool) else 0
    if data_type in ("INTEGER", "LONG"):
        return int(base) + step
    return round(float(base) + 0.5 * step, 3)


def messages_from_spec(spec: Any, devices: list[str], count: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    by_id = {d.id: d for d in spec.devices}
    for step in range(count):
        for device_id in devices:
            device = by_id[device_id]
            body: dict[str, Any] = {"iotDeviceId": device_id, "time": ""}
            for prop in device.properties:
                body[prop.name] = _value(prop.data_type, prop.init_value, step)
            out.append(body)
    return out


def messages_from_file(path: Path, devices: list[str] | None, count: int) -> list[dict[str, Any]]:
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise SimulateError(f"--payloads: cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise SimulateError(f"--payloads: {path} is not JSON: {exc}") from None
    if not isinstance(raw, list) or not all(isinstance(m, dict) for m in raw):
        raise SimulateError(f"--payloads: {path} must hold a JSON list of objects")
    picked: list[dict[str, Any]] = []
    for i, body in enumerate(raw):
        device_id = next((body[k] for k in DEVICE_ID_KEYS if isinstance(body.get(k), str) and body[k]), None)
        if device_id is None:
            raise SimulateError(f"--payloads: {path} [{i}]: no device id ({', '.join(DEVICE_ID_KEYS)})")
        if devices is None or device_id in devices:
            picked.append(dict(body))
    return [dict(m) for _ in range(count) for m in picked]


def build_messages(bodies: list[dict[str, Any]]) -> list[Message]:
    """Give every message a distinct timestamp (its storage key) unless the file fixed one."""
    out: list[Message] = []
    for index, raw in enumerate(bodies):
        body = dict(raw)
        device_id = next(str(body[k]) for k in DEVICE_ID_KEYS if isinstance(body.get(k), str) and body[k])
        time_key = next((k for k in TIME_KEYS if body.get(k) not in (None, "")), None)
        if time_key is None:
            body[TIME_KEYS[0]] = _now_iso(index)  # 1 ms apart: distinct keys even in one burst
            time_key = TIME_KEYS[0]
        try:
            stamp = _canonical(body[time_key])
        except ValueError as exc:
            raise SimulateError(f"message {index} ({device_id}): {exc}") from None
        values = {k: v for k, v in body.items() if k not in DEVICE_ID_KEYS and k not in TIME_KEYS and k != "id"}
        out.append(Message(index, device_id, body, stamp, values))
    return out


# --- clouds -----------------------------------------------------------------------------------


class Endpoints:
    def __init__(self, sandbox_dir: Path) -> None:
        path = sandbox_dir / "endpoints.json"
        try:
            self.doc: dict[str, Any] = json.loads(path.read_text())
        except OSError:
            raise SimulateError(f"--sandbox: {path} does not exist; start the sandbox "
                                f"(python -m sandbox serve --state-dir {sandbox_dir})") from None
        except ValueError as exc:
            raise SimulateError(f"--sandbox: {path} is not JSON: {exc}") from None

    def section(self, cloud: str) -> dict[str, Any]:
        value = self.doc.get(cloud)
        if not isinstance(value, dict):
            raise SimulateError(f"--sandbox: endpoints.json has no '{cloud}' section (is that cloud enabled?)")
        return value


class Aws:
    def __init__(self, endpoints: Endpoints, twin: str) -> None:
        import boto3
        from botocore.config import Config

        aws = endpoints.section("aws")
        self.kw: dict[str, Any] = {
            "endpoint_url": aws["endpoint_url"], "region_name": aws["region"], "aws_access_key_id": "simulator",
            "aws_secret_access_key": "simulator", "config": Config(retries={"mode": "standard", "max_attempts": 5}),
        }
        self.naming = AwsNaming(twin)
        self.iot_data = boto3.client("iot-data", **self.kw)
        self.dynamodb = boto3.client("dynamodb", **self.kw)

    def send(self, msg: Message) -> None:
        self.iot_data.publish(topic=self.naming.iot_topic(), qos=1, payload=json.dumps(msg.body).encode())

    def stored(self, msg: Message) -> bool:
        out = self.dynamodb.get_item(TableName=self.naming.hot_table(), ConsistentRead=True, Key={
            str(StorageKey.PARTITION): {"S": msg.device_id}, str(StorageKey.SORT): {"S": msg.timestamp}})
        return "Item" in out


class Gcp:
    """Pub/Sub publish over REST and Firestore reads over gRPC, with the sandbox's anonymous
    credentials (what `endpoints.json` names)."""

    def __init__(self, endpoints: Endpoints, twin: str) -> None:
        import grpc
        from google.auth.credentials import AnonymousCredentials
        from google.cloud.firestore_v1.services.firestore import FirestoreClient
        from google.cloud.firestore_v1.services.firestore.transports import FirestoreGrpcTransport
        from google.pubsub_v1.services.publisher import PublisherClient
        from google.pubsub_v1.services.publisher.transports import PublisherRestTransport
        from google.pubsub_v1.services.subscriber import SubscriberClient
        from google.pubsub_v1.services.subscriber.transports import SubscriberRestTransport

        gcp = endpoints.section("gcp")
        self.project = str(gcp["project_id"])
        self.naming = GcpNaming(twin)
        self.topic = f"projects/{self.project}/topics/{self.naming.telemetry_topic()}"
        # An explicit transport: PUBSUB_EMULATOR_HOST in the environment cannot turn it into gRPC.
        self.publisher = PublisherClient(transport=PublisherRestTransport(
            host=str(gcp["api_endpoint"]), credentials=AnonymousCredentials()))
        self.subscriber = SubscriberClient(transport=SubscriberRestTransport(
            host=str(gcp["api_endpoint"]), credentials=AnonymousCredentials()))
        self.firestore = FirestoreClient(transport=FirestoreGrpcTransport(
            channel=grpc.insecure_channel(str(gcp["firestore_emulator_host"]))))
        self.database = f"projects/{self.project}/databases/{self.naming.firestore_database()}"

    def send(self, msg: Message) -> None:
        from shared.contracts import PUBSUB_DEVICE_ID_ATTRIBUTE

        self.publisher.publish(request={"topic": self.topic, "messages": [
            {"data": json.dumps(msg.body).encode(), "attributes": {PUBSUB_DEVICE_ID_ATTRIBUTE: msg.device_id}}]})

    def feedback(self, device: str) -> list[dict[str, Any]]:
        """Pull and acknowledge what reached `device`'s own feedback subscription (as the device
        does; the sandbox's operator may read it too); [] when it has none (no feedback planned)."""
        from google.api_core.exceptions import NotFound

        name = f"projects/{self.project}/subscriptions/{self.naming.feedback_subscription(device)}"
        try:
            pulled = self.subscriber.pull(request={"subscription": name, "max_messages": 100}).received_messages
        except NotFound:
            return []
        if pulled:
            self.subscriber.acknowledge(request={"subscription": name, "ack_ids": [m.ack_id for m in pulled]})
        out = []
        for m in pulled:
            try:
                body: Any = json.loads(m.message.data)
            except ValueError:
                body = m.message.data.decode("utf-8", "replace")
            out.append({"message": body, "attributes": dict(m.message.attributes)})
        return out

    def stored(self, msg: Message) -> bool:
        from payload_functions.gcp.firestore_store import document_id

        name = (f"{self.database}/documents/{self.naming.hot_collection()}/"
                f"{document_id(msg.device_id, msg.timestamp)}")
        found = self.firestore.batch_get_documents(request={"database": self.database, "documents": [name]})
        return any("found" in answer for answer in found)


def _sas(resource: str, key: str, policy: str | None = None, ttl: int = SAS_TTL_SECONDS) -> str:
    """An IoT Hub SAS token (`SharedAccessSignature sr=...&sig=...&se=...[&skn=...]`)."""
    expiry = str(int(time.time()) + ttl)
    uri = urllib.parse.quote(resource.lower(), safe="")
    digest = hmac.new(base64.b64decode(key), f"{uri}\n{expiry}".encode(), hashlib.sha256).digest()
    token = f"SharedAccessSignature sr={uri}&sig={urllib.parse.quote(base64.b64encode(digest).decode(), safe='')}&se={expiry}"
    return token + (f"&skn={policy}" if policy else "")


class Azure:
    def __init__(self, endpoints: Endpoints, twin: str) -> None:
        from sandbox.core.auth import SandboxCredential

        azure = endpoints.section("azure")
        self.ca = str(azure["ca_file"])
        self.sub = str(azure["subscription_id"])
        self.cred = SandboxCredential(str(azure["deployer_principal_id"]), str(azure.get("tenant_id") or ""))
        self.kw: dict[str, Any] = {"base_url": azure["arm"], "connection_verify": self.ca}
        self.naming = AzureNaming(twin)
        self.rg = self.naming.resource_group()
        self._hub_host = ""
        self._device_keys: dict[str, str] = {}
        self._owner_key = ""
        self._container: Any = None
        self._twins: Any = None
        self._session: Any = None

    def _http(self) -> Any:
        """IoT Hub's data plane throttles (429 ThrottlingException, 503 ServerBusy, with
        Retry-After): the registry read and the telemetry send retry those, as the device SDKs do."""
        if self._session is None:
            import requests
            from requests.adapters import HTTPAdapter
            from urllib3.util.retry import Retry

            retry = Retry(total=IOT_HUB_RETRIES, status_forcelist=(429, 503), allowed_methods=None,
                          backoff_factor=0.2, backoff_max=5, respect_retry_after_header=True,
                          raise_on_status=False)
            self._session = requests.Session()
            self._session.mount("https://", HTTPAdapter(max_retries=retry))
        return self._session

    def _arm(self, what: str, call: Callable[[], Any]) -> Any:
        from azure.core.exceptions import HttpResponseError

        try:
            return call()
        except HttpResponseError as exc:
            raise SimulateError(f"{what}: {exc.status_code} {getattr(exc.error, 'code', '') or exc.reason}") from None

    # L1
    def _hub(self) -> str:
        if not self._hub_host:
            from azure.mgmt.iothub import IotHubClient

            client = IotHubClient(self.cred, self.sub, **self.kw)
            name = self.naming.iot_hub()
            hub = self._arm(f"IoT Hub {name} in {self.rg}", lambda: client.iot_hub_resource.get(self.rg, name))
            keys = self._arm(f"keys of IoT Hub {name}", lambda: list(client.iot_hub_resource.list_keys(self.rg, name)))
            owner = next((k for k in keys if k.key_name == "iothubowner"), None)
            if owner is None:
                raise SimulateError(f"IoT Hub {name} has no iothubowner policy")
            self._owner_key = owner.primary_key
            self._hub_host = hub.properties.host_name
        return self._hub_host

    def _device_key(self, registry_id: str) -> str:
        if registry_id not in self._device_keys:
            host = self._hub()
            r = self._http().get(f"https://{host}/devices/{urllib.parse.quote(registry_id)}",
                             params={"api-version": IOT_HUB_API_VERSION}, verify=self.ca, timeout=30,
                             headers={"Authorization": _sas(host, self._owner_key, "iothubowner")})
            if r.status_code == 404:
                raise SimulateError(f"device {registry_id} is not registered in IoT Hub {self.naming.iot_hub()}")
            if r.status_code != 200:
                raise SimulateError(f"reading device {registry_id} from the IoT Hub registry: HTTP {r.status_code}")
            self._device_keys[registry_id] = r.json()["authentication"]["symmetricKey"]["primaryKey"]
        return self._device_keys[registry_id]

    def send(self, msg: Message) -> None:
        registry_id = self.naming.iot_device(msg.device_id)
        key = self._device_key(registry_id)
        host = self._hub()
        r = self._http().post(
            f"https://{host}/devices/{urllib.parse.quote(registry_id)}/messages/events",
            params={"api-version": IOT_HUB_API_VERSION}, data=json.dumps(msg.body).encode(), verify=self.ca,
            timeout=30, headers={"Authorization": _sas(f"{host}/devices/{registry_id}", key),
                                 "Content-Type": "application/json",
                                 # Without these IoT Hub hands the body to Event Grid base64-encoded.
                                 "iothub-contenttype": "application/json", "iothub-contentencoding": "utf-8"})
        if r.status_code >= 300:
            raise SimulateError(f"IoT Hub refused the message: HTTP {r.status_code} {r.text[:200]}")

    # L3 hot
    def stored(self, msg: Message) -> bool:
        if self._container is None:
            from azure.cosmos import CosmosClient
            from azure.cosmos.documents import SSLConfiguration
            from azure.mgmt.cosmosdb import CosmosDBManagementClient

            mgmt = CosmosDBManagementClient(self.cred, self.sub, **self.kw)
            name = self.naming.cosmos_account()
            account = self._arm(f"Cosmos DB account {name}", lambda: mgmt.database_accounts.get(self.rg, name))
            keys = self._arm(f"keys of {name}", lambda: mgmt.database_accounts.list_keys(self.rg, name))
            # azure-cosmos skips TLS verification for 127.0.0.1 (its emulator) unless given an
            # SSL configuration: give it one, so the sandbox's certificate is checked.
            ssl_config = SSLConfiguration()
            ssl_config.SSLCaCerts = self.ca
            client = CosmosClient(account.document_endpoint, credential=keys.primary_master_key,
                                  ssl_config=ssl_config, connection_verify=self.ca)
            self._container = client.get_database_client(self.naming.COSMOS_DATABASE).get_container_client(
                self.naming.COSMOS_CONTAINER)
        items = list(self._container.query_items(
            "SELECT c.id FROM c WHERE c.device_id = @d AND c.timestamp = @t",
            parameters=[{"name": "@d", "value": msg.device_id}, {"name": "@t", "value": msg.timestamp}],
            partition_key=msg.device_id))
        return bool(items)

    # L4
    def twin_updated(self, msg: Message) -> bool:
        from azure.core.exceptions import ResourceNotFoundError

        if self._twins is None:
            from azure.digitaltwins.core import DigitalTwinsClient
            from azure.mgmt.digitaltwins import AzureDigitalTwinsManagementClient

            mgmt = AzureDigitalTwinsManagementClient(self.cred, self.sub, **self.kw)
            name = self.naming.digital_twins()
            inst = self._arm(f"Digital Twins instance {name}", lambda: mgmt.digital_twins.get(self.rg, name))
            self._twins = DigitalTwinsClient(inst.host_name, self.cred, connection_verify=self.ca)
        try:
            twin = self._twins.get_digital_twin(msg.device_id)
        except ResourceNotFoundError:
            return False
        return all(_same(twin.get(adt_property_name(k)), v) for k, v in msg.values.items()
                   if isinstance(v, int | float | str | bool))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return abs(float(a) - float(b)) < 1e-9
    return bool(a == b)


# --- the run ----------------------------------------------------------------------------------


def simulate(messages: list[Message], send: Callable[[Message], None], stored: Callable[[Message], bool],
             twin: Callable[[Message], bool] | None, timeout: float) -> None:
    """Send one message at a time and wait for it, so the twin check sees its own values."""
    for msg in messages:
        try:
            send(msg)
        except Exception as exc:  # one failed send is reported, the rest still go
            msg.errors.append(f"send failed: {_reason(exc)}")
            continue
        msg.sent_at = time.time()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if msg.stored_at is None and stored(msg):
                    msg.stored_at = time.time()
                if twin is not None and msg.twin_at is None and twin(msg):
                    msg.twin_at = time.time()
            except SimulateError:
                raise
            except Exception as exc:
                msg.errors.append(f"poll failed: {_reason(exc)}")
                break
            if msg.stored_at is not None and (twin is None or msg.twin_at is not None):
                break
            time.sleep(POLL_SECONDS)
        if msg.stored_at is None and not msg.errors:
            msg.errors.append(f"not in hot storage after {timeout:g} s")
        if twin is not None and msg.twin_at is None and not any("twin" in e for e in msg.errors):
            msg.errors.append(f"twin not updated after {timeout:g} s")


def receive_feedback(gcp: Gcp, devices: list[str], wait: float) -> dict[str, list[dict[str, Any]]]:
    """Each device's feedback, pulled until `wait` seconds have passed (at least once)."""
    received: dict[str, list[dict[str, Any]]] = {d: [] for d in devices}
    deadline = time.monotonic() + max(wait, 0.0)
    while True:
        for device in devices:
            received[device] += gcp.feedback(device)
        if time.monotonic() >= deadline:
            return received
        time.sleep(POLL_SECONDS * 4)


def _reason(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        return f"{response['Error'].get('Code')}: {response['Error'].get('Message')}"
    return f"{type(exc).__name__}: {exc}"[:300]


def _select_devices(spec: Any, wanted: list[str] | None) -> list[str]:
    known = [d.id for d in spec.devices]
    if not wanted:
        return known
    unknown = [d for d in wanted if d not in known]
    if unknown:
        raise SimulateError(f"--device: {', '.join(unknown)} not in the spec (devices: {', '.join(known)})")
    return list(dict.fromkeys(wanted))


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    from shared.loaders import load_spec

    if args.count < 1:
        print("--count: must be at least 1", file=err)
        return EXIT_INVALID
    if args.timeout <= 0:
        print("--timeout: must be positive", file=err)
        return EXIT_INVALID
    try:
        spec = load_spec(args.spec)
    except SpecError as exc:
        for problem in exc.problems:
            print(f"{problem.path or '(root)'}: {problem.message}", file=err)
        return EXIT_INVALID
    try:
        devices = _select_devices(spec, args.device)
        payloads = args.payloads
        if payloads is None and Path(args.spec).is_dir() and (Path(args.spec) / PAYLOADS_FILE).is_file():
            payloads = Path(args.spec) / PAYLOADS_FILE
        bodies = (messages_from_file(payloads, args.device and devices, args.count) if payloads
                  else messages_from_spec(spec, devices, args.count))
        if not bodies:
            raise SimulateError("no messages to send (no payload matches the selected devices)")
        messages = build_messages(bodies)
        endpoints = Endpoints(args.sandbox)
        twin_name = spec.twin.name
        l1 = str(spec.providers.layer_1_provider)
        hot = str(spec.providers.layer_3_hot_provider)
        l4 = str(spec.providers.layer_4_provider)
        clouds: dict[str, Any] = {}

        def cloud(name: str) -> Any:
            if name not in clouds:
                if name == "aws":
                    clouds[name] = Aws(endpoints, twin_name)
                elif name == "azure":
                    clouds[name] = Azure(endpoints, twin_name)
                else:
                    clouds[name] = Gcp(endpoints, twin_name)
            return clouds[name]

        sender = cloud(l1)
        store = cloud(hot)
        twin_check: Callable[[Message], bool] | None = None
        note = ""
        if l4 == "azure":
            twin_check = cloud("azure").twin_updated
        elif l4 == "aws":
            note = "TwinMaker reads hot storage when asked (pull): current once stored"
        simulate(messages, sender.send, store.stored, twin_check, args.timeout)
        feedback = receive_feedback(sender, sorted({m.device_id for m in messages}), args.feedback_wait) \
            if isinstance(sender, Gcp) else None
    except SimulateError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_FAILED
    for msg in messages:
        msg.twin_note = note
        if note and msg.stored_at is not None:
            msg.twin_at = msg.stored_at
    ok = all(not m.errors for m in messages)
    report: dict[str, Any] = {"twin": twin_name, "l1": l1, "hot_storage": hot, "twins": l4, "ok": ok,
                              "messages": [m.to_json() for m in messages]}
    if feedback is not None:
        report["feedback"] = feedback
    if args.json:
        out.write(json.dumps(report, indent=2) + "\n")
    else:
        render(report, out)
    return EXIT_OK if ok else EXIT_FAILED


def render(report: dict[str, Any], out: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{report['twin']}: L1 {report['l1']} -> hot storage {report['hot_storage']} "
                        f"-> twins {report['twins']}")
    for column in ("#", "device", "timestamp", "sent", "stored (ms)", "twin (ms)", "problems"):
        table.add_column(column)
    for m in report["messages"]:
        table.add_row(
            str(m["index"]), m["device_id"], m["timestamp"], m["sent_at"] or "-",
            "-" if m["stored_ms"] is None else f"{m['stored_ms']:.0f}",
            m["twin_note"] and "pull" or ("-" if m["twin_ms"] is None else f"{m['twin_ms']:.0f}"),
            "; ".join(m["errors"]) or "",
        )
    console = Console(file=out, width=160)
    console.print(table)
    if report["messages"] and report["messages"][0]["twin_note"]:
        console.print(f"twin: {report['messages'][0]['twin_note']}")
    for device, received in (report.get("feedback") or {}).items():
        if received:
            console.print(f"feedback to {device}: " + ", ".join(
                json.dumps(r["message"].get("payload") if isinstance(r["message"], dict) else r["message"])
                for r in received))
    done = sum(1 for m in report["messages"] if not m["errors"])
    console.print(f"{done}/{len(report['messages'])} messages arrived")
