"""State and delivery engine of the sandbox's Event Grid: topics, system topics, subscriptions.

ARM creates topics, system topics and event subscriptions; the hooks here keep what delivery
needs. Published events are matched against each subscription's filter and queued per
subscription; one worker per subscription delivers them in order (webhook or Azure Function
destination), retrying 429/5xx/connection errors with a bounded backoff, and records each
outcome so tests can see what was delivered and what was dead-lettered.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import secrets
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from sandbox.core.context import SandboxContext

TOPIC_TYPE = "Microsoft.EventGrid/topics"
SYSTEM_TOPIC_TYPE = "Microsoft.EventGrid/systemTopics"
# System topic types carrying Azure Resource Manager's resource events (lower case).
RESOURCE_TOPIC_TYPES = frozenset({"microsoft.resources.subscriptions", "microsoft.resources.resourcegroups"})
# Extension subscriptions on a custom topic, and the nested forms (ARM names both ways).
SUBSCRIPTION_TYPES = (
    "Microsoft.EventGrid/eventSubscriptions",
    "Microsoft.EventGrid/topics/eventSubscriptions",
    "Microsoft.EventGrid/systemTopics/eventSubscriptions",
)
URL_PREFIX = "/eventgrid"
EVENTGRID_DATA_SENDER_ROLE = "d5a91429-5739-47e2-a06b-3470a27159e7"

EVENTGRID_SCHEMA = "EventGridSchema"
CLOUDEVENT_SCHEMA = "CloudEventSchemaV1_0"
CUSTOM_SCHEMA = "CustomEventSchema"
CUSTOM_INPUT_SCHEMA = "CustomInputSchema"

# Event Grid retries for up to 30 attempts over 24 h; the sandbox keeps the same order and
# semantics but bounds attempts and waits so tests and demos finish in seconds.
SANDBOX_MAX_ATTEMPTS = 6
HOST_START_WAIT_SECONDS = 20.0  # a deployed app's local host starts in about 1-3 s
BACKOFF_START_SECONDS = 0.02
BACKOFF_CAP_SECONDS = 0.5
RETRY_AFTER_CAP_SECONDS = 2.0
DELIVERY_TIMEOUT_SECONDS = 10.0
VALIDATION_WAIT_SECONDS = 15.0
KEPT_RECORDS = 5000
MAX_REQUEST_BYTES = 1024 * 1024


def _now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def new_key() -> str:
    """A 44-character base64 key, like Event Grid's (the SAS signature decodes it as base64)."""
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


@dataclass
class Topic:
    resource_id: str
    name: str
    kind: str  # "custom" | "system"
    endpoint_name: str = ""  # path segment under /eventgrid/ (custom topics)
    input_schema: str = EVENTGRID_SCHEMA
    key1: str = ""
    key2: str = ""
    source: str = ""  # system topics: the resource whose events they carry
    topic_type: str = ""
    published: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=KEPT_RECORDS))


@dataclass
class Subscription:
    resource_id: str
    name: str
    topic_id: str  # lower-case resource id of the topic it belongs to
    destination: dict[str, Any]
    filter: dict[str, Any]
    delivery_schema: str
    max_events_per_batch: int = 1
    max_attempts: int = SANDBOX_MAX_ATTEMPTS
    # "none" (no handshake needed), "pending", "validated" or "failed"
    validation: str = "none"
    validation_detail: str = ""
    validation_code: str = ""
    queue: deque[dict[str, Any]] = field(default_factory=deque)
    wakeup: asyncio.Event | None = None
    validated: asyncio.Event | None = None
    worker: asyncio.Task[None] | None = None

    @property
    def endpoint_type(self) -> str:
        return str(self.destination.get("endpointType", ""))


@dataclass(frozen=True)
class DeliveryRecord:
    topic: str  # topic name
    topic_id: str
    subscription: str
    subscription_id: str
    destination: str  # URL without query (the function key never shows)
    events: list[dict[str, Any]]
    status: int | None
    attempts: int
    outcome: str  # "delivered" | "dead-lettered"
    reason: str = ""
    at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "topic_id": self.topic_id,
            "subscription": self.subscription,
            "subscription_id": self.subscription_id,
            "destination": self.destination,
            "events": self.events,
            "status": self.status,
            "attempts": self.attempts,
            "outcome": self.outcome,
            "reason": self.reason,
            "at": self.at,
        }


class EventGridError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def arm_secrets(ctx: SandboxContext, resource_id: str) -> dict[str, str] | None:
    """ARM's secrets of a resource (a topic's key1/key2, a webhook's full `endpoint_url`), which the
    sandbox's ARM keeps out of resource bodies. ARM owns them, as in Azure: listKeys answers them
    and the data plane checks against them. None when no ARM store holds the resource."""
    try:
        from sandbox.arm.models import arm_backend
    except ImportError:
        return None
    res = arm_backend(ctx).resources.get(resource_id.rstrip("/").lower())
    return res.secrets if res is not None else None


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


