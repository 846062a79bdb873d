"""HTTP side of the Event Grid data plane: publishing to a topic and manual webhook validation.

`POST /eventgrid/<topic>/api/events` takes Event Grid schema events (a JSON array) or
CloudEvents (`application/cloudevents+json` / `application/cloudevents-batch+json`), as the
topic's `inputSchema` says, authenticated by `aeg-sas-key`, `aeg-sas-token` or a bearer token
of a principal holding "EventGrid Data Sender" on the topic (or above). It answers 200 with an
empty body once the events are accepted; delivery happens afterwards.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from aiohttp import web

from sandbox.core.auth import principal_from_request
from sandbox.core.context import SandboxContext
from sandbox.eventgrid.models import (
    CLOUDEVENT_SCHEMA,
    CUSTOM_SCHEMA,
    EVENTGRID_DATA_SENDER_ROLE,
    EVENTGRID_SCHEMA,
    MAX_REQUEST_BYTES,
    URL_PREFIX,
    EventGridBackend,
    EventGridError,
    Topic,
    check_cloud_event,
    check_eventgrid_event,
)

BACKEND_KEY: web.AppKey[EventGridBackend] = web.AppKey("eventgrid_backend", EventGridBackend)
CTX_KEY: web.AppKey[SandboxContext] = web.AppKey("eventgrid_ctx", SandboxContext)

_SUPPORT = " Report the activity id and timestamp to our forums for assistance or raise a support ticket."


def error_response(err: EventGridError) -> web.Response:
    return web.Response(body=json.dumps(err.body()).encode(), status=err.status, content_type="application/json")


def _sas_valid(token: str, topic: Topic, keys: tuple[str, str], now: datetime) -> bool:
    """An `aeg-sas-token` (`r=<resource>&e=<expiry>&s=<signature>`) signed with key1 or key2."""
    if "&s=" not in token:
        return False
    unsigned, _, signature = token.rpartition("&s=")
    fields = parse_qs(unsigned, keep_blank_values=True)
    resource = (fields.get("r") or [""])[0]
    expiry_text = (fields.get("e") or [""])[0]
    try:
        expiry = datetime.fromisoformat(expiry_text.strip().replace("Z", "+00:00"))
    except ValueError:
        return False
    if expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=UTC)
    if expiry <= now:
        return False
    if not urlsplit(resource).path.lower().rstrip("/").endswith(f"{URL_PREFIX}/{topic.endpoint_name}/api/events"):
        return False
    given = unquote(signature).encode()
    for key in keys:
        digest = hmac.new(base64.b64decode(key), unsigned.encode("ascii", "replace"), hashlib.sha256).digest()
        if hmac.compare_digest(base64.b64encode(digest), given):
            return True
    return False


def _authorize(request: web.Request, ctx: SandboxContext, topic: Topic) -> EventGridError | None:
    endpoint = f"{request.host}{request.path}"
    keys = request.app[BACKEND_KEY].topic_keys(topic)
    key = request.headers.get("aeg-sas-key")
    if key is not None:
        if any(hmac.compare_digest(key.encode(), k.encode()) for k in keys):
            return None
        return EventGridError(
            401,
            "Unauthorized",
            f"The request authorization key is not authorized for {endpoint}. This is due to the reason: the "
            "aeg-sas-key does not match a key of the topic." + _SUPPORT,
        )
    token = request.headers.get("aeg-sas-token")
    if token is not None:
        if _sas_valid(token, topic, keys, datetime.now(UTC)):
            return None
        return EventGridError(
            401,
            "Unauthorized",
            f"The request authorization key is not authorized for {endpoint}. This is due to the reason: the "
            "aeg-sas-token is malformed, expired, for another resource, or not signed with a key of the topic."
            + _SUPPORT,
        )
    if "Authorization" in request.headers:
        principal = principal_from_request(request)
        if principal is None:
            return EventGridError(401, "Unauthorized", "The bearer token is missing, garbled or expired." + _SUPPORT)
        if ctx.role_assignments.allows(principal, topic.resource_id, {EVENTGRID_DATA_SENDER_ROLE}):
            return None
        return EventGridError(
            403,
            "Forbidden",
            f"The principal '{principal}' does not have the 'EventGrid Data Sender' role on {topic.resource_id} "
            "(or the assignment is not effective yet)." + _SUPPORT,
        )
    return EventGridError(
        401,
        "Unauthorized",
        f"The request authorization key is not authorized for {endpoint}. This is due to the reason: no "
        "aeg-sas-key, aeg-sas-token or Authorization header was given." + _SUPPORT,
    )


def _parse_events(raw: bytes, content_type: str, topic: Topic) -> tuple[list[dict[str, Any]], str]:
    """The events of a publish request and the schema they are in; raises on a mismatch."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EventGridError(400, "BadRequest", f"The request body is not valid JSON: {exc}." + _SUPPORT) from exc
    ct = content_type.lower()
    schema = topic.input_schema
    if schema == CLOUDEVENT_SCHEMA:
        if ct.startswith("application/cloudevents+json"):
            events = [body]
        elif ct.startswith("application/cloudevents-batch+json") or isinstance(body, list):
            events = body if isinstance(body, list) else [body]
        else:
            events = [body]
        if not isinstance(events, list):
            raise EventGridError(400, "BadRequest", "A CloudEvents batch must be a JSON array." + _SUPPORT)
        problems = [p for i, e in enumerate(events) for p in check_cloud_event(e, i)]
        if problems:
            raise EventGridError(
                400,
                "BadRequest",
                "This resource is configured to receive events in the 'CloudEventSchemaV1_0' schema. The JSON "
                "received does not conform to the expected schema: " + " ".join(problems) + _SUPPORT,
            )
        return events, CLOUDEVENT_SCHEMA
    if ct.startswith("application/cloudevents"):
        raise EventGridError(
            400,
            "BadRequest",
            f"This resource is configured to receive events in the '{schema}' schema, not CloudEvents." + _SUPPORT,
        )
    if not isinstance(body, list):
        raise EventGridError(
            400, "BadRequest", "The request body must be a JSON array of events." + _SUPPORT
        )
    if schema == CUSTOM_SCHEMA:
        if not all(isinstance(e, dict) for e in body):
            raise EventGridError(400, "BadRequest", "Every event must be a JSON object." + _SUPPORT)
        return body, CUSTOM_SCHEMA
    problems = [p for i, e in enumerate(body) for p in check_eventgrid_event(e, i)]
    if problems:
        raise EventGridError(
            400,
            "BadRequest",
            "This resource is configured to receive events in the 'EventGridSchema' schema. The JSON received "
            "does not conform to the expected schema: " + " ".join(problems) + _SUPPORT,
        )
    events = []
    for e in body:
        if e.get("topic") and str(e["topic"]).lower() != topic.resource_id.lower():
            raise EventGridError(
                400,
                "BadRequest",
                f"The 'topic' of event {e.get('id')} is {e['topic']!r}; leave it out or set it to "
                f"{topic.resource_id!r}." + _SUPPORT,
            )
        events.append({**e, "topic": topic.resource_id, "metadataVersion": "1"})
    return events, EVENTGRID_SCHEMA


