"""The control plane's own cloud objects, named once: `twin_cli/infrastructure.py` creates them
(locally; `install` on Azure), `control_plane/health.py` checks them.

All live in the resource group `RESOURCE_GROUP` of the control plane's subscription:
- the `twin.*` events route: a custom Event Grid topic (CloudEvents 1.0) and its subscription
  delivering to this app's `twin_events` function;
- the watch on Azure Resource Manager: a system topic on the subscription whose subscription
  delivers `ResourceWriteSuccess` / `ResourceDeleteSuccess` to `azure_resource_events`;
- the vault holding secret outputs.
"""

from __future__ import annotations

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
