"""Cloud Functions (gen2) plumbing: the functions-framework request <-> `Request`/`Response`,
Pub/Sub CloudEvents as Eventarc delivers them, and authenticated calls to the twin's private
functions.

- HTTP functions get a Flask request and return `(body, status, headers)`. Bodies are bounded
  (`MAX_BODY_BYTES`, the platform's own request limit) before anything reads them.
- Pub/Sub-triggered functions get a binary-mode CloudEvent whose `data` is the push envelope
  `{"message": {"data": <base64>, "attributes": {...}, "messageId"}, "subscription"}`. A message
  that can never succeed (4xx) is acknowledged and logged, so Pub/Sub does not redeliver it for
  days; a failure that a retry can fix (5xx) fails the invocation, so Eventarc redelivers it.
- Private functions (processor, persister, connector, event checker) are reached with an OIDC
  ID token for the callee's URL (`google.oauth2.id_token`): on Google Cloud the metadata server
  of the function's runtime service account issues it; Cloud Run checks it (`roles/run.invoker`)
  before the callee runs. No key file: the token comes from the environment (Application Default
  Credentials rules, https://google.aip.dev/auth/4110).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from payload_functions.common.errors import BadRequest, PayloadError, UpstreamError
from payload_functions.common.http import HttpResult, post_json, safe_url
from payload_functions.common.telemetry import DEVICE_ID_FIELDS, parse_timestamp
from payload_functions.core.api import Request, Response, answer, failure
from shared.contracts import PUBSUB_DEVICE_ID_ATTRIBUTE

PROVIDER = "gcp"
MAX_BODY_BYTES = 32 * 1024 * 1024
"""Cloud Run's (and so gen2 Cloud Functions') HTTP/1 request size limit: nothing a real caller
sends is larger, and a hostile one cannot make a function buffer more."""
PUBSUB_MESSAGE_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
"""CloudEvent `type` Eventarc gives a Pub/Sub message."""
SCHEDULE_TIME_HEADER = "X-CloudScheduler-ScheduleTime"
"""Cloud Scheduler's header with the scheduled time of a run (the movers' "now", so a retried run
moves the same readings)."""
JSON_HEADERS = {"Content-Type": "application/json"}

log = logging.getLogger("payload_functions")


class HttpRequest(Protocol):
    """What the functions read of the Flask request functions-framework passes."""

    method: str

    @property
    def headers(self) -> Any: ...

    @property
    def args(self) -> Any: ...

    @property
    def content_length(self) -> int | None: ...

    @property
    def stream(self) -> Any: ...


class CloudEvent(Protocol):
    """The `cloudevents.http.CloudEvent` functions-framework passes (attributes by item)."""

    data: Any

    def __getitem__(self, key: str) -> Any: ...

    def get(self, key: str, default: Any = None) -> Any: ...


class EventFailed(Exception):
    """Raised from a CloudEvent function so the invocation fails and Eventarc redelivers."""


# -- HTTP ---------------------------------------------------------------------------------------


class PayloadTooLarge(PayloadError):
    def __init__(self) -> None:
        super().__init__(413, f"body: larger than {MAX_BODY_BYTES} bytes")


def read_body(request: HttpRequest) -> bytes:
    """The body, refused (413) past `MAX_BODY_BYTES` without reading more than one byte over it."""
    declared = request.content_length
    if declared is not None and declared > MAX_BODY_BYTES:
        raise PayloadTooLarge()
    data = request.stream.read(MAX_BODY_BYTES + 1)
    if len(data) > MAX_BODY_BYTES:
        raise PayloadTooLarge()
    return bytes(data)


def to_request(request: HttpRequest) -> Request:
    return Request(method=request.method, headers={str(k): str(v) for k, v in request.headers.items()},
                   body=read_body(request), query={str(k): str(v) for k, v in request.args.items()})


def to_http(response: Response) -> tuple[str, int, dict[str, str]]:
    return response.text(), response.status, JSON_HEADERS


def http(name: str, request: HttpRequest, work: Callable[[Request], Any]) -> tuple[str, int, dict[str, str]]:
    """An HTTP function: every failure becomes a JSON answer with its status, never a traceback."""
    return to_http(answer(name, lambda: work(to_request(request))))


# -- Pub/Sub CloudEvents ------------------------------------------------------------------------


def pubsub_reading(event: CloudEvent) -> dict[str, Any]:
    """The reading in a Pub/Sub message: its JSON data, with the device id from the
    `PUBSUB_DEVICE_ID_ATTRIBUTE` attribute when the body has none. A body naming another device
    than the attribute is refused."""
    kind = event.get("type")
    if kind != PUBSUB_MESSAGE_PUBLISHED:
        raise BadRequest(f"event.type: expected {PUBSUB_MESSAGE_PUBLISHED}, got {str(kind)[:80]!r}")
    envelope = event.data
    message = envelope.get("message") if isinstance(envelope, Mapping) else None
    if not isinstance(message, Mapping):
        raise BadRequest("event.data.message: expected the Pub/Sub message object")
    raw = message.get("data")
    if not isinstance(raw, str) or not raw:
        raise BadRequest("event.data.message.data: expected base64 JSON, got nothing")
    try:
        body = json.loads(base64.b64decode(raw, validate=True))
    except (ValueError, binascii.Error):
        raise BadRequest("event.data.message.data: not base64 JSON; devices publish the reading as UTF-8 JSON") from None
    if not isinstance(body, Mapping):
        raise BadRequest("event.data.message.data: expected a JSON object")
    reading = dict(body)
    attributes = message.get("attributes")
    attribute = attributes.get(PUBSUB_DEVICE_ID_ATTRIBUTE) if isinstance(attributes, Mapping) else None
    named = next((reading[k] for k in DEVICE_ID_FIELDS if reading.get(k) not in (None, "")), None)
    if attribute:
        if named is not None and named != attribute:
            raise BadRequest(f"event.data.message: the body names device {str(named)[:64]!r} but attribute "
                             f"{PUBSUB_DEVICE_ID_ATTRIBUTE} is {str(attribute)[:64]!r}")
        if named is None:
            reading[DEVICE_ID_FIELDS[0]] = str(attribute)
    return reading


def triggered(name: str, work: Callable[[], Any]) -> Any:
    """Run a CloudEvent function. A refused message (4xx) is logged and acknowledged: a retry
    cannot fix it. Anything else fails the invocation so Eventarc redelivers the message."""
    try:
        return work()
    except PayloadError as exc:
        failure(name, exc)
        if exc.status < 500:
            return None
        raise EventFailed(f"{name}: {exc.message}") from None


def run_time(request: HttpRequest) -> datetime:
    """A scheduled run's "now": its `X-CloudScheduler-ScheduleTime` (so a retried run moves the
    same items), or the current time for a call without it (a manual run)."""
    raw = request.headers.get(SCHEDULE_TIME_HEADER)
    if not raw:
        return datetime.now(UTC)
    stamp = parse_timestamp(str(raw), f"headers.{SCHEDULE_TIME_HEADER}")
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


# -- calls to the twin's private functions ------------------------------------------------------


def audience(url: str) -> str:
    """The ID token audience Cloud Run accepts for `url`: the URL without query, fragment or a
    trailing slash (a `run.app` service URL, or a `cloudfunctions.net` function URL)."""
    return safe_url(url).rstrip("/")


class IdTokens:
    """ID tokens per audience, refreshed when they expire (google-auth keeps the expiry)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._credentials: dict[str, Any] = {}

    def token(self, target: str) -> str:
        import google.auth.exceptions
        import google.auth.transport.requests
        import google.oauth2.id_token

        request = google.auth.transport.requests.Request()
        with self._lock:
            try:
                credentials = self._credentials.get(target)
                if credentials is None:
                    credentials = google.oauth2.id_token.fetch_id_token_credentials(target, request=request)
                    self._credentials[target] = credentials
                if not credentials.valid:
                    credentials.refresh(request)
            except google.auth.exceptions.GoogleAuthError as exc:
                # The library's messages name no secret; the type and text say what is missing.
                raise UpstreamError(f"no identity token for {target}: {type(exc).__name__}: {exc}") from None
            return str(credentials.token)


ID_TOKENS = IdTokens()


CAPACITY_STATUSES = frozenset({429, 503})
"""What a call to another function retries: Cloud Run had no instance ready, or the callee is
not wired yet. A callee's own failure (500, 502) is not retried here: it already retried its
neighbours, and retrying at every hop of processor -> persister -> ... multiplies the attempts;
the outermost trigger (Eventarc, Cloud Scheduler, the remote sender) retries the whole path."""


def call_function(url: str, body: Any, *, retries: int = 3, timeout: float = 30.0) -> HttpResult:
    """POST JSON to another of the twin's Cloud Functions with an ID token for it."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise UpstreamError(f"cannot call {safe_url(url)}: not an http(s) URL")
    token = ID_TOKENS.token(audience(url))
    return post_json(url, body, headers={"Authorization": f"Bearer {token}"}, retries=retries, timeout=timeout,
                     retry_on=CAPACITY_STATUSES.__contains__)