async def publish(request: web.Request) -> web.StreamResponse:
    backend = request.app[BACKEND_KEY]
    ctx = request.app[CTX_KEY]
    topic = backend.topic_by_endpoint(request.match_info["topic"])
    if topic is None:
        return error_response(
            EventGridError(404, "NotFound", f"There is no Event Grid topic at {request.host}{request.path}." + _SUPPORT)
        )
    denied = _authorize(request, ctx, topic)
    if denied is not None:
        return error_response(denied)
    raw = await request.read()
    if len(raw) > MAX_REQUEST_BYTES:
        return error_response(
            EventGridError(413, "RequestEntityTooLarge", "The maximum size of a publish request is 1 MB." + _SUPPORT)
        )
    try:
        events, schema = _parse_events(raw, request.headers.get("Content-Type", "application/json"), topic)
    except EventGridError as err:
        return error_response(err)
    backend.accept(topic, events, schema)
    return web.Response(status=200)


async def manual_validation(request: web.Request) -> web.StreamResponse:
    """The `validationUrl` of a SubscriptionValidationEvent: a GET completes the handshake."""
    backend = request.app[BACKEND_KEY]
    code = request.match_info["code"]
    if request.query.get("code") != code or not backend.validate_manually(code):
        return error_response(EventGridError(404, "NotFound", "Unknown or expired validation URL." + _SUPPORT))
    return web.json_response({"validationResponse": code})