# --- event shapes and filters ------------------------------------------------------------------

EG_REQUIRED = ("id", "subject", "eventType", "eventTime", "dataVersion")
CE_REQUIRED = ("id", "source", "type", "specversion")


def check_eventgrid_event(event: Any, index: int) -> list[str]:
    if not isinstance(event, dict):
        return [f"events[{index}]: an Event Grid event must be a JSON object."]
    problems = [f"events[{index}]: Required property '{p}' was not set." for p in EG_REQUIRED if p not in event]
    for p in ("id", "subject", "eventType", "dataVersion"):
        if p in event and not isinstance(event[p], str):
            problems.append(f"events[{index}]: '{p}' must be a string.")
    if isinstance(event.get("eventTime"), str):
        try:
            datetime.fromisoformat(event["eventTime"].replace("Z", "+00:00"))
        except ValueError:
            problems.append(f"events[{index}]: 'eventTime' {event['eventTime']!r} is not an ISO 8601 date-time.")
    return problems


def check_cloud_event(event: Any, index: int) -> list[str]:
    if not isinstance(event, dict):
        return [f"events[{index}]: a CloudEvent must be a JSON object."]
    problems = [f"events[{index}]: Required attribute '{p}' was not set." for p in CE_REQUIRED if p not in event]
    if "specversion" in event and event["specversion"] != "1.0":
        problems.append(f"events[{index}]: 'specversion' must be '1.0'.")
    return problems


def eventgrid_to_cloud_event(event: dict[str, Any]) -> dict[str, Any]:
    """Event Grid's own mapping when a subscription asks for CloudEvents from an Event Grid schema topic."""
    ce: dict[str, Any] = {
        "id": event.get("id"),
        "source": event.get("topic", ""),
        "specversion": "1.0",
        "type": event.get("eventType"),
        "subject": event.get("subject"),
        "time": event.get("eventTime"),
    }
    if "data" in event:
        ce["data"] = event["data"]
    if event.get("dataVersion"):
        ce["dataschema"] = "#" + str(event["dataVersion"])
    return ce


def _event_type(event: dict[str, Any]) -> str:
    return str(event.get("eventType") or event.get("type") or "")


def _lookup(event: dict[str, Any], key: str) -> Any:
    aliases = {"eventtype": ("eventType", "type"), "type": ("type", "eventType"), "source": ("source", "topic")}
    candidates = aliases.get(key.lower(), (key,))
    for cand in candidates:
        cur: Any = event
        ok = True
        for part in cand.split("."):
            if isinstance(cur, dict) and part in cur:
                cur = cur[part]
            else:
                ok = False
                break
        if ok:
            return cur
    return _MISSING


_MISSING = object()


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


ADVANCED_OPERATORS: dict[str, Callable[[Any, dict[str, Any]], bool]] = {
    "StringIn": lambda v, f: isinstance(v, str) and v.lower() in {str(x).lower() for x in f.get("values", [])},
    "StringNotIn": lambda v, f: not (isinstance(v, str) and v.lower() in {str(x).lower() for x in f.get("values", [])}),
    "StringBeginsWith": lambda v, f: isinstance(v, str) and any(v.lower().startswith(str(x).lower()) for x in f.get("values", [])),
    "StringEndsWith": lambda v, f: isinstance(v, str) and any(v.lower().endswith(str(x).lower()) for x in f.get("values", [])),
    "StringContains": lambda v, f: isinstance(v, str) and any(str(x).lower() in v.lower() for x in f.get("values", [])),
    "NumberIn": lambda v, f: _num(v) is not None and _num(v) in {float(x) for x in f.get("values", [])},
    "NumberNotIn": lambda v, f: not (_num(v) is not None and _num(v) in {float(x) for x in f.get("values", [])}),
    "NumberGreaterThan": lambda v, f: (n := _num(v)) is not None and n > float(f.get("value", 0)),
    "NumberGreaterThanOrEquals": lambda v, f: (n := _num(v)) is not None and n >= float(f.get("value", 0)),
    "NumberLessThan": lambda v, f: (n := _num(v)) is not None and n < float(f.get("value", 0)),
    "NumberLessThanOrEquals": lambda v, f: (n := _num(v)) is not None and n <= float(f.get("value", 0)),
    "BoolEquals": lambda v, f: isinstance(v, bool) and v == f.get("value"),
    "IsNotNull": lambda v, f: v is not _MISSING and v is not None,
    "IsNullOrUndefined": lambda v, f: v is _MISSING or v is None,
}


