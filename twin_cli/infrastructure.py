"""The control plane's own infrastructure, created once and shared by every twin: the resource
group `twin-control-plane` (names: `shared/engine/infrastructure.py`), holding

- the **events route**: a custom Event Grid topic (CloudEvents 1.0) for the `twin.*` events the
  engine publishes, and its subscription delivering them to this app's `twin_events` trigger;
- the **watch** on Azure Resource Manager: an Event Grid system topic on the subscription (type
  `Microsoft.Resources.Subscriptions`) whose event subscription delivers `ResourceWriteSuccess` /
  `ResourceDeleteSuccess` to this app's `azure_resource_events` trigger (the trigger ignores
  resources that produce no twin's outputs);
- the **vault** where secret outputs live (`activities/secrets.py`);
- the **bundle store**, a blob container where deployment bundles (users' code) are kept
  content-addressed (`activities/bundle_store.py`); in the sandbox, on Azurite.

On Azure the operator creates them with the control plane (README, "Running against real Azure
and AWS"); locally the commands that start a local host against the sandbox do
(`sandbox_settings`, `serve --sandbox`). Idempotent: what exists is only read. Every call is
retried on failure (`with_retries`): startup work meets throttling and operations that fail once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from activities.clouds import Clouds, clouds_from_environ
from shared.contracts import ArmEventType, ControlPlaneSetting
from shared.engine.errors import classify
from shared.engine.infrastructure import (
    CLOUD_EVENT_SCHEMA,
    EVENTS_FUNCTION,
    EVENTS_SUBSCRIPTION,
    EVENTS_TOPIC,
    RESOURCE_GROUP,
    SUBSCRIPTION_TOPIC_TYPE,
    VAULT_NAME,
    WATCH_FUNCTION,
    WATCH_SUBSCRIPTION,
    WATCH_TOPIC,
)
from shared.engine.infrastructure import webhook_url as function_webhook

log = logging.getLogger("twin_cli.infrastructure")
T = TypeVar("T")
__all__ = ["RESOURCE_GROUP", "WATCH_FUNCTION", "EVENTS_FUNCTION", "VAULT_NAME"]


def _polling(clouds: Clouds) -> dict[str, float]:
    """How often to poll a long operation: azure-core waits 30 s between polls when the answer
    gives no Retry-After, which the sandbox's slow operations (and some of Azure's) do not."""
    return {"polling_interval": 0.2 if clouds.is_sandbox else 5.0}


def _succeeded(resource: Any) -> bool:
    """An Event Grid resource that exists and is usable (an operation that failed leaves it Failed)."""
    return resource is not None and str(getattr(resource, "provisioning_state", "") or "") == "Succeeded"


class InfrastructureError(Exception):
    """A piece of the control plane's infrastructure could not be made; the text says which and why."""


def with_retries(what: str, call: Callable[[], T], attempts: int = 6, first_delay: float = 0.5,
                 stop: Callable[[], bool] = lambda: False) -> T:
    """`call()`, again after a growing pause when it fails (every call here is idempotent, and at
    startup 429s, 503s and operations that fail once are expected); the last failure is raised
    as an `InfrastructureError` naming `what`, with the classified, redacted reason."""
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as exc:
            reason = str(classify(exc))
            if attempt == attempts or stop():
                raise InfrastructureError(f"{what}: {reason} (after {attempt} attempt(s))") from None
            log.info("%s failed (attempt %d of %d), retrying in %.1f s: %s", what, attempt, attempts, delay, reason)
            time.sleep(delay)
            delay = min(delay * 2, 8.0)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class WatchResult:
    topic_id: str
    subscription_id: str
    created: bool


def ensure_group(arm: Any, location: str) -> bool:
    """The control plane's resource group (True if this call created it)."""
    if arm.resource_groups.check_existence(RESOURCE_GROUP):
        return False
    arm.resource_groups.create_or_update(RESOURCE_GROUP, {"location": location})
    return True


def webhook_url(base_url: str, event_grid_key: str, function: str = WATCH_FUNCTION) -> str:
    """The Event Grid trigger's webhook on a Function host (`code` is the `eventgrid_extension`
    system key on Azure; the local host accepts its function key)."""
    return function_webhook(base_url, function, event_grid_key)


