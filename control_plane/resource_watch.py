"""The control plane's watch on Azure Resource Manager: an Event Grid system topic on the Azure
subscription (type `Microsoft.Resources.Subscriptions`) whose event subscription delivers
`ResourceWriteSuccess` / `ResourceDeleteSuccess` to this app's `azure_resource_events` trigger.

It belongs to the control plane, not to a twin: one watch serves every twin in the subscription,
and the trigger ignores resources that produce no twin's outputs. The local commands create it in
the sandbox when they start a local host; on Azure it is created once, like the control plane
itself (README, "Running against real Azure and AWS"). Idempotent: a second call writes nothing
when the topic and subscription already match.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from activities.clouds import Clouds

WATCH_RESOURCE_GROUP = "twin-control-plane"
WATCH_TOPIC = "twin-control-plane-arm"
WATCH_SUBSCRIPTION = "azure-resource-events"
WATCH_FUNCTION = "azure_resource_events"
WATCH_EVENT_TYPES = ["Microsoft.Resources.ResourceWriteSuccess", "Microsoft.Resources.ResourceDeleteSuccess"]
SUBSCRIPTION_TOPIC_TYPE = "Microsoft.Resources.Subscriptions"


@dataclass(frozen=True)
class WatchResult:
    topic_id: str
    subscription_id: str
    created: bool


def webhook_url(base_url: str, event_grid_key: str) -> str:
    """The Event Grid trigger's webhook on a Function host (`code` is the `eventgrid_extension`
    system key on Azure; the local host accepts its function key)."""
    return f"{base_url.rstrip('/')}/runtime/webhooks/eventgrid?functionName={WATCH_FUNCTION}&code={event_grid_key}"


def ensure_resource_watch(clouds: Clouds, endpoint_url: str, location: str = "westeurope") -> WatchResult:
    """Create (or keep) the watch topic and its webhook subscription to `endpoint_url`."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.mgmt.eventgrid import EventGridManagementClient
    from azure.mgmt.eventgrid.models import (
        EventSubscription,
        EventSubscriptionFilter,
        SystemTopic,
        WebHookEventSubscriptionDestination,
    )
    from azure.mgmt.resource.resources import ResourceManagementClient

    subscription = clouds.azure_subscription_id()
    resources = clouds.azure_mgmt_client(ResourceManagementClient)
    eventgrid = clouds.azure_mgmt_client(EventGridManagementClient)
    created = False
    if not resources.resource_groups.check_existence(WATCH_RESOURCE_GROUP):
        resources.resource_groups.create_or_update(WATCH_RESOURCE_GROUP, {"location": location})
        created = True
    topic: Any
    try:
        topic = eventgrid.system_topics.get(WATCH_RESOURCE_GROUP, WATCH_TOPIC)
    except ResourceNotFoundError:
        topic = eventgrid.system_topics.begin_create_or_update(
            WATCH_RESOURCE_GROUP, WATCH_TOPIC,
            SystemTopic(location="global", source=f"/subscriptions/{subscription}", topic_type=SUBSCRIPTION_TOPIC_TYPE),
        ).result()
        created = True
    try:
        sub = eventgrid.system_topic_event_subscriptions.get(WATCH_RESOURCE_GROUP, WATCH_TOPIC, WATCH_SUBSCRIPTION)
        # ARM never returns the webhook URL (it may hold a key); compare its visible base instead.
        current_base = str(getattr(sub.destination, "endpoint_base_url", "") or "")
        if current_base and current_base == endpoint_url.split("?", 1)[0]:
            return WatchResult(str(topic.id), str(sub.id), created)
    except ResourceNotFoundError:
        pass
    sub = eventgrid.system_topic_event_subscriptions.begin_create_or_update(
        WATCH_RESOURCE_GROUP, WATCH_TOPIC, WATCH_SUBSCRIPTION,
        EventSubscription(
            destination=WebHookEventSubscriptionDestination(endpoint_url=endpoint_url),
            filter=EventSubscriptionFilter(included_event_types=list(WATCH_EVENT_TYPES)),
        ),
    ).result()
    return WatchResult(str(topic.id), str(sub.id), True)
