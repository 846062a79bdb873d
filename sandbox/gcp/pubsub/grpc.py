"""Pub/Sub over gRPC (`PUBSUB_EMULATOR_HOST`): the Publisher and Subscriber calls a deployer, a device
or a function makes, on the same state as the REST API. StreamingPull (the high-level
`SubscriberClient.subscribe`) is not served: UNIMPLEMENTED; use push or unary Pull."""

from __future__ import annotations

import json
from typing import Any

import grpc
from google.protobuf import empty_pb2
from google.pubsub_v1 import types as T

from sandbox.gcp.backends import GcpBackends
from sandbox.gcp.common import GoogleError, apply_mask, message_json
from sandbox.gcp.grpc_server import Pb, unary

EMPTY = Pb(empty_pb2.Empty)


def _json(message: Any) -> dict[str, Any]:
    return message_json(type(message).pb(message))


def _msg(cls: Any, data: dict[str, Any]) -> Any:
    return cls.from_json(json.dumps(data), ignore_unknown_fields=True)


def handlers(b: GcpBackends, service: str) -> dict[str, grpc.RpcMethodHandler]:
    ps = b.pubsub

    def create_topic(req: Any, ctx: Any) -> Any:
        return _msg(T.Topic, ps.create_topic(_json(req)))

    def get_topic(req: Any, ctx: Any) -> Any:
        return _msg(T.Topic, ps.get_topic(req.topic))

    def update_topic(req: Any, ctx: Any) -> Any:
        body = _json(req)
        name = req.topic.name
        paths = list(req.update_mask.paths)
        if not paths:
            raise GoogleError("INVALID_ARGUMENT", "update_mask: required")
        camel = [_camel(p) for p in paths]
        return _msg(T.Topic, ps.update_topic(name, apply_mask(ps.get_topic(name), body.get("topic", {}), camel)))

    def delete_topic(req: Any, ctx: Any) -> Any:
        ps.delete_topic(req.topic)
        return empty_pb2.Empty()

    def list_topics(req: Any, ctx: Any) -> Any:
        project = req.project.split("/", 1)[-1]
        return _msg(T.ListTopicsResponse, {"topics": ps.list_topics(project)})

    def list_topic_subscriptions(req: Any, ctx: Any) -> Any:
        return T.ListTopicSubscriptionsResponse(subscriptions=ps.topic_subscriptions(req.topic))

    def publish(req: Any, ctx: Any) -> Any:
        body = _json(req)
        return T.PublishResponse(message_ids=ps.publish(req.topic, body.get("messages") or []))

    def create_subscription(req: Any, ctx: Any) -> Any:
        return _msg(T.Subscription, ps.create_subscription(_json(req)))

    def get_subscription(req: Any, ctx: Any) -> Any:
        return _msg(T.Subscription, ps.get_subscription(req.subscription).body)

    def update_subscription(req: Any, ctx: Any) -> Any:
        body = _json(req)
        name = req.subscription.name
        paths = [_camel(p) for p in req.update_mask.paths]
        if not paths:
            raise GoogleError("INVALID_ARGUMENT", "update_mask: required")
        current = ps.get_subscription(name).body
        return _msg(T.Subscription, ps.update_subscription(name, apply_mask(current, body.get("subscription", {}), paths)))

    def delete_subscription(req: Any, ctx: Any) -> Any:
        ps.delete_subscription(req.subscription)
        b.iam.drop_policy(req.subscription)
        return empty_pb2.Empty()

    def list_subscriptions(req: Any, ctx: Any) -> Any:
        project = req.project.split("/", 1)[-1]
        return _msg(T.ListSubscriptionsResponse, {"subscriptions": ps.list_subscriptions(project)})

    def modify_push_config(req: Any, ctx: Any) -> Any:
        ps.modify_push_config(req.subscription, _json(req).get("pushConfig") or {})
        return empty_pb2.Empty()

    def pull(req: Any, ctx: Any) -> Any:
        return _msg(T.PullResponse, {"receivedMessages": ps.pull(req.subscription, req.max_messages)})

    def acknowledge(req: Any, ctx: Any) -> Any:
        ps.acknowledge(req.subscription, list(req.ack_ids))
        return empty_pb2.Empty()

    def modify_ack_deadline(req: Any, ctx: Any) -> Any:
        ps.modify_ack_deadline(req.subscription, list(req.ack_ids), req.ack_deadline_seconds)
        return empty_pb2.Empty()

    if service.endswith("Publisher"):
        return {
            "CreateTopic": unary(create_topic, T.Topic, T.Topic),
            "GetTopic": unary(get_topic, T.GetTopicRequest, T.Topic),
            "UpdateTopic": unary(update_topic, T.UpdateTopicRequest, T.Topic),
            "DeleteTopic": unary(delete_topic, T.DeleteTopicRequest, EMPTY),
            "ListTopics": unary(list_topics, T.ListTopicsRequest, T.ListTopicsResponse),
            "ListTopicSubscriptions": unary(list_topic_subscriptions, T.ListTopicSubscriptionsRequest,
                                            T.ListTopicSubscriptionsResponse),
            "Publish": unary(publish, T.PublishRequest, T.PublishResponse),
        }
    return {
        "CreateSubscription": unary(create_subscription, T.Subscription, T.Subscription),
        "GetSubscription": unary(get_subscription, T.GetSubscriptionRequest, T.Subscription),
        "UpdateSubscription": unary(update_subscription, T.UpdateSubscriptionRequest, T.Subscription),
        "DeleteSubscription": unary(delete_subscription, T.DeleteSubscriptionRequest, EMPTY),
        "ListSubscriptions": unary(list_subscriptions, T.ListSubscriptionsRequest, T.ListSubscriptionsResponse),
        "ModifyPushConfig": unary(modify_push_config, T.ModifyPushConfigRequest, EMPTY),
        "Pull": unary(pull, T.PullRequest, T.PullResponse),
        "Acknowledge": unary(acknowledge, T.AcknowledgeRequest, EMPTY),
        "ModifyAckDeadline": unary(modify_ack_deadline, T.ModifyAckDeadlineRequest, EMPTY),
    }


def _camel(path: str) -> str:
    head, *rest = path.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)
