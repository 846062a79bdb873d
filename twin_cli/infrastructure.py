"""The control plane's own infrastructure, created once and shared by every twin: the resource
group `twin-control-plane`, holding

- the **watch** on Azure Resource Manager: an Event Grid system topic on the subscription (type
  `Microsoft.Resources.Subscriptions`) whose event subscription delivers `ResourceWriteSuccess` /
  `ResourceDeleteSuccess` to this app's `azure_resource_events` trigger (the trigger ignores
  resources that produce no twin's outputs);
- the **vault** where secret outputs live (`activities/secrets.py`);
- the **bundle store**, a blob container where deployment bundles (users' code) are kept
  content-addressed (`activities/bundle_store.py`); in the sandbox, on Azurite.

On Azure the operator creates them with the control plane (README, "Running against real Azure
and AWS"); locally the commands that start a local host against the sandbox do
(`sandbox_settings`, `serve --sandbox`). Idempotent: what exists is only read.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

from activities.clouds import Clouds, clouds_from_environ
from shared.contracts import ArmEventType, ControlPlaneSetting

RESOURCE_GROUP = "twin-control-plane"
WATCH_TOPIC = "twin-control-plane-arm"
WATCH_SUBSCRIPTION = "azure-resource-events"
WATCH_FUNCTION = "azure_resource_events"
SUBSCRIPTION_TOPIC_TYPE = "Microsoft.Resources.Subscriptions"


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
    eventgrid = clouds.azure_mgmt_client(EventGridManagementClient)
    created = ensure_group(clouds.azure_mgmt_client(ResourceManagementClient), location)
    topic: Any
    try:
        topic = eventgrid.system_topics.get(RESOURCE_GROUP, WATCH_TOPIC)
    except ResourceNotFoundError:
        topic = eventgrid.system_topics.begin_create_or_update(
            RESOURCE_GROUP, WATCH_TOPIC,
            SystemTopic(location="global", source=f"/subscriptions/{subscription}", topic_type=SUBSCRIPTION_TOPIC_TYPE),
        ).result()
        created = True
    try:
        sub = eventgrid.system_topic_event_subscriptions.get(RESOURCE_GROUP, WATCH_TOPIC, WATCH_SUBSCRIPTION)
        # ARM never returns the webhook URL (it may hold a key); compare its visible base instead.
        current_base = str(getattr(sub.destination, "endpoint_base_url", "") or "")
        if current_base and current_base == endpoint_url.split("?", 1)[0]:
            return WatchResult(str(topic.id), str(sub.id), created)
    except ResourceNotFoundError:
        pass
    sub = eventgrid.system_topic_event_subscriptions.begin_create_or_update(
        RESOURCE_GROUP, WATCH_TOPIC, WATCH_SUBSCRIPTION,
        EventSubscription(
            destination=WebHookEventSubscriptionDestination(endpoint_url=endpoint_url),
            filter=EventSubscriptionFilter(included_event_types=[str(t) for t in ArmEventType]),
        ),
    ).result()
    return WatchResult(str(topic.id), str(sub.id), True)


VAULT_NAME = "twin-control-plane-kv"
VAULT_API_VERSION = "2023-07-01"


def ensure_vault(clouds: Clouds, location: str = "westeurope") -> str:
    """The vault's URL (`properties.vaultUri`), creating the vault (and its group) if missing."""
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
        )).result()
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