def ensure_resource_watch(clouds: Clouds, endpoint_url: str, location: str = "westeurope") -> WatchResult:
    """Create (or keep) the watch topic and its webhook subscription to `endpoint_url` (retried)."""
    return with_retries("the watch on Azure Resource Manager events",
                        lambda: _ensure_resource_watch(clouds, endpoint_url, location))


def _ensure_resource_watch(clouds: Clouds, endpoint_url: str, location: str) -> WatchResult:
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
    eventgrid = clouds.azure_mgmt_client(EventGridManagementClient)
    created = ensure_group(clouds.azure_mgmt_client(ResourceManagementClient), location)
    topic: Any = None
    with contextlib.suppress(ResourceNotFoundError):
        topic = eventgrid.system_topics.get(RESOURCE_GROUP, WATCH_TOPIC)
    if not _succeeded(topic):  # missing, or left Failed by an operation that failed: (re)made
        topic = eventgrid.system_topics.begin_create_or_update(
            RESOURCE_GROUP, WATCH_TOPIC,
            SystemTopic(location="global", source=f"/subscriptions/{subscription}", topic_type=SUBSCRIPTION_TOPIC_TYPE),
            **_polling(clouds),
        ).result()
        created = True
    try:
        sub = eventgrid.system_topic_event_subscriptions.get(RESOURCE_GROUP, WATCH_TOPIC, WATCH_SUBSCRIPTION)
        # ARM never returns the webhook URL (it may hold a key); compare its visible base instead.
        current_base = str(getattr(sub.destination, "endpoint_base_url", "") or "")
        if current_base and current_base == endpoint_url.split("?", 1)[0] and _succeeded(sub):
            return WatchResult(str(topic.id), str(sub.id), created)
    except ResourceNotFoundError:
        pass
    sub = eventgrid.system_topic_event_subscriptions.begin_create_or_update(
        RESOURCE_GROUP, WATCH_TOPIC, WATCH_SUBSCRIPTION,
        EventSubscription(
            destination=WebHookEventSubscriptionDestination(endpoint_url=endpoint_url),
            filter=EventSubscriptionFilter(included_event_types=[str(t) for t in ArmEventType]),
        ),
        **_polling(clouds),
    ).result()
    return WatchResult(str(topic.id), str(sub.id), True)


VAULT_API_VERSION = "2023-07-01"


@dataclass(frozen=True)
class EventsTopic:
    """The `twin.*` events topic: what a publisher needs (endpoint and access key) and its id."""

    topic_id: str
    endpoint: str
    key: str


def ensure_events_topic(clouds: Clouds, location: str = "westeurope") -> EventsTopic:
    """The custom topic the engine publishes `twin.*` CloudEvents to (created if missing; retried)."""
    return with_retries("the twin events topic", lambda: _ensure_events_topic(clouds, location))


def _ensure_events_topic(clouds: Clouds, location: str) -> EventsTopic:
    from azure.core.exceptions import ResourceNotFoundError
    from azure.mgmt.eventgrid import EventGridManagementClient
    from azure.mgmt.eventgrid.models import Topic
    from azure.mgmt.resource.resources import ResourceManagementClient

    eventgrid = clouds.azure_mgmt_client(EventGridManagementClient)
    topic: Any = None
    with contextlib.suppress(ResourceNotFoundError):
        topic = eventgrid.topics.get(RESOURCE_GROUP, EVENTS_TOPIC)
    if not _succeeded(topic):  # missing, or left Failed by an operation that failed: (re)made
        ensure_group(clouds.azure_mgmt_client(ResourceManagementClient), location)
        topic = eventgrid.topics.begin_create_or_update(
            RESOURCE_GROUP, EVENTS_TOPIC, Topic(location=location, input_schema=CLOUD_EVENT_SCHEMA),
            **_polling(clouds)).result()
    keys = eventgrid.topics.list_shared_access_keys(RESOURCE_GROUP, EVENTS_TOPIC)
    return EventsTopic(str(topic.id), str(topic.endpoint), str(keys.key1))


def ensure_events_subscription(clouds: Clouds, topic: EventsTopic, endpoint_url: str) -> str:
    """The topic's subscription delivering every `twin.*` event to `endpoint_url` (this app's
    `twin_events` webhook), as CloudEvents; kept when it already delivers there (retried)."""
    return with_retries("the twin events subscription",
                        lambda: _ensure_events_subscription(clouds, topic, endpoint_url))


