"""Pub/Sub v1 REST handlers (`transport="rest"` clients and plain HTTP publishers)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sandbox.core.http import json_response
from sandbox.gcp.backends import backends
from sandbox.gcp.common import GoogleError, api, apply_mask, page, parse_message, read_json


def _types() -> Any:
    from google.pubsub_v1 import types

    return types


def _topic_name(request: web.Request) -> str:
    return f"projects/{request.match_info['project']}/topics/{request.match_info['topic']}"


def _sub_name(request: web.Request) -> str:
    return f"projects/{request.match_info['project']}/subscriptions/{request.match_info['subscription']}"


def _listing(key: str, items: list[Any], request: web.Request) -> web.Response:
    chunk, token = page(items, request)
    out: dict[str, Any] = {key: chunk} if chunk else {}
    if token:
        out["nextPageToken"] = token
    return json_response(out)


@api("pubsub:CreateTopic", mutating=True)
async def create_topic(request: web.Request) -> web.Response:
    body = await read_json(request)
    topic = parse_message(_types().Topic, {**body, "name": _topic_name(request)}, "topic")
    return json_response(backends(request).pubsub.create_topic(topic))


@api("pubsub:GetTopic", mutating=False)
async def get_topic(request: web.Request) -> web.Response:
    return json_response(backends(request).pubsub.get_topic(_topic_name(request)))


@api("pubsub:UpdateTopic", mutating=True)
async def update_topic(request: web.Request) -> web.Response:
    body = await read_json(request)
    name = _topic_name(request)
    patch = parse_message(_types().Topic, {**(body.get("topic") or {}), "name": name}, "topic")
    mask = body.get("updateMask")
    if not mask:
        raise GoogleError("INVALID_ARGUMENT", "updateMask: required")
    ps = backends(request).pubsub
    return json_response(ps.update_topic(name, apply_mask(ps.get_topic(name), patch, str(mask).split(","))))


@api("pubsub:DeleteTopic", mutating=True)
async def delete_topic(request: web.Request) -> web.Response:
    backends(request).pubsub.delete_topic(_topic_name(request))
    return json_response({})


@api("pubsub:ListTopics", mutating=False)
async def list_topics(request: web.Request) -> web.Response:
    return _listing("topics", backends(request).pubsub.list_topics(request.match_info["project"]), request)


@api("pubsub:ListTopicSubscriptions", mutating=False)
async def list_topic_subscriptions(request: web.Request) -> web.Response:
    return _listing("subscriptions", backends(request).pubsub.topic_subscriptions(_topic_name(request)), request)


@api("pubsub:Publish", mutating=True)
async def publish(request: web.Request) -> web.Response:
    body = await read_json(request)
    parsed = parse_message(_types().PublishRequest, {**body, "topic": _topic_name(request)}, "body")
    ids = backends(request).pubsub.publish(_topic_name(request), parsed.get("messages") or [])
    return json_response({"messageIds": ids})


@api("pubsub:CreateSubscription", mutating=True)
async def create_subscription(request: web.Request) -> web.Response:
    body = await read_json(request)
    sub = parse_message(_types().Subscription, {**body, "name": _sub_name(request)}, "subscription")
    return json_response(backends(request).pubsub.create_subscription(sub))


@api("pubsub:GetSubscription", mutating=False)
async def get_subscription(request: web.Request) -> web.Response:
    return json_response(backends(request).pubsub.get_subscription(_sub_name(request)).body)


@api("pubsub:UpdateSubscription", mutating=True)
async def update_subscription(request: web.Request) -> web.Response:
    body = await read_json(request)
    name = _sub_name(request)
    ps = backends(request).pubsub
    current = ps.get_subscription(name).body
    patch = parse_message(_types().Subscription, {"topic": current.get("topic"), **(body.get("subscription") or {}),
                                                  "name": name}, "subscription")
    mask = body.get("updateMask")
    if not mask:
        raise GoogleError("INVALID_ARGUMENT", "updateMask: required")
    return json_response(ps.update_subscription(name, apply_mask(current, patch, str(mask).split(","))))


@api("pubsub:DeleteSubscription", mutating=True)
async def delete_subscription(request: web.Request) -> web.Response:
    backends(request).pubsub.delete_subscription(_sub_name(request))
    return json_response({})


@api("pubsub:ListSubscriptions", mutating=False)
async def list_subscriptions(request: web.Request) -> web.Response:
    return _listing("subscriptions", backends(request).pubsub.list_subscriptions(request.match_info["project"]),
                    request)


@api("pubsub:ModifyPushConfig", mutating=True)
async def modify_push_config(request: web.Request) -> web.Response:
    body = await read_json(request)
    parsed = parse_message(_types().ModifyPushConfigRequest, {**body, "subscription": _sub_name(request)}, "body")
    backends(request).pubsub.modify_push_config(_sub_name(request), parsed.get("pushConfig") or {})
    return json_response({})


@api("pubsub:Pull", mutating=True)
async def pull(request: web.Request) -> web.Response:
    body = await read_json(request)
    received = backends(request).pubsub.pull(_sub_name(request), int(body.get("maxMessages") or 0))
    return json_response({"receivedMessages": received} if received else {})


@api("pubsub:Acknowledge", mutating=True)
async def acknowledge(request: web.Request) -> web.Response:
    body = await read_json(request)
    backends(request).pubsub.acknowledge(_sub_name(request), [str(a) for a in body.get("ackIds") or []])
    return json_response({})


@api("pubsub:ModifyAckDeadline", mutating=True)
async def modify_ack_deadline(request: web.Request) -> web.Response:
    body = await read_json(request)
    backends(request).pubsub.modify_ack_deadline(
        _sub_name(request), [str(a) for a in body.get("ackIds") or []], int(body.get("ackDeadlineSeconds") or 0))
    return json_response({})
