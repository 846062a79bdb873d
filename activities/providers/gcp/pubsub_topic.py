"""L1 (kind `pubsub-topic`): the telemetry topic devices publish to (Cloud IoT Core was retired in
2023), and the feedback topic the twin's functions publish to for devices. The dispatcher's
Eventarc trigger subscribes to the first; each device's account is granted `roles/pubsub.publisher`
on it by its `iot-device` resource, which also makes the device's feedback subscription. The
config's `publishers` (the functions' account, on the feedback topic) get `roles/pubsub.publisher`
on this topic only. Yields `FEEDBACK_TOPIC` (its path) when planned to. Its labels name its owner:
an unlabelled topic is adopted (labelled), another twin's refused and never deleted."""

from __future__ import annotations

import contextlib
from typing import Any

from activities.providers.gcp._common import (
    GcpResource,
    account_email,
    change_policy,
    get_or_none,
    ignore_missing,
    labels,
    missing_labels,
    project_of,
    publisher,
)
from activities.registry import register
from shared.contracts import Output
from shared.engine.errors import TransientError
from shared.engine.types import Action, EnsureResult, ResourceCall
from shared.resources.gcp import PubSubTopicConfig

PUBLISHER = "roles/pubsub.publisher"


def topic_path(config: PubSubTopicConfig) -> str:
    return f"projects/{project_of(config)}/topics/{config.name}"


def _outputs(call: ResourceCall, config: PubSubTopicConfig) -> dict[str, str]:
    return {str(Output.FEEDBACK_TOPIC): topic_path(config)} if Output.FEEDBACK_TOPIC in call.resource.produces else {}


def _grant_publishers(config: PubSubTopicConfig) -> bool:
    if not config.publishers:
        return False
    client, topic = publisher(), topic_path(config)
    members = {f"serviceAccount:{account_email(a, project_of(config))}" for a in config.publishers}
    return change_policy(lambda: client.get_iam_policy(request={"resource": topic}),
                         lambda p: client.set_iam_policy(request={"resource": topic, "policy": p}),
                         PUBLISHER, add=members)


@register("gcp", "pubsub-topic")
class PubSubTopic(GcpResource[PubSubTopicConfig]):
    model = PubSubTopicConfig
    label = "Pub/Sub topic"

    def describe(self, call: ResourceCall, config: PubSubTopicConfig) -> Any:
        return get_or_none(lambda: publisher().get_topic(request={"topic": topic_path(config)}))

    def converge(self, call: ResourceCall, config: PubSubTopicConfig, action: Action) -> EnsureResult:
        from google.api_core.exceptions import Conflict

        name = topic_path(config)
        topic = self.found(call, config)
        if topic is None:
            with contextlib.suppress(Conflict):  # created meanwhile: read (and its owner checked) below
                publisher().create_topic(request={"name": name, "labels": labels(call)})
                _grant_publishers(config)
                return EnsureResult(action="created", outputs=_outputs(call, config))
            topic = self.found(call, config)
            if topic is None:
                raise TransientError(f"Pub/Sub topic {config.name} exists but cannot be read yet")
        if missing_labels(topic.labels, call):
            publisher().update_topic(request={"topic": {"name": name, "labels": {**topic.labels, **labels(call)}},
                                              "update_mask": {"paths": ["labels"]}})
            action = "updated" if action == "unchanged" else action
        if _grant_publishers(config):
            action = "updated" if action == "unchanged" else action
        return EnsureResult(action=action, outputs=_outputs(call, config))

    def outputs(self, call: ResourceCall, config: PubSubTopicConfig, current: Any) -> dict[str, str]:
        return _outputs(call, config)

    def details(self, call: ResourceCall, config: PubSubTopicConfig, current: Any) -> dict[str, Any]:
        return {"topic": current.name, "labels": dict(current.labels)}

    def remove(self, call: ResourceCall, config: PubSubTopicConfig, current: Any) -> bool:
        ignore_missing(lambda: publisher().delete_topic(request={"topic": topic_path(config)}))
        return True