def filter_matches(flt: dict[str, Any], event: dict[str, Any]) -> bool:
    """Event Grid's subscription filter: event types, subject prefix/suffix, advanced filters."""
    included = flt.get("includedEventTypes")
    etype = _event_type(event)
    if included and not any(str(t).lower() in ("all", etype.lower()) for t in included):
        return False
    subject = str(event.get("subject") or "")
    begins = str(flt.get("subjectBeginsWith") or "")
    ends = str(flt.get("subjectEndsWith") or "")
    if not flt.get("isSubjectCaseSensitive", False):
        subject, begins, ends = subject.lower(), begins.lower(), ends.lower()
    if not subject.startswith(begins) or not subject.endswith(ends):
        return False
    for adv in flt.get("advancedFilters") or []:
        if not isinstance(adv, dict):
            continue
        op = ADVANCED_OPERATORS.get(str(adv.get("operatorType")))
        if op is None:
            return False
        if not op(_lookup(event, str(adv.get("key", ""))), adv):
            return False
    return True


# --- the backend --------------------------------------------------------------------------------


def _system_event(topic: str, event_type: str, subject: str, data: Any, data_version: str) -> dict[str, Any]:
    """One event in the Event Grid schema, as an Azure resource raises it."""
    return {
        "id": str(uuid.uuid4()),
        "topic": topic,
        "subject": subject,
        "eventType": event_type,
        "eventTime": _now_iso(),
        "data": data,
        "dataVersion": data_version,
        "metadataVersion": "1",
    }


class _Hooks:
    """ARM hooks for one resource type, forwarding to the backend."""

    def __init__(
        self, owner: object, put: Callable[[str, dict[str, Any]], None], delete: Callable[[str], None]
    ) -> None:
        self.owner = owner  # the EventGridBackend, so `backend(ctx)` can find it from the hook registry
        self._put = put
        self._delete = delete

    def on_put(self, resource_id: str, resource: dict[str, Any]) -> None:
        self._put(resource_id, resource)

    def on_delete(self, resource_id: str) -> None:
        self._delete(resource_id)


