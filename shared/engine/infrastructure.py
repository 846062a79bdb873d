"""The control plane's own cloud objects, named once: `twin_cli/infrastructure.py` creates them
for `serve --sandbox`, `install` plans them (`shared/plan/control_plane.py`), and
`control_plane/health.py` checks them.

All live in the resource group named after the control plane (`RESOURCE_GROUP` by default;
`install --name N` gives `N`, and the app setting `TWIN_CONTROL_PLANE_NAME` tells the app):
- the `twin.*` events route: a custom Event Grid topic (CloudEvents 1.0) and its subscription
  delivering to this app's `twin_events` function;
- the watch on Azure Resource Manager: a system topic on the subscription whose subscription
  delivers `ResourceWriteSuccess` / `ResourceDeleteSuccess` to `azure_resource_events`;
- the vault holding secret outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.contracts import AZURE_TOKEN_EXCHANGE_AUDIENCE

RESOURCE_GROUP = "twin-control-plane"

EVENTS_TOPIC = "twin-control-plane-events"
EVENTS_SUBSCRIPTION = "twin-events"
EVENTS_FUNCTION = "twin_events"
CLOUD_EVENT_SCHEMA = "CloudEventSchemaV1_0"

WATCH_TOPIC = "twin-control-plane-arm"
WATCH_SUBSCRIPTION = "azure-resource-events"
WATCH_FUNCTION = "azure_resource_events"
SUBSCRIPTION_TOPIC_TYPE = "Microsoft.Resources.Subscriptions"

VAULT_NAME = "twin-control-plane-kv"

# Where the Functions host delivers Event Grid events to a function (the `eventgrid_extension`
# system key on Azure, a function key locally, goes in `code`).
EVENT_GRID_WEBHOOK_PATH = "/runtime/webhooks/eventgrid"


def webhook_url(base_url: str, function: str, key: str) -> str:
    """The Event Grid trigger's webhook for `function` on a Function host at `base_url`."""
    return f"{base_url.rstrip('/')}{EVENT_GRID_WEBHOOK_PATH}?functionName={function}&code={key}"


@dataclass(frozen=True)
class ControlPlaneNames:
    """The names of one control plane's objects that the app looks for (health) and `install`
    creates. The default name gives the module's constants."""

    name: str = RESOURCE_GROUP

    @property
    def resource_group(self) -> str:
        return self.name

    @property
    def events_topic(self) -> str:
        return EVENTS_TOPIC if self.name == RESOURCE_GROUP else f"{self.name}-events"

    @property
    def watch_topic(self) -> str:
        return WATCH_TOPIC if self.name == RESOURCE_GROUP else f"{self.name}-arm"


def names_for(environ: Mapping[str, str]) -> ControlPlaneNames:
    """The names of the control plane this app is (`TWIN_CONTROL_PLANE_NAME`, else the default)."""
    from shared.contracts import ControlPlaneSetting

    return ControlPlaneNames((environ.get(ControlPlaneSetting.CONTROL_PLANE_NAME) or "").strip() or RESOURCE_GROUP)


# --- what the installed control plane's resources yield and its app is given (`install`) ------

class InstallOutput:
    """Outputs of the control plane's own resources (its plan's wires carry them into the app)."""

    STORAGE_BLOB_ENDPOINT = "CONTROL_PLANE_BLOB_ENDPOINT"
    STORAGE_QUEUE_ENDPOINT = "CONTROL_PLANE_QUEUE_ENDPOINT"
    STORAGE_TABLE_ENDPOINT = "CONTROL_PLANE_TABLE_ENDPOINT"
    BUNDLE_CONTAINER_URL = "CONTROL_PLANE_BUNDLE_CONTAINER_URL"
    KEY_VAULT_URL = "CONTROL_PLANE_KEY_VAULT_URL"
    EVENTS_ENDPOINT = "CONTROL_PLANE_EVENTS_ENDPOINT"
    INSIGHTS_CONNECTION_STRING = "CONTROL_PLANE_INSIGHTS_CONNECTION_STRING"
    LOG_ANALYTICS_WORKSPACE_ID = "CONTROL_PLANE_LOG_ANALYTICS_WORKSPACE_ID"
    SCHEDULER_ENDPOINT = "CONTROL_PLANE_SCHEDULER_ENDPOINT"
    AWS_ROLE_ARN = "CONTROL_PLANE_AWS_ROLE_ARN"
    AZURE_TENANT_ID = "AZURE_TENANT_ID"
    APP_URL = "CONTROL_PLANE_URL"


# App settings of the installed app that Functions and its libraries define (identity-based host
# storage: `AzureWebJobsStorage__*`; Application Insights with Entra authentication; the Durable
# Task Scheduler's connection string and task hub, which host.json names).
WEBJOBS_STORAGE_CREDENTIAL = "AzureWebJobsStorage__credential"
WEBJOBS_STORAGE_CLIENT_ID = "AzureWebJobsStorage__clientId"
WEBJOBS_STORAGE_BLOB_URI = "AzureWebJobsStorage__blobServiceUri"
WEBJOBS_STORAGE_QUEUE_URI = "AzureWebJobsStorage__queueServiceUri"
WEBJOBS_STORAGE_TABLE_URI = "AzureWebJobsStorage__tableServiceUri"
INSIGHTS_CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
INSIGHTS_AUTHENTICATION_STRING = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"
DTS_CONNECTION_STRING = "DURABLE_TASK_SCHEDULER_CONNECTION_STRING"
DTS_TASK_HUB = "TASKHUB_NAME"
DTS_ENDPOINT = "DURABLE_TASK_SCHEDULER_ENDPOINT"
"""Wired into the app: the scheduler's endpoint, from which its provider composes the connection string."""

BUNDLE_CONTAINER = "twin-bundles"
AWS_WEB_IDENTITY_AUDIENCE = AZURE_TOKEN_EXCHANGE_AUDIENCE
"""Default audience of the managed identity's token exchanged at AWS STS (the IAM OIDC provider's client id)."""