def _ensure_events_subscription(clouds: Clouds, topic: EventsTopic, endpoint_url: str) -> str:
    from azure.core.exceptions import ResourceNotFoundError
    from azure.mgmt.eventgrid import EventGridManagementClient
    from azure.mgmt.eventgrid.models import EventSubscription, WebHookEventSubscriptionDestination

    eventgrid = clouds.azure_mgmt_client(EventGridManagementClient)
    try:
        sub = eventgrid.event_subscriptions.get(topic.topic_id, EVENTS_SUBSCRIPTION)
        # ARM never returns the webhook URL (it holds a key); compare its visible base instead.
        base = str(getattr(sub.destination, "endpoint_base_url", "") or "")
        if base and base == endpoint_url.split("?", 1)[0] and _succeeded(sub):
            return str(sub.id)
    except ResourceNotFoundError:
        pass
    sub = eventgrid.event_subscriptions.begin_create_or_update(
        topic.topic_id, EVENTS_SUBSCRIPTION,
        EventSubscription(destination=WebHookEventSubscriptionDestination(endpoint_url=endpoint_url),
                          event_delivery_schema=CLOUD_EVENT_SCHEMA),
        **_polling(clouds),
    ).result()
    return str(sub.id)


def ensure_vault(clouds: Clouds, location: str = "westeurope") -> str:
    """The vault's URL (`properties.vaultUri`), creating the vault (and its group) if missing (retried)."""
    return with_retries("the control plane's vault", lambda: _ensure_vault(clouds, location))


def _ensure_vault(clouds: Clouds, location: str) -> str:
    from azure.core.exceptions import ResourceNotFoundError
    from azure.mgmt.resource.resources import ResourceManagementClient
    from azure.mgmt.resource.resources.models import GenericResource

    subscription = clouds.azure_subscription_id()
    arm = clouds.azure_mgmt_client(ResourceManagementClient)
    vault_id = (f"/subscriptions/{subscription}/resourceGroups/{RESOURCE_GROUP}"
                f"/providers/Microsoft.KeyVault/vaults/{VAULT_NAME}")
    try:
        vault = arm.resources.get_by_id(vault_id, api_version=VAULT_API_VERSION)
    except ResourceNotFoundError:
        ensure_group(arm, location)
        tenant = str(clouds.endpoints.get("azure", {}).get("tenant_id", "")) if clouds.is_sandbox else ""
        vault = arm.resources.begin_create_or_update_by_id(vault_id, api_version=VAULT_API_VERSION, parameters=GenericResource(
            location=location,
            properties={"tenantId": tenant, "sku": {"family": "A", "name": "standard"},
                        "enableSoftDelete": True, "softDeleteRetentionInDays": 7,
                        # Locally any sandbox principal may use it; on Azure use RBAC and grant the
                        # control plane's identity "Key Vault Secrets Officer".
                        "enableRbacAuthorization": False, "accessPolicies": []},
        ), **_polling(clouds)).result()
    return str((vault.properties or {})["vaultUri"])


BUNDLE_CONTAINER = "twin-bundles"


def ensure_bundle_container(clouds: Clouds) -> str | None:
    """The sandbox's bundle container URL (created if missing), or None when the sandbox runs
    without Blob. On Azure the operator creates the container and sets the URL (README)."""
    from azure.core.exceptions import ResourceExistsError

    account_url = str((clouds.endpoints.get("blob") or {}).get("account_url") or "")
    if not account_url:
        return None
    url = f"{account_url.rstrip('/')}/{BUNDLE_CONTAINER}"
    container = clouds.blob_container(url)
    with contextlib.suppress(ResourceExistsError):
        container.create_container()
    return url


def sandbox_settings(environ: dict[str, str]) -> dict[str, str]:
    """App settings a local control plane needs beside `environ` (which names the sandbox): the
    vault's URL and the bundle store's, unless the process environment already names them."""
    clouds = clouds_from_environ({**os.environ, **environ})
    out: dict[str, str] = {}
    if ControlPlaneSetting.KEY_VAULT_URL not in os.environ:
        out[ControlPlaneSetting.KEY_VAULT_URL] = ensure_vault(clouds)
    if ControlPlaneSetting.BUNDLE_CONTAINER_URL not in os.environ:
        url = ensure_bundle_container(clouds)
        if url is not None:
            out[ControlPlaneSetting.BUNDLE_CONTAINER_URL] = url
    return out
