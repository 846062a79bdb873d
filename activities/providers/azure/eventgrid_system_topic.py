"""L1: the Event Grid system topic of the IoT Hub (source = the hub, type Microsoft.Devices.IoTHubs).
It lives in the hub's region: a system topic must sit where its source is."""

from __future__ import annotations

from typing import Any

from azure.mgmt.eventgrid import EventGridManagementClient
from azure.mgmt.eventgrid.models import SystemTopic

from activities.providers.azure._common import (
    ArmResource,
    cfg,
    get_or_none,
    location,
    mgmt,
    name_of,
    ref_id,
    resource_group,
)
from activities.registry import register
from shared.engine.errors import PermanentError
from shared.engine.types import ResourceCall


@register("azure", "eventgrid-system-topic")
class EventGridSystemTopic(ArmResource):
    label = "Event Grid system topic"

    def get(self, call: ResourceCall) -> Any:
        client = mgmt(EventGridManagementClient)
        return get_or_none(lambda: client.system_topics.get(resource_group(call), name_of(call)))

    def differs(self, call: ResourceCall, current: Any) -> list[str]:
        source = ref_id(call, cfg(call, "source"), "source")
        if str(current.source).lower() != source.lower() or str(current.topic_type).lower() != str(
            cfg(call, "topic_type")
        ).lower():
            raise PermanentError(
                f"Event Grid system topic {name_of(call)} exists for {current.source} ({current.topic_type}); "
                "a system topic cannot change its source: delete it and deploy again"
            )
        return []

    def put(self, call: ResourceCall, current: Any) -> None:
        topic = SystemTopic(location=location(call), source=ref_id(call, cfg(call, "source"), "source"),
                            topic_type=str(cfg(call, "topic_type")))
        mgmt(EventGridManagementClient).system_topics.begin_create_or_update(
            resource_group(call), name_of(call), topic, polling=False
        )

    def remove(self, call: ResourceCall, current: Any) -> None:
        mgmt(EventGridManagementClient).system_topics.begin_delete(resource_group(call), name_of(call), polling=False)
