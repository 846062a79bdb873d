"""Pub/Sub v1 REST handlers (`transport="rest"` clients and plain HTTP publishers).

A publish that presents a token signed by a service account key (what a device publishing with its
key file sends) is authorised as Pub/Sub does: the account must hold a role with
`pubsub.topics.publish` on the topic or the project (403 otherwise), and a token no live key signed
is 401. A pull, acknowledge or ack-deadline change with such a token needs a role with
`pubsub.subscriptions.consume` on the subscription or the project (a device reading its feedback
subscription). Calls without a token are the sandbox's anonymous callers (the deployer, tests)
and pass."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sandbox.core.http import json_response
from sandbox.gcp.backends import backends
from sandbox.gcp.common import PROJECT_ID, GoogleError, api, apply_mask, page, parse_message, read_json

# Roles that include pubsub.topics.publish.
PUBLISHER_ROLES = frozenset({"roles/pubsub.publisher", "roles/pubsub.editor", "roles/pubsub.admin", "roles/editor",
                             "roles/owner"})


# Roles that include pubsub.subscriptions.consume.
SUBSCRIBER_ROLES = frozenset({"roles/pubsub.subscriber", "roles/pubsub.editor", "roles/pubsub.admin", "roles/editor",
                              "roles/owner"})


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
    b = backends(request)
    b.pubsub.delete_topic(_topic_name(request))
    b.iam.drop_policy(_topic_name(request))
    return json_response({})


@api("pubsub:ListTopics", mutating=False)
async def list_topics(request: web.Request) -> web.Response:
    return _listing("topics", backends(request).pubsub.list_topics(request.match_info["project"]), request)


@api("pubsub:ListTopicSubscriptions", mutating=False)
async def list_topic_subscriptions(request: web.Request) -> web.Response:
    return _listing("subscriptions", backends(request).pubsub.topic_subscriptions(_topic_name(request)), request)


def _authorize(request: web.Request, resource: str, roles: frozenset[str]) -> None:
    """A key-signed token's account must hold one of `roles` on `resource` or the project."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or token.count(".") != 2:
        return
    iam = backends(request).iam
    email = iam.verified_account(token.strip())
    if email is None:
        raise GoogleError("UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access "
                          "token, login cookie or other valid authentication credential.")
    if not iam.allows([resource, f"projects/{PROJECT_ID}"], [f"serviceAccount:{email}"], roles):
        raise GoogleError("PERMISSION_DENIED", "User not authorized to perform this action.")


def _authorize_publish(request: web.Request, topic: str) -> None:
    _authorize(request, topic, PUBLISHER_ROLES)


def _authorize_consume(request: web.Request, subscription: str) -> None:
    backends(request).pubsub.get_subscription(subscription)  # NOT_FOUND before PERMISSION_DENIED
    _authorize(request, subscription, SUBSCRIBER_ROLES)


async def _set_policy(request: web.Request, name: str) -> web.Response:
    """SetIamPolicy on a topic or subscription `name` (its existence already checked)."""
    from google.iam.v1 import policy_pb2

    body = await read_json(request)
    policy = parse_message(policy_pb2.Policy, body.get("policy") or {}, "policy")
    return json_response(backends(request).iam.set_policy(name, policy))


@api("pubsub:GetIamPolicy", mutating=False)
async def get_topic_iam_policy(request: web.Request) -> web.Response:
    name = _topic_name(request)
    backends(request).pubsub.get_topic(name)
    return json_response(backends(request).iam.get_policy(name))


@api("pubsub:SetIamPolicy", mutating=True)
async def set_topic_iam_policy(request: web.Request) -> web.Response:
    name = _topic_name(request)
    backends(request).pubsub.get_topic(name)
    return await _set_policy(request, name)


@api("pubsub:GetIamPolicy", mutating=False)
async def get_subscription_iam_policy(request: web.Request) -> web.Response:
    name = _sub_name(request)
    backends(request).pubsub.get_subscription(name)
    return json_response(backends(request).iam.get_policy(name))


@api("pubsub:SetIamPolicy", mutating=True)
async def set_subscription_iam_policy(request: web.Request) -> web.Response:
    name = _sub_name(request)
    backends(request).pubsub.get_subscription(name)
    return await _set_policy(request, name)


@api("pubsub:Publish", mutating=True)
async def publish(request: web.Request) -> web.Response:
    _authorize_publish(request, _topic_name(request))
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
    b = backends(request)
    b.pubsub.delete_subscription(_sub_name(request))
    b.iam.drop_policy(_sub_name(request))
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
    _authorize_consume(request, _sub_name(request))
    body = await read_json(request)
    received = backends(request).pubsub.pull(_sub_name(request), int(body.get("maxMessages") or 0))
    return json_response({"receivedMessages": received} if received else {})


@api("pubsub:Acknowledge", mutating=True)
async def acknowledge(request: web.Request) -> web.Response:
    _authorize_consume(request, _sub_name(request))
    body = await read_json(request)
    backends(request).pubsub.acknowledge(_sub_name(request), [str(a) for a in body.get("ackIds") or []])
    return json_response({})


@api("pubsub:ModifyAckDeadline", mutating=True)
async def modify_ack_deadline(request: web.Request) -> web.Response:
    _authorize_consume(request, _sub_name(request))
    body = await read_json(request)
    backends(request).pubsub.modify_ack_deadline(
        _sub_name(request), [str(a) for a in body.get("ackIds") or []], int(body.get("ackDeadlineSeconds") or 0))
    return json_response({})
