"""Routes of Pub/Sub v1 on the GCP REST endpoint (the gRPC side is in `grpc.py`)."""

from __future__ import annotations

from aiohttp import web

from sandbox.gcp.pubsub import responses as r


def add_routes(app: web.Application) -> None:
    topics = "/v1/projects/{project}/topics"
    topic = topics + "/{topic:[^/:]+}"
    app.router.add_get(topics, r.list_topics)
    app.router.add_put(topic, r.create_topic)
    app.router.add_get(topic, r.get_topic)
    app.router.add_patch(topic, r.update_topic)
    app.router.add_delete(topic, r.delete_topic)
    app.router.add_post(topic + ":publish", r.publish)
    app.router.add_get(topic + ":getIamPolicy", r.get_topic_iam_policy)
    app.router.add_post(topic + ":setIamPolicy", r.set_topic_iam_policy)
    app.router.add_get(topic + "/subscriptions", r.list_topic_subscriptions)
    subs = "/v1/projects/{project}/subscriptions"
    sub = subs + "/{subscription:[^/:]+}"
    app.router.add_get(subs, r.list_subscriptions)
    app.router.add_put(sub, r.create_subscription)
    app.router.add_get(sub, r.get_subscription)
    app.router.add_patch(sub, r.update_subscription)
    app.router.add_delete(sub, r.delete_subscription)
    app.router.add_post(sub + ":modifyPushConfig", r.modify_push_config)
    app.router.add_get(sub + ":getIamPolicy", r.get_subscription_iam_policy)
    app.router.add_post(sub + ":setIamPolicy", r.set_subscription_iam_policy)
    app.router.add_post(sub + ":pull", r.pull)
    app.router.add_post(sub + ":acknowledge", r.acknowledge)
    app.router.add_post(sub + ":modifyAckDeadline", r.modify_ack_deadline)
