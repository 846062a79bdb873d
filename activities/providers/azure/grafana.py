"""L5: Azure Managed Grafana (Standard, system-assigned identity, API keys enabled).
Output: its endpoint URL."""

from __future__ import annotations

from typing import Any

from azure.mgmt.dashboard import DashboardManagementClient
from azure.mgmt.dashboard.models import (
    ManagedGrafana,
    ManagedGrafanaProperties,
    ManagedServiceIdentity,
    ResourceSku,
)

from activities.providers.azure._common import ArmResource, enum_str, get_or_none, mgmt
from activities.registry import register
from shared.contracts import Output
from shared.engine.errors import TransientError
from shared.engine.types import ResourceCall
from shared.resources.azure import AzureGrafanaConfig


@register("azure", "grafana")
class Grafana(ArmResource[AzureGrafanaConfig]):
    model = AzureGrafanaConfig
    label = "Managed Grafana"

    def get(self, call: ResourceCall, config: AzureGrafanaConfig) -> Any:
        return get_or_none(lambda: mgmt(DashboardManagementClient).grafana.get(config.resource_group, config.name))

    def differs(self, call: ResourceCall, config: AzureGrafanaConfig, current: Any) -> list[str]:
        out = []
        if current.sku is None or current.sku.name != config.sku:
            out.append("sku")
        api_key = enum_str(current.properties.api_key if current.properties else "")
        if api_key.lower() != config.api_key.lower():
            out.append("api_key")
        return out

    def put(self, call: ResourceCall, config: AzureGrafanaConfig, current: Any) -> None:
        body = ManagedGrafana(
            location=config.location,
            sku=ResourceSku(name=config.sku),
            identity=ManagedServiceIdentity(type="SystemAssigned"),
            properties=ManagedGrafanaProperties(api_key=config.api_key, zone_redundancy="Disabled",
                                                public_network_access="Enabled"),
            tags=self.owned_tags(call, config, current),
        )
        mgmt(DashboardManagementClient).grafana.begin_create(config.resource_group, config.name, body, polling=False)

    def remove(self, call: ResourceCall, config: AzureGrafanaConfig, current: Any) -> None:
        mgmt(DashboardManagementClient).grafana.begin_delete(config.resource_group, config.name, polling=False)

    def outputs(self, call: ResourceCall, config: AzureGrafanaConfig, current: Any) -> dict[str, str]:
        endpoint = current.properties.endpoint if current.properties else None
        if not endpoint:
            raise TransientError(f"Managed Grafana {config.name}: no endpoint yet")
        return {Output.GRAFANA_URL: str(endpoint)}
