"""L1 / L4: an Event Grid subscription on the IoT Hub's system topic delivering to a function of
a Function App (the dispatcher, the ADT updater). The function resource id is used as the
destination (no webhook handshake); the plan orders it after the app, whose ensure only finishes
once the function is indexed."""

from __future__ import annotations

from typing import Any

from azure.mgmt.eventgrid import EventGridManagementClient
from azure.mgmt.eventgrid.models import (
    AzureFunctionEventSubscriptionDestination,
    EventSubscription,
    EventSubscriptionFilter,
)

from activities.providers.azure._common import ArmResource, enum_str, get_or_none, mgmt
from activities.providers.azure.function_app import function_id
from activities.registry import register
from shared.engine.types import ResourceCall
from shared.resources.azure import EventSubscriptionConfig

MAX_EVENTS_PER_BATCH = 1
PREFERRED_BATCH_KB = 64


def _destination(config: EventSubscriptionConfig) -> str:
    return function_id(config.resource_group, config.function_app, str(config.function))


@register("azure", "event-subscription")
class EventSubscriptionToFunction(ArmResource[EventSubscriptionConfig]):
    model = EventSubscriptionConfig
    label = "Event Grid subscription"
    tagged = False  # the resource group's

    def get(self, call: ResourceCall, config: EventSubscriptionConfig) -> Any:
        client = mgmt(EventGridManagementClient)
        return get_or_none(lambda: client.system_topic_event_subscriptions.get(
            config.resource_group, config.system_topic, config.name))

    def differs(self, call: ResourceCall, config: EventSubscriptionConfig, current: Any) -> list[str]:
        out = []
        dest = current.destination
        if enum_str(getattr(dest, "endpoint_type", "")) != "AzureFunction" or str(
            getattr(dest, "resource_id", "")
        ).lower() != _destination(config).lower():
            out.append("destination")
        have = sorted((current.filter.included_event_types or []) if current.filter else [])
        if have != sorted(config.included_event_types):
            out.append("filter")
        return out

    def put(self, call: ResourceCall, config: EventSubscriptionConfig, current: Any) -> None:
        sub = EventSubscription(
            destination=AzureFunctionEventSubscriptionDestination(
                resource_id=_destination(config), max_events_per_batch=MAX_EVENTS_PER_BATCH,
                preferred_batch_size_in_kilobytes=PREFERRED_BATCH_KB,
            ),
            filter=EventSubscriptionFilter(included_event_types=list(config.included_event_types),
                                           is_subject_case_sensitive=False),
        )
        mgmt(EventGridManagementClient).system_topic_event_subscriptions.begin_create_or_update(
            config.resource_group, config.system_topic, config.name, sub, polling=False
        )

    def remove(self, call: ResourceCall, config: EventSubscriptionConfig, current: Any) -> None:
        mgmt(EventGridManagementClient).system_topic_event_subscriptions.begin_delete(
            config.resource_group, config.system_topic, config.name, polling=False
        )
