"""L1: the Event Grid system topic of the IoT Hub (source = the hub, type Microsoft.Devices.IoTHubs).
It lives in the hub's region: a system topic must sit where its source is."""

from __future__ import annotations

from typing import Any

from azure.mgmt.eventgrid import EventGridManagementClient
from azure.mgmt.eventgrid.models import SystemTopic

from activities.providers.azure._common import ArmResource, get_or_none, mgmt, ref_id
from activities.registry import register
from shared.engine.errors import PermanentError
from shared.engine.types import ResourceCall
from shared.resources.azure import EventGridSystemTopicConfig


@register("azure", "eventgrid-system-topic")
class EventGridSystemTopic(ArmResource[EventGridSystemTopicConfig]):
    model = EventGridSystemTopicConfig
    label = "Event Grid system topic"

    def get(self, call: ResourceCall, config: EventGridSystemTopicConfig) -> Any:
        client = mgmt(EventGridManagementClient)
        return get_or_none(lambda: client.system_topics.get(config.resource_group, config.name))

    def differs(self, call: ResourceCall, config: EventGridSystemTopicConfig, current: Any) -> list[str]:
        source = ref_id(config, config.source)
        if str(current.source).lower() != source.lower() or str(current.topic_type).lower() != config.topic_type.lower():
            raise PermanentError(
                f"Event Grid system topic {config.name} exists for {current.source} ({current.topic_type}); "
                "a system topic cannot change its source: delete it and deploy again"
            )
        return []

    def put(self, call: ResourceCall, config: EventGridSystemTopicConfig, current: Any) -> None:
        topic = SystemTopic(location=config.location, source=ref_id(config, config.source), topic_type=config.topic_type,
                            tags=self.owned_tags(call, config, current))
        mgmt(EventGridManagementClient).system_topics.begin_create_or_update(
            config.resource_group, config.name, topic, polling=False
        )

    def remove(self, call: ResourceCall, config: EventGridSystemTopicConfig, current: Any) -> None:
        mgmt(EventGridManagementClient).system_topics.begin_delete(config.resource_group, config.name, polling=False)
