"""L1 (kind `pubsub-topic`): the telemetry topic devices publish to (Cloud IoT Core was retired in
2023). The dispatcher's Eventarc trigger subscribes to it; each device's account is granted
`roles/pubsub.publisher` on this topic by its `iot-device` resource. Its labels name its owner: an
unlabelled topic is adopted (labelled), another twin's refused and never deleted."""

from __future__ import annotations

import contextlib
from typing import Any

from activities.providers.gcp._common import (
    GcpResource,
    get_or_none,
    ignore_missing,
    labels,
    missing_labels,
    project_of,
    publisher,
)
from activities.registry import register
from shared.engine.errors import TransientError
from shared.engine.types import Action, EnsureResult, ResourceCall
from shared.resources.gcp import PubSubTopicConfig


def topic_path(config: PubSubTopicConfig) -> str:
    return f"projects/{project_of(config)}/topics/{config.name}"


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
                return EnsureResult(action="created")
            topic = self.found(call, config)
            if topic is None:
                raise TransientError(f"Pub/Sub topic {config.name} exists but cannot be read yet")
        if missing_labels(topic.labels, call):
            publisher().update_topic(request={"topic": {"name": name, "labels": {**topic.labels, **labels(call)}},
                                              "update_mask": {"paths": ["labels"]}})
            action = "updated" if action == "unchanged" else action
        return EnsureResult(action=action)

    def details(self, call: ResourceCall, config: PubSubTopicConfig, current: Any) -> dict[str, Any]:
        return {"topic": current.name, "labels": dict(current.labels)}

    def remove(self, call: ResourceCall, config: PubSubTopicConfig, current: Any) -> bool:
        ignore_missing(lambda: publisher().delete_topic(request={"topic": topic_path(config)}))
        return True