class EventGridBackend:
    """Every topic, system topic and subscription of one sandbox, and their deliveries."""

    def __init__(self, ctx: SandboxContext) -> None:
        self.ctx = ctx
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self.topics: dict[str, Topic] = {}  # lower-case resource id -> topic
        self._by_endpoint: dict[str, str] = {}  # endpoint name -> topic key
        self.subscriptions: dict[str, Subscription] = {}  # lower-case resource id -> subscription
        self.records: deque[DeliveryRecord] = deque(maxlen=KEPT_RECORDS)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # validations in flight (held so they are not collected)
        self.topic_hooks = _Hooks(self, self._put_topic, self._delete_topic)
        self.system_topic_hooks = _Hooks(self, self._put_system_topic, self._delete_topic)
        self.subscription_hooks = _Hooks(self, self._put_subscription, self._delete_subscription)

    # --- lifecycle (on the server's loop) -------------------------------------------------------

    async def attach(self) -> None:
        self.loop = asyncio.get_running_loop()
        if self.session is None or self.session.closed:
            # Trust the sandbox's own CA too, so HTTPS destinations served by the sandbox verify.
            ca = self.ctx.state_dir / "ca.pem"
            ssl_ctx = ssl.create_default_context(cafile=str(ca)) if ca.is_file() else True
            self.session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT_SECONDS),
                connector=aiohttp.TCPConnector(ssl=ssl_ctx),
            )
        with self._lock:
            subs = list(self.subscriptions.values())
        for sub in subs:
            self._ensure_worker(sub)
            if sub.validation == "pending":
                self._spawn_validation(sub)

    async def detach(self) -> None:
        with self._lock:
            workers = [s.worker for s in self.subscriptions.values() if s.worker is not None]
            for s in self.subscriptions.values():
                s.worker = None
                s.wakeup = None
                s.validated = None
        workers.extend(self._tasks)
        for w in workers:
            w.cancel()
        for w in workers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await w
        if self.session is not None:
            await self.session.close()
            self.session = None
        self.loop = None

    def _on_loop(self, fn: Callable[[], None]) -> bool:
        """Run `fn` on the server's loop (now if we are on it); False if the server is not running."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return False
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            fn()
        else:
            loop.call_soon_threadsafe(fn)
        return True

    def reset(self) -> None:
        with self._lock:
            subs = list(self.subscriptions.values())
            self.subscriptions.clear()
            self.topics.clear()
            self._by_endpoint.clear()
            self.records.clear()
            self._changed.notify_all()
        for sub in subs:
            self._stop_worker(sub)

    # --- ARM hooks ------------------------------------------------------------------------------

    def _topic_endpoint(self, topic: Topic) -> str:
        base = self.ctx.azure_base_url.rstrip("/") or "https://127.0.0.1"
        return f"{base}{URL_PREFIX}/{topic.endpoint_name}/api/events"

    def _put_topic(self, resource_id: str, resource: dict[str, Any]) -> None:
        key = resource_id.rstrip("/").lower()
        props = resource.setdefault("properties", {})
        with self._lock:
            topic = self.topics.get(key)
            if topic is None:
                name = resource_id.rstrip("/").rsplit("/", 1)[-1]
                endpoint_name = name.lower()
                n = 1
                while endpoint_name in self._by_endpoint:  # same name in another resource group
                    n += 1
                    endpoint_name = f"{name.lower()}-{n}"
                topic = Topic(
                    resource_id=resource_id.rstrip("/"),
                    name=name,
                    kind="custom",
                    endpoint_name=endpoint_name,
                    input_schema=str(props.get("inputSchema") or EVENTGRID_SCHEMA),
                    key1=new_key(),
                    key2=new_key(),
                )
                self.topics[key] = topic
                self._by_endpoint[endpoint_name] = key
        props["endpoint"] = self._topic_endpoint(topic)
        props["inputSchema"] = topic.input_schema
        props.setdefault("publicNetworkAccess", "Enabled")
        props.setdefault("metricResourceId", str(uuid.uuid5(uuid.NAMESPACE_URL, key)))

    def _put_system_topic(self, resource_id: str, resource: dict[str, Any]) -> None:
        key = resource_id.rstrip("/").lower()
        props = resource.setdefault("properties", {})
        with self._lock:
            topic = self.topics.get(key)
            if topic is None:
                topic = Topic(resource_id=resource_id.rstrip("/"), name=resource_id.rstrip("/").rsplit("/", 1)[-1], kind="system")
                self.topics[key] = topic
            topic.source = str(props.get("source") or topic.source)
            topic.topic_type = str(props.get("topicType") or topic.topic_type)
        props.setdefault("metricResourceId", str(uuid.uuid5(uuid.NAMESPACE_URL, key)))

    def _delete_topic(self, resource_id: str) -> None:
        key = resource_id.rstrip("/").lower()
        with self._lock:
            topic = self.topics.pop(key, None)
            if topic is not None and topic.endpoint_name:
                self._by_endpoint.pop(topic.endpoint_name, None)
            subs = [s for s in self.subscriptions.values() if s.topic_id == key]
            for s in subs:
                self.subscriptions.pop(s.resource_id.lower(), None)
        for s in subs:
            self._stop_worker(s)

    def _subscription_scope(self, resource_id: str) -> str:
        """The topic a subscription belongs to: `<topic>/providers/Microsoft.EventGrid/eventSubscriptions/<n>`
        or `<system topic>/eventSubscriptions/<n>`."""
        rid = resource_id.rstrip("/")
        lower = rid.lower()
        marker = "/providers/microsoft.eventgrid/eventsubscriptions/"
        if marker in lower:
            return rid[: lower.rindex(marker)].lower()
        return rid[: lower.rindex("/eventsubscriptions/")].lower()

    def _put_subscription(self, resource_id: str, resource: dict[str, Any]) -> None:
        props = resource.setdefault("properties", {})
        topic_id = self._subscription_scope(resource_id)
        destination = copy.deepcopy(props.get("destination") or {})
        dest_props = destination.setdefault("properties", {})
        if destination.get("endpointType") == "WebHook" and not dest_props.get("endpointUrl"):
            # ARM strips the full URL from the body (it may carry a secret) and keeps it aside.
            url = (arm_secrets(self.ctx, resource_id) or {}).get("endpoint_url")
            if url:
                dest_props["endpointUrl"] = url
        retry = props.get("retryPolicy") or {}
        schema = str(props.get("eventDeliverySchema") or "")
        with self._lock:
            topic = self.topics.get(topic_id)
            if not schema:
                schema = CLOUDEVENT_SCHEMA if topic is not None and topic.input_schema == CLOUDEVENT_SCHEMA else EVENTGRID_SCHEMA
            key = resource_id.rstrip("/").lower()
            sub = self.subscriptions.get(key)
            new_destination = sub is None or sub.destination != destination or sub.delivery_schema != schema
            if sub is None:
                sub = Subscription(
                    resource_id=resource_id.rstrip("/"),
                    name=resource_id.rstrip("/").rsplit("/", 1)[-1],
                    topic_id=topic_id,
                    destination=destination,
                    filter={},
                    delivery_schema=schema,
                )
                self.subscriptions[key] = sub
            sub.destination = destination
            sub.filter = copy.deepcopy(props.get("filter") or {})
            sub.delivery_schema = schema
            sub.max_events_per_batch = max(1, int(dest_props.get("maxEventsPerBatch") or 1))
            sub.max_attempts = max(1, min(int(retry.get("maxDeliveryAttempts") or SANDBOX_MAX_ATTEMPTS), SANDBOX_MAX_ATTEMPTS))
            if new_destination:
                sub.validation = "pending" if sub.endpoint_type == "WebHook" else "none"
                sub.validation_detail = ""
                sub.validation_code = str(uuid.uuid4())
        props["topic"] = topic.resource_id if topic is not None else topic_id
        props["eventDeliverySchema"] = schema
        if sub.endpoint_type == "WebHook" and isinstance(dest_props.get("endpointUrl"), str):
            dest = props.setdefault("destination", {}).setdefault("properties", {})
            dest.pop("endpointUrl", None)  # never echoed by ARM
            dest["endpointBaseUrl"] = _redact_url(dest_props["endpointUrl"])
        self._on_loop(lambda: self._start_subscription(sub, new_destination))

    def _start_subscription(self, sub: Subscription, revalidate: bool) -> None:
        if sub.validated is None:
            sub.validated = asyncio.Event()
        if sub.validation in ("none", "validated"):
            sub.validated.set()
        else:
            sub.validated.clear()
        self._ensure_worker(sub)
        if revalidate and sub.validation == "pending":
            self._spawn_validation(sub)

    def _spawn_validation(self, sub: Subscription) -> None:
        if self.loop is None:
            return
        task = self.loop.create_task(self._validate(sub))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _delete_subscription(self, resource_id: str) -> None:
        with self._lock:
            sub = self.subscriptions.pop(resource_id.rstrip("/").lower(), None)
        if sub is not None:
            self._stop_worker(sub)

    def _stop_worker(self, sub: Subscription) -> None:
        worker = sub.worker
        sub.worker = None
        if worker is not None:
            self._on_loop(lambda: None if worker.cancel() else None)

    # --- lookups for the data plane and for tests -----------------------------------------------

    def topic_by_endpoint(self, endpoint_name: str) -> Topic | None:
        with self._lock:
            key = self._by_endpoint.get(endpoint_name.lower())
            return self.topics.get(key) if key else None

    def find_topic(self, name_or_id: str) -> Topic:
        with self._lock:
            t = self.topics.get(name_or_id.rstrip("/").lower())
            if t is not None:
                return t
            matches = [t for t in self.topics.values() if t.name.lower() == name_or_id.lower()]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise KeyError(f"no Event Grid topic or system topic named {name_or_id!r}")
        raise KeyError(f"several topics are named {name_or_id!r}; pass the resource id")

    def find_subscription(self, name_or_id: str) -> Subscription:
        with self._lock:
            s = self.subscriptions.get(name_or_id.rstrip("/").lower())
            if s is not None:
                return s
            matches = [s for s in self.subscriptions.values() if s.name.lower() == name_or_id.lower()]
        if len(matches) == 1:
            return matches[0]
        raise KeyError(f"no single event subscription named {name_or_id!r}")

    def topic_keys(self, topic: Topic) -> tuple[str, str]:
        """The topic's current keys: ARM's when ARM holds the topic (listKeys answers those), else ours."""
        secrets = arm_secrets(self.ctx, topic.resource_id)
        if secrets and secrets.get("key1") and secrets.get("key2"):
            return secrets["key1"], secrets["key2"]
        return topic.key1, topic.key2

    def keys(self, topic_resource_id: str) -> dict[str, str]:
        topic = self.find_topic(topic_resource_id)
        if topic.kind != "custom":
            raise KeyError(f"{topic_resource_id} is a system topic; it has no access keys")
        key1, key2 = self.topic_keys(topic)
        return {"key1": key1, "key2": key2}

    def regenerate_key(self, topic_resource_id: str, key_name: str) -> dict[str, str]:
        topic = self.find_topic(topic_resource_id)
        name = key_name.lower()
        if name not in ("key1", "key2"):
            raise ValueError(f"keyName must be key1 or key2, not {key_name!r}")
        with self._lock:
            secrets = arm_secrets(self.ctx, topic.resource_id)
            if secrets is not None and name in secrets:
                secrets[name] = new_key()
            setattr(topic, name, new_key())
        return self.keys(topic_resource_id)

    def deliveries(self, topic: str | None = None, outcome: str | None = "delivered") -> list[dict[str, Any]]:
        key = self.find_topic(topic).resource_id.lower() if topic else None
        with self._lock:
            return [
                r.to_json()
                for r in self.records
                if (key is None or r.topic_id.lower() == key) and (outcome is None or r.outcome == outcome)
            ]

    def wait_for(
        self, topic: str | None, count: int, timeout: float = 10.0, outcome: str | None = "delivered"
    ) -> list[dict[str, Any]]:
        """Block (outside the server's loop) until `count` records exist; returns them all."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                records = self.deliveries(topic, outcome)
                if len(records) >= count:
                    return records
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{len(records)} of {count} {outcome or 'delivery'} record(s) for {topic or 'all topics'} "
                        f"after {timeout} s"
                    )
                self._changed.wait(left)

    def published(self, topic: str) -> list[dict[str, Any]]:
        t = self.find_topic(topic)
        with self._lock:
            return [copy.deepcopy(e) for e in t.published]

    def _record(self, rec: DeliveryRecord) -> None:
        with self._changed:
            self.records.append(rec)
            self._changed.notify_all()

    # --- publishing -----------------------------------------------------------------------------

    def accept(self, topic: Topic, events: list[dict[str, Any]], schema: str) -> None:
        """Queue accepted events for every matching subscription of `topic` (on the server's loop)."""
        with self._lock:
            topic.published.extend(copy.deepcopy(events))
            subs = [s for s in self.subscriptions.values() if s.topic_id == topic.resource_id.lower()]
        for sub in subs:
            matched = [e for e in events if filter_matches(sub.filter, e)]
            if not matched:
                continue
            if schema == CLOUDEVENT_SCHEMA and sub.delivery_schema == EVENTGRID_SCHEMA:
                self._record(
                    DeliveryRecord(
                        topic.name, topic.resource_id, sub.name, sub.resource_id, "", matched, None, 0, "dead-lettered",
                        "the topic takes CloudEvents, which Event Grid cannot deliver in EventGridSchema; set "
                        "eventDeliverySchema to CloudEventSchemaV1_0",
                        time.time(),
                    )
                )
                continue
            if schema == EVENTGRID_SCHEMA and sub.delivery_schema == CLOUDEVENT_SCHEMA:
                matched = [eventgrid_to_cloud_event(e) for e in matched]
            sub.queue.extend(copy.deepcopy(matched))
            self._ensure_worker(sub)
            if sub.wakeup is not None:
                sub.wakeup.set()

    def publish_system_event(
        self, source_resource_id: str, event_type: str, subject: str, data: Any, data_version: str = ""
    ) -> list[str]:
        """Raise an event from an Azure resource (e.g. `Microsoft.Devices.DeviceTelemetry` from an
        IoT Hub) into every system topic whose source it is. Returns the topics reached.
        Callable from any thread."""
        source = source_resource_id.rstrip("/").lower()
        topics = self._system_topics(lambda t: t.source.lower() == source)
        for t in topics:
            if not self._on_loop(self._accept_later(t, [_system_event(source_resource_id, event_type, subject, data,
                                                                      data_version)])):
                raise RuntimeError("the sandbox's Azure server is not running, so Event Grid cannot deliver")
        return [t.resource_id for t in topics]

    def publish_resource_event(self, event_type: str, resource_id: str, operation: str) -> list[str]:
        """Azure Resource Manager's `Microsoft.Resources.Resource*Success` for one resource, into the
        system topics of type Resources.Subscriptions / Resources.ResourceGroups whose scope holds
        it (shaped as Azure sends it: subject and `data.resourceUri` are the resource id).
        Callable from any thread; without such topics it does nothing."""
        rid = resource_id.rstrip("/")
        lower = rid.lower()
        topics = self._system_topics(lambda t: t.topic_type.lower() in RESOURCE_TOPIC_TYPES and (
            lower == t.source.lower().rstrip("/") or lower.startswith(t.source.lower().rstrip("/") + "/")))
        parts = rid.split("/")
        data = {
            "resourceProvider": parts[parts.index("providers") + 1] if "providers" in parts[:-1] else "Microsoft.Resources",
            "resourceUri": rid,
            "operationName": operation,
            "status": "Succeeded",
            "subscriptionId": parts[2] if len(parts) > 2 else "",
            "tenantId": self.ctx.tenant_id,
        }
        reached = []
        for t in topics:
            event = _system_event(t.source, event_type, rid, {**data, "correlationId": str(uuid.uuid4())}, "2")
            if self._on_loop(self._accept_later(t, [event])):
                reached.append(t.resource_id)
        return reached

    def _system_topics(self, matches: Callable[[Topic], bool]) -> list[Topic]:
        with self._lock:
            return [t for t in self.topics.values() if t.kind == "system" and matches(t)]

    def _accept_later(self, topic: Topic, events: list[dict[str, Any]]) -> Callable[[], None]:
        return lambda: self.accept(topic, events, EVENTGRID_SCHEMA)

    # --- delivery -------------------------------------------------------------------------------

    def _ensure_worker(self, sub: Subscription) -> None:
        if self.loop is None:
            return
        if sub.wakeup is None:
            sub.wakeup = asyncio.Event()
        if sub.validated is None:
            sub.validated = asyncio.Event()
            if sub.validation in ("none", "validated"):
                sub.validated.set()
        if sub.worker is None or sub.worker.done():
            sub.worker = self.loop.create_task(self._work(sub))

    async def _work(self, sub: Subscription) -> None:
        assert sub.wakeup is not None and sub.validated is not None
        while True:
            if not sub.queue:
                sub.wakeup.clear()
                await sub.wakeup.wait()
                continue
            if sub.validation == "pending":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(sub.validated.wait(), VALIDATION_WAIT_SECONDS)
            batch = [sub.queue.popleft() for _ in range(min(sub.max_events_per_batch, len(sub.queue)))]
            await self._deliver(sub, batch)

    def _topic_of(self, sub: Subscription) -> Topic | None:
        with self._lock:
            return self.topics.get(sub.topic_id)

    def _target(self, sub: Subscription) -> tuple[str | None, str]:
        """(URL to POST, reason when there is none)."""
        props = sub.destination.get("properties") or {}
        if sub.endpoint_type == "WebHook":
            url = props.get("endpointUrl")
            return (url, "") if isinstance(url, str) and url else (None, "the webhook has no endpointUrl")
        if sub.endpoint_type == "AzureFunction":
            rid = str(props.get("resourceId") or "")
            lower = rid.lower()
            if "/functions/" not in lower:
                return None, f"{rid!r} is not a function resource id (.../sites/<app>/functions/<name>)"
            site_id, function_name = rid[: lower.index("/functions/")], rid[lower.index("/functions/") + len("/functions/") :]
            host = self.ctx.function_hosts.get(site_id.lower())
            if host is None:
                site_name = site_id.rsplit("/", 1)[-1].lower()
                host = next((h for k, h in self.ctx.function_hosts.items() if k.rsplit("/", 1)[-1] == site_name), None)
            if host is None:
                return None, f"no local Function host is registered for {site_id}"
            url = f"{host.base_url.rstrip('/')}/runtime/webhooks/eventgrid?functionName={function_name}"
            if host.master_key:
                url += f"&code={host.master_key}"
            return url, ""
        return None, f"the destination type {sub.endpoint_type or '(none)'} is not served by the sandbox"

    def _payload(self, sub: Subscription, batch: list[dict[str, Any]]) -> tuple[Any, str]:
        if sub.delivery_schema == CLOUDEVENT_SCHEMA:
            if len(batch) == 1 and sub.max_events_per_batch == 1:
                return batch[0], "application/cloudevents+json; charset=utf-8"
            return batch, "application/cloudevents-batch+json; charset=utf-8"
        return batch, "application/json; charset=utf-8"

    async def _deliver(self, sub: Subscription, batch: list[dict[str, Any]]) -> None:
        topic = self._topic_of(sub)
        topic_name = topic.name if topic else sub.topic_id.rsplit("/", 1)[-1]
        topic_id = topic.resource_id if topic else sub.topic_id
        if sub.validation in ("failed", "pending"):
            why = (
                f"webhook validation failed: {sub.validation_detail}"
                if sub.validation == "failed"
                else f"the webhook was not validated within {VALIDATION_WAIT_SECONDS} s"
            )
            self._record(
                DeliveryRecord(topic_name, topic_id, sub.name, sub.resource_id, "", batch, None, 0, "dead-lettered",
                               why, time.time())
            )
            return
        body, content_type = self._payload(sub, batch)
        status: int | None = None
        reason = ""
        url: str | None = None
        attempt = 0
        await self._wait_for_starting_host(sub)
        while attempt < sub.max_attempts:
            attempt += 1
            url, reason = self._target(sub)
            retry_after = 0.0
            if url is not None:
                headers = {
                    "Content-Type": content_type,
                    "aeg-event-type": "Notification",
                    "aeg-subscription-name": sub.name.upper(),
                    "aeg-delivery-count": str(attempt - 1),
                    "aeg-metadata-version": "1",
                    "aeg-data-version": str(batch[0].get("dataVersion", "")) if batch else "",
                }
                try:
                    assert self.session is not None
                    async with self.session.post(url, data=json.dumps(body).encode(), headers=headers) as resp:
                        status = resp.status
                        await resp.read()
                        ra = resp.headers.get("Retry-After", "")
                        retry_after = float(ra) if ra.replace(".", "", 1).isdigit() else 0.0
                    if 200 <= status < 300:
                        self._record(
                            DeliveryRecord(topic_name, topic_id, sub.name, sub.resource_id, _redact_url(url), batch,
                                           status, attempt, "delivered", "", time.time())
                        )
                        return
                    reason = f"the destination answered {status}"
                    if status != 429 and status < 500 and status != 408:
                        break  # not retryable, as in Event Grid (400, 401, 403, 404, 413 ...)
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    status = None
                    reason = f"connection error: {type(exc).__name__}"
            if attempt < sub.max_attempts:
                backoff = min(BACKOFF_START_SECONDS * 2 ** (attempt - 1), BACKOFF_CAP_SECONDS)
                await asyncio.sleep(max(backoff, min(retry_after, RETRY_AFTER_CAP_SECONDS)))
        self._record(
            DeliveryRecord(topic_name, topic_id, sub.name, sub.resource_id, _redact_url(url) if url else "", batch,
                           status, attempt, "dead-lettered", reason, time.time())
        )

    async def _wait_for_starting_host(self, sub: Subscription) -> None:
        """Event Grid retries a Function destination for hours; the sandbox's retries last about a
        second. When the sandbox runs deployed apps (a `Microsoft.Web/sites` hook is installed) and
        the destination's host is not registered yet, it is most likely starting after a deploy:
        wait for it (bounded) instead of dead-lettering the first events after a deployment."""
        if sub.endpoint_type != "AzureFunction" or self.ctx.hooks_for("Microsoft.Web/sites") is None:
            return
        deadline = time.monotonic() + HOST_START_WAIT_SECONDS
        while self._target(sub)[0] is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)

    async def _validate(self, sub: Subscription) -> None:
        """Event Grid's endpoint validation: the SubscriptionValidationEvent handshake for Event Grid
        schema webhooks, the CloudEvents abuse-protection OPTIONS handshake for CloudEvents ones."""
        url, reason = self._target(sub)
        if self.session is None or url is None:
            self._set_validation(sub, "failed", reason or "the sandbox is not running")
            return
        try:
            if sub.delivery_schema == CLOUDEVENT_SCHEMA:
                origin = "eventgrid.azure.net"
                async with self.session.options(
                    url, headers={"WebHook-Request-Origin": origin, "WebHook-Request-Rate": "120"}
                ) as resp:
                    allowed = resp.headers.get("WebHook-Allowed-Origin", "")
                    if 200 <= resp.status < 300 and allowed.strip() in (origin, "*"):
                        self._set_validation(sub, "validated", "")
                    else:
                        self._set_validation(
                            sub, "failed",
                            f"OPTIONS answered {resp.status} with WebHook-Allowed-Origin {allowed!r}; expected 200 and "
                            f"{origin!r} or '*'",
                        )
                return
            topic = self._topic_of(sub)
            code = sub.validation_code
            validation_url = (
                f"{self.ctx.azure_base_url.rstrip('/')}{URL_PREFIX}/_validate/{sub.validation_code}?code={code}"
            )
            event = [
                {
                    "id": str(uuid.uuid4()),
                    "topic": topic.resource_id if topic else sub.topic_id,
                    "subject": "",
                    "data": {"validationCode": code, "validationUrl": validation_url},
                    "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                    "eventTime": _now_iso(),
                    "metadataVersion": "1",
                    "dataVersion": "2",
                }
            ]
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "aeg-event-type": "SubscriptionValidation",
                "aeg-subscription-name": sub.name.upper(),
                "aeg-delivery-count": "0",
                "aeg-metadata-version": "1",
                "aeg-data-version": "2",
            }
            async with self.session.post(url, data=json.dumps(event).encode(), headers=headers) as resp:
                text = await resp.text()
                answered = None
                with contextlib.suppress(ValueError):
                    doc = json.loads(text)
                    if isinstance(doc, dict):
                        answered = next((v for k, v in doc.items() if k.lower() == "validationresponse"), None)
                if resp.status == 200 and answered == code:
                    self._set_validation(sub, "validated", "")
                elif resp.status == 200 and answered is None and sub.validation == "pending":
                    # Manual validation: Event Grid waits for a GET of validationUrl (the worker
                    # holds events for VALIDATION_WAIT_SECONDS, then dead-letters them).
                    self._set_validation(sub, "pending", "awaiting a GET of the validationUrl")
                elif sub.validation != "validated":  # a manual GET of validationUrl may have won
                    self._set_validation(
                        sub, "failed",
                        f"the webhook answered {resp.status} without the validationResponse {code!r}",
                    )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._set_validation(sub, "failed", f"connection error during validation: {type(exc).__name__}")

    def validate_manually(self, code: str) -> bool:
        """The GET on a validationUrl (Event Grid's manual validation)."""
        with self._lock:
            sub = next((s for s in self.subscriptions.values() if s.validation_code == code), None)
        if sub is None:
            return False
        self._set_validation(sub, "validated", "")
        return True

    def _set_validation(self, sub: Subscription, state: str, detail: str) -> None:
        with self._changed:
            sub.validation = state
            sub.validation_detail = detail
            self._changed.notify_all()

        def wake() -> None:
            if sub.validated is not None and state != "pending":
                sub.validated.set()

        self._on_loop(wake)

    def validation_state(self, subscription: str, timeout: float = 0.0) -> str:
        """The handshake state of a subscription ("none", "pending", "validated", "failed"); waits up
        to `timeout` seconds for the subscription to exist and leave "pending"."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                try:
                    sub: Subscription | None = self.find_subscription(subscription)
                except KeyError:
                    sub = None
                if sub is not None and sub.validation != "pending":
                    return sub.validation
                left = deadline - time.monotonic()
                if left <= 0:
                    if sub is None:
                        raise KeyError(f"no single event subscription named {subscription!r}")
                    return sub.validation
                self._changed.wait(min(left, 0.05))
