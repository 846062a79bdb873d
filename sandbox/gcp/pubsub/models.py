"""Pub/Sub state and delivery: topics, subscriptions, published messages, push and pull.

Publishing (REST or gRPC) hands each message to every subscription of the topic. A push
subscription POSTs it to `pushConfig.pushEndpoint` (the wrapped envelope, or the message alone with
`noWrapper`) and counts 102/200/201/202/204 as the ack; anything else, or no answer within
`ackDeadlineSeconds`, is retried with exponential backoff between `retryPolicy.minimumBackoff` and
`maximumBackoff` (without a retry policy, Pub/Sub's push backoff: 100 ms doubling to 60 s) until the
message is acknowledged, the retention period ends or the subscription is deleted: at least once.

An Eventarc trigger's subscription (made by Cloud Functions for `eventTrigger.pubsubTopic`) delivers
what Eventarc sends a Cloud Run service: a binary-mode CloudEvent (`ce-*` headers,
`google.cloud.pubsub.topic.v1.messagePublished`), retried only with RETRY_POLICY_RETRY.
Pull subscriptions keep messages for `Pull` / `Acknowledge`, redelivered after the ack deadline.
A subscription's `filter` (`filters.py`) lets only matching messages through; it is fixed at create.
Delivery runs on the GCP sandbox's event loop; publishing may come from any thread.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from sandbox.core.profiles import Faults
from sandbox.gcp.common import (
    PROJECT_ID,
    GoogleError,
    duration_seconds,
    identity_token,
    now_rfc3339,
)
from sandbox.gcp.pubsub.filters import Predicate, compile_filter

log = logging.getLogger("sandbox.gcp.pubsub")

ACK_STATUSES = frozenset({102, 200, 201, 202, 204})
DEFAULT_ACK_DEADLINE = 10
DEFAULT_RETENTION_SECONDS = 7 * 86400
PUSH_BACKOFF = (0.1, 60.0)  # without a retry policy
EVENT_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"
NAME = re.compile(r"[A-Za-z][-A-Za-z0-9._~%+]{2,254}")
MAX_MESSAGE_BYTES = 10 * 1024 * 1024


def _check_name(kind: str, name: str) -> tuple[str, str]:
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != "projects" or parts[2] != kind or not NAME.fullmatch(parts[3]) \
            or parts[3].startswith("goog"):
        raise GoogleError("INVALID_ARGUMENT", f"Invalid resource name given (name={name}). Refer to "
                          "https://cloud.google.com/pubsub/docs/pubsub-basics#resource_names for more information.")
    if parts[1] != PROJECT_ID:
        raise GoogleError("NOT_FOUND", f"Requested project not found or user does not have access to it "
                          f"(project={parts[1]}).")
    return parts[1], parts[3]


@dataclass
class Message:
    message_id: str
    data: bytes
    attributes: dict[str, str]
    publish_time: str
    ordering_key: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"data": base64.b64encode(self.data).decode(), "messageId": self.message_id,
                               "publishTime": self.publish_time}
        if self.attributes:
            out["attributes"] = dict(self.attributes)
        if self.ordering_key:
            out["orderingKey"] = self.ordering_key
        return out


@dataclass
class EventarcTarget:
    """The subscription an Eventarc trigger made for a function: deliver CloudEvents to its door."""

    function: str
    trigger: str
    retry: bool
    service_account: str
    door: Callable[[], str | None]  # the function's URL now (None while it has none)


@dataclass
class Subscription:
    body: dict[str, Any]  # canonical JSON, as answered
    eventarc: EventarcTarget | None = None
    generation: str = field(default_factory=lambda: uuid.uuid4().hex)
    accepts: Predicate | None = None  # the compiled `filter`; None: every message
    pending: deque[Message] = field(default_factory=deque)  # pull: not yet handed out
    outstanding: dict[str, tuple[Message, float]] = field(default_factory=dict)  # ackId -> (message, deadline)

    @property
    def name(self) -> str:
        return str(self.body["name"])

    @property
    def ack_deadline(self) -> float:
        return float(self.body.get("ackDeadlineSeconds") or DEFAULT_ACK_DEADLINE)


class PubSubBackend:
    def __init__(self, faults: Faults, loop: asyncio.AbstractEventLoop) -> None:
        self.faults = faults
        self.loop = loop
        self._lock = threading.RLock()
        self._topics: dict[str, dict[str, Any]] = {}
        self._subs: dict[str, Subscription] = {}
        self._ids = itertools.count(1)
        self._ack_ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Every push attempt, newest last: subscription, messageId, attempt, status (or error).
        self.attempts: deque[dict[str, Any]] = deque(maxlen=2000)

    # --- topics ---------------------------------------------------------------------------------

    def create_topic(self, topic: dict[str, Any]) -> dict[str, Any]:
        _check_name("topics", str(topic.get("name", "")))
        with self._lock:
            if topic["name"] in self._topics:
                raise GoogleError("ALREADY_EXISTS", "Topic already exists")
            self._topics[topic["name"]] = topic
        return topic

    def get_topic(self, name: str) -> dict[str, Any]:
        with self._lock:
            topic = self._topics.get(name)
        if topic is None:
            raise GoogleError("NOT_FOUND", f"Resource not found (resource={name.rsplit('/', 1)[-1]}).")
        return topic

    def update_topic(self, name: str, topic: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.get_topic(name)
            self._topics[name] = topic
        return topic

    def delete_topic(self, name: str) -> None:
        with self._lock:
            self.get_topic(name)
            del self._topics[name]
            # The topic's subscriptions stay, detached (`_deleted-topic_`), as on Pub/Sub.
            for sub in self._subs.values():
                if sub.body.get("topic") == name:
                    sub.body["topic"] = "_deleted-topic_"

    def list_topics(self, project: str) -> list[dict[str, Any]]:
        with self._lock:
            return [t for n, t in sorted(self._topics.items()) if n.startswith(f"projects/{project}/")]

    def topic_subscriptions(self, topic: str) -> list[str]:
        with self._lock:
            self.get_topic(topic)
            return sorted(s.name for s in self._subs.values() if s.body.get("topic") == topic)

    # --- subscriptions --------------------------------------------------------------------------

    def create_subscription(self, body: dict[str, Any], eventarc: EventarcTarget | None = None) -> dict[str, Any]:
        _check_name("subscriptions", str(body.get("name", "")))
        topic = str(body.get("topic") or "")
        if not topic:
            raise GoogleError("INVALID_ARGUMENT", "subscription.topic: required")
        body = {**body}
        body.setdefault("ackDeadlineSeconds", DEFAULT_ACK_DEADLINE)
        if not 10 <= int(body["ackDeadlineSeconds"]) <= 600:
            raise GoogleError("INVALID_ARGUMENT", "ackDeadlineSeconds: must be between 10 and 600 seconds")
        body.setdefault("messageRetentionDuration", "604800s")
        body["state"] = "ACTIVE"
        self._check_push(body)
        accepts = compile_filter(str(body["filter"])) if body.get("filter") else None
        with self._lock:
            self.get_topic(topic)
            if body["name"] in self._subs:
                raise GoogleError("ALREADY_EXISTS", "Subscription already exists")
            self._subs[body["name"]] = Subscription(body, eventarc, accepts=accepts)
        return body

    @staticmethod
    def _check_push(body: dict[str, Any]) -> None:
        endpoint = (body.get("pushConfig") or {}).get("pushEndpoint")
        if endpoint and not str(endpoint).startswith(("http://", "https://")):
            raise GoogleError("INVALID_ARGUMENT", f"pushConfig.pushEndpoint: invalid push endpoint {endpoint!r}")
        retry = body.get("retryPolicy") or {}
        for key in ("minimumBackoff", "maximumBackoff"):
            if key in retry and not 0 <= duration_seconds(retry[key], 0) <= 600:
                raise GoogleError("INVALID_ARGUMENT", f"retryPolicy.{key}: must be between 0 and 600 seconds")

    def get_subscription(self, name: str) -> Subscription:
        with self._lock:
            sub = self._subs.get(name)
        if sub is None:
            raise GoogleError("NOT_FOUND", f"Resource not found (resource={name.rsplit('/', 1)[-1]}).")
        return sub

    def find_subscription(self, name: str) -> Subscription | None:
        with self._lock:
            return self._subs.get(name)

    def update_subscription(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self._check_push(body)
        with self._lock:
            sub = self.get_subscription(name)
            if body.get("topic") != sub.body.get("topic"):
                raise GoogleError("INVALID_ARGUMENT", "subscription.topic: cannot be changed")
            if (body.get("filter") or "") != (sub.body.get("filter") or ""):
                raise GoogleError("INVALID_ARGUMENT", "subscription.filter: cannot be changed after creation")
            sub.body = {**body, "state": "ACTIVE"}
            return sub.body

    def modify_push_config(self, name: str, push_config: dict[str, Any]) -> None:
        with self._lock:
            sub = self.get_subscription(name)
            body = {**sub.body, "pushConfig": push_config}
            self._check_push(body)
            sub.body = body

    def delete_subscription(self, name: str) -> None:
        with self._lock:
            self.get_subscription(name)
            del self._subs[name]

    def list_subscriptions(self, project: str) -> list[dict[str, Any]]:
        with self._lock:
            return [s.body for n, s in sorted(self._subs.items()) if n.startswith(f"projects/{project}/")]

    # --- publish and deliver --------------------------------------------------------------------

    def publish(self, topic: str, messages: list[dict[str, Any]]) -> list[str]:
        """Publish (canonical JSON PubsubMessages: `data` base64); the new message ids, in order."""
        if not messages:
            raise GoogleError("INVALID_ARGUMENT", "messages: at least one message is required")
        parsed: list[Message] = []
        for i, m in enumerate(messages):
            data = base64.b64decode(m.get("data") or "")
            attributes = {str(k): str(v) for k, v in (m.get("attributes") or {}).items()}
            if not data and not attributes:
                raise GoogleError("INVALID_ARGUMENT", f"messages[{i}]: at least one of data or attributes must be set")
            if len(data) > MAX_MESSAGE_BYTES:
                raise GoogleError("INVALID_ARGUMENT", f"messages[{i}].data: larger than 10 MB")
            parsed.append(Message("", data, attributes, "", str(m.get("orderingKey") or "")))
        with self._lock:
            self.get_topic(topic)
            subs = [s for s in self._subs.values() if s.body.get("topic") == topic]
            for msg in parsed:
                msg.message_id = str(next(self._ids))
                msg.publish_time = now_rfc3339()
            for sub in subs:
                for msg in parsed:
                    if sub.accepts is not None and not sub.accepts(msg.attributes):
                        continue  # filtered out: acknowledged for this subscription at once
                    if (sub.body.get("pushConfig") or {}).get("pushEndpoint") or sub.eventarc is not None:
                        self.loop.call_soon_threadsafe(self._spawn, sub, msg)
                    else:
                        sub.pending.append(msg)
        return [m.message_id for m in parsed]

    def _spawn(self, sub: Subscription, msg: Message) -> None:
        task = self.loop.create_task(self._deliver(sub, msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _alive(self, sub: Subscription) -> bool:
        with self._lock:
            return self._subs.get(sub.name) is sub

    def _request(self, sub: Subscription, msg: Message) -> tuple[str, dict[str, str], bytes] | None:
        import json

        push = sub.body.get("pushConfig") or {}
        envelope = {"message": {**msg.to_json(), "message_id": msg.message_id, "publish_time": msg.publish_time},
                    "subscription": sub.name}
        if sub.eventarc is not None:
            url = sub.eventarc.door()
            if url is None:
                return None
            headers = {
                "Content-Type": "application/json",
                "ce-id": msg.message_id,
                "ce-source": f"//pubsub.googleapis.com/{sub.body.get('topic')}",
                "ce-specversion": "1.0",
                "ce-type": EVENT_TYPE,
                "ce-time": msg.publish_time,
                "Authorization": "Bearer " + identity_token(sub.eventarc.service_account, url),
            }
            envelope = {"message": msg.to_json(), "subscription": sub.name}
            return url, headers, json.dumps(envelope).encode()
        url = str(push.get("pushEndpoint") or "")
        if not url:
            return None
        headers = {}
        oidc = push.get("oidcToken") or {}
        if oidc.get("serviceAccountEmail"):
            headers["Authorization"] = "Bearer " + identity_token(oidc["serviceAccountEmail"], oidc.get("audience") or url)
        if push.get("noWrapper") is not None:
            if (push["noWrapper"] or {}).get("writeMetadata"):
                headers.update({f"x-goog-pubsub-{k}": v for k, v in msg.attributes.items()})
            return url, headers, msg.data
        headers["Content-Type"] = "application/json"
        return url, headers, json.dumps(envelope).encode()

    def _backoff(self, sub: Subscription) -> tuple[float, float]:
        retry = sub.body.get("retryPolicy")
        if sub.eventarc is not None or retry:
            retry = retry or {}
            return duration_seconds(retry.get("minimumBackoff"), 10.0), duration_seconds(retry.get("maximumBackoff"), 600.0)
        return PUSH_BACKOFF

    async def _deliver(self, sub: Subscription, msg: Message) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        retention = duration_seconds(sub.body.get("messageRetentionDuration"), DEFAULT_RETENTION_SECONDS)
        expires = time.monotonic() + retention
        lo, hi = self._backoff(sub)
        delay = lo
        for attempt in itertools.count(1):
            if not self._alive(sub) or time.monotonic() > expires:
                return
            request = self._request(sub, msg)
            status: int | str
            if request is None:
                status = "no endpoint"
            else:
                url, headers, body = request
                try:
                    async with self._session.post(url, data=body, headers=headers,
                                                  timeout=aiohttp.ClientTimeout(total=sub.ack_deadline)) as resp:
                        await resp.read()
                        status = resp.status
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    status = f"{type(exc).__name__}: {exc}"[:200]
            self.attempts.append({"subscription": sub.name, "messageId": msg.message_id, "attempt": attempt,
                                  "status": status, "time": now_rfc3339()})
            if status in ACK_STATUSES:
                return
            if sub.eventarc is not None and not sub.eventarc.retry:
                log.info("Pub/Sub %s: message %s failed (%s); the trigger does not retry", sub.name, msg.message_id,
                         status)
                return
            await asyncio.sleep(delay)
            delay = min(hi, max(delay * 2, 0.05))

    # --- pull ---------------------------------------------------------------------------------------

    def pull(self, name: str, max_messages: int) -> list[dict[str, Any]]:
        if max_messages <= 0:
            raise GoogleError("INVALID_ARGUMENT", "maxMessages: must be positive")
        now = time.monotonic()
        out: list[dict[str, Any]] = []
        with self._lock:
            sub = self.get_subscription(name)
            for ack_id, (msg, deadline) in list(sub.outstanding.items()):
                if deadline <= now:  # not acknowledged in time: delivered again
                    del sub.outstanding[ack_id]
                    sub.pending.appendleft(msg)
            while sub.pending and len(out) < max_messages:
                msg = sub.pending.popleft()
                ack_id = f"{sub.generation}-{next(self._ack_ids)}"
                sub.outstanding[ack_id] = (msg, now + sub.ack_deadline)
                out.append({"ackId": ack_id, "message": msg.to_json()})
        return out

    def acknowledge(self, name: str, ack_ids: list[str]) -> None:
        with self._lock:
            sub = self.get_subscription(name)
            for ack_id in ack_ids:
                sub.outstanding.pop(ack_id, None)

    def modify_ack_deadline(self, name: str, ack_ids: list[str], seconds: int) -> None:
        now = time.monotonic()
        with self._lock:
            sub = self.get_subscription(name)
            for ack_id in ack_ids:
                if ack_id in sub.outstanding:
                    msg, _ = sub.outstanding[ack_id]
                    sub.outstanding[ack_id] = (msg, now + seconds)

    # --- sandbox ------------------------------------------------------------------------------------

    def resources(self) -> list[dict[str, str]]:
        with self._lock:
            return [{"type": "pubsub.topic", "name": n} for n in sorted(self._topics)] + [
                {"type": "pubsub.subscription", "name": n} for n in sorted(self._subs)]

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    def reset(self) -> None:
        with self._lock:
            self._topics.clear()
            self._subs.clear()
        self.attempts.clear()
        for task in list(self._tasks):
            self.loop.call_soon_threadsafe(task.cancel)
