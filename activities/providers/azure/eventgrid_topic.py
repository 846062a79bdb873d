"""The control plane's custom Event Grid topic for `twin.*` events (CloudEvents 1.0). With local
auth off, publishers authenticate with Entra and need "EventGrid Data Sender" on it; its
`endpoint` is the output the app gets as `TWIN_EVENTS_ENDPOINT`."""

from __future__ import annotations

from typing import Any

from azure.mgmt.eventgrid import EventGridManagementClient
from azure.mgmt.eventgrid.models import Topic

from activities.providers.azure._common import ArmResource, enum_str, get_or_none, mgmt
from activities.registry import register
from shared.engine.errors import PermanentError
from shared.engine.types import ResourceCall
from shared.resources.azure import EventGridTopicConfig


@register("azure", "eventgrid-topic")
class EventGridTopic(ArmResource[EventGridTopicConfig]):
    model = EventGridTopicConfig
    label = "Event Grid topic"

    def get(self, call: ResourceCall, config: EventGridTopicConfig) -> Any:
        client = mgmt(EventGridManagementClient)
        return get_or_none(lambda: client.topics.get(config.resource_group, config.name))

    def differs(self, call: ResourceCall, config: EventGridTopicConfig, current: Any) -> list[str]:
        if enum_str(current.input_schema) != config.input_schema:
            raise PermanentError(f"Event Grid topic {config.name} takes {enum_str(current.input_schema)}, not "
                                 f"{config.input_schema}: a topic's input schema cannot change; delete it and install again")
        return [] if bool(current.disable_local_auth) == (not config.local_auth) else ["disable_local_auth"]

    def put(self, call: ResourceCall, config: EventGridTopicConfig, current: Any) -> None:
        topic = Topic(location=config.location, input_schema=config.input_schema,
                      disable_local_auth=not config.local_auth,
                      tags=self.owned_tags(call, config, current))
        mgmt(EventGridManagementClient).topics.begin_create_or_update(config.resource_group, config.name, topic,
                                                                      polling=False)

    def remove(self, call: ResourceCall, config: EventGridTopicConfig, current: Any) -> None:
        mgmt(EventGridManagementClient).topics.begin_delete(config.resource_group, config.name, polling=False)

    def outputs(self, call: ResourceCall, config: EventGridTopicConfig, current: Any) -> dict[str, str]:
        return {name: str(current.endpoint) for name in call.resource.produces}
