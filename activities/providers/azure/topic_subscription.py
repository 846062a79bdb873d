"""A custom topic's event subscription delivering to one function of a Function App (the
control plane's `twin.*` topic to its own `twin_events`). The function's resource id is the
destination (no webhook handshake, no key in a URL); the plan orders it after the app, whose
ensure finishes only once the function is indexed."""

from __future__ import annotations

from typing import Any

from azure.mgmt.eventgrid import EventGridManagementClient
from azure.mgmt.eventgrid.models import AzureFunctionEventSubscriptionDestination, EventSubscription

from activities.providers.azure._common import (
    ArmResource,
    arm_id,
    enum_str,
    get_or_none,
    mgmt,
    subscription_id,
)
from activities.providers.azure.function_app import function_id
from activities.registry import register
from shared.engine.types import ResourceCall
from shared.resources.azure import TopicSubscriptionConfig

MAX_EVENTS_PER_BATCH = 1


def _topic_id(config: TopicSubscriptionConfig) -> str:
    return arm_id(subscription_id(), config.resource_group, "Microsoft.EventGrid/topics", config.topic)


def _destination(config: TopicSubscriptionConfig) -> str:
    return function_id(config.resource_group, config.function_app, config.function)


@register("azure", "topic-subscription")
class TopicSubscription(ArmResource[TopicSubscriptionConfig]):
    model = TopicSubscriptionConfig
    label = "Event Grid subscription"
    tagged = False  # the resource group's

    def get(self, call: ResourceCall, config: TopicSubscriptionConfig) -> Any:
        client = mgmt(EventGridManagementClient)
        return get_or_none(lambda: client.event_subscriptions.get(_topic_id(config), config.name))

    def differs(self, call: ResourceCall, config: TopicSubscriptionConfig, current: Any) -> list[str]:
        out = []
        dest = current.destination
        if enum_str(getattr(dest, "endpoint_type", "")) != "AzureFunction" or str(
                getattr(dest, "resource_id", "")).lower() != _destination(config).lower():
            out.append("destination")
        if enum_str(current.event_delivery_schema) != config.delivery_schema:
            out.append("event_delivery_schema")
        return out

    def put(self, call: ResourceCall, config: TopicSubscriptionConfig, current: Any) -> None:
        sub = EventSubscription(
            destination=AzureFunctionEventSubscriptionDestination(resource_id=_destination(config),
                                                                  max_events_per_batch=MAX_EVENTS_PER_BATCH),
            event_delivery_schema=config.delivery_schema,
        )
        mgmt(EventGridManagementClient).event_subscriptions.begin_create_or_update(
            _topic_id(config), config.name, sub, polling=False)

    def remove(self, call: ResourceCall, config: TopicSubscriptionConfig, current: Any) -> None:
        mgmt(EventGridManagementClient).event_subscriptions.begin_delete(_topic_id(config), config.name, polling=False)
