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

from activities.providers.azure._common import (
    ArmResource,
    cfg,
    enum_str,
    get_or_none,
    mgmt,
    name_of,
    resource_group,
)
from activities.providers.azure.function_app import function_id
from activities.registry import register
from shared.engine.types import ResourceCall

MAX_EVENTS_PER_BATCH = 1
PREFERRED_BATCH_KB = 64


def _destination(call: ResourceCall) -> str:
    return function_id(call, str(cfg(call, "function_app")), str(cfg(call, "function")))


@register("azure", "event-subscription")
class EventSubscriptionToFunction(ArmResource):
    label = "Event Grid subscription"

    def get(self, call: ResourceCall) -> Any:
        client = mgmt(EventGridManagementClient)
        return get_or_none(lambda: client.system_topic_event_subscriptions.get(
            resource_group(call), str(cfg(call, "system_topic")), name_of(call)))

    def differs(self, call: ResourceCall, current: Any) -> list[str]:
        out = []
        dest = current.destination
        if enum_str(getattr(dest, "endpoint_type", "")) != "AzureFunction" or str(
            getattr(dest, "resource_id", "")
        ).lower() != _destination(call).lower():
            out.append("destination")
        have = sorted((current.filter.included_event_types or []) if current.filter else [])
        if have != sorted(cfg(call, "included_event_types", [])):
            out.append("filter")
        return out

    def put(self, call: ResourceCall, current: Any) -> None:
        sub = EventSubscription(
            destination=AzureFunctionEventSubscriptionDestination(
                resource_id=_destination(call), max_events_per_batch=MAX_EVENTS_PER_BATCH,
                preferred_batch_size_in_kilobytes=PREFERRED_BATCH_KB,
            ),
            filter=EventSubscriptionFilter(included_event_types=list(cfg(call, "included_event_types", [])),
                                           is_subject_case_sensitive=False),
        )
        mgmt(EventGridManagementClient).system_topic_event_subscriptions.begin_create_or_update(
            resource_group(call), str(cfg(call, "system_topic")), name_of(call), sub, polling=False
        )

    def remove(self, call: ResourceCall, current: Any) -> None:
        mgmt(EventGridManagementClient).system_topic_event_subscriptions.begin_delete(
            resource_group(call), str(cfg(call, "system_topic")), name_of(call), polling=False
        )
