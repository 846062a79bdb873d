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

from activities.providers.azure._common import (
    ArmResource,
    cfg,
    enum_str,
    get_or_none,
    location,
    mgmt,
    name_of,
    resource_group,
)
from activities.registry import register
from shared.contracts import Output
from shared.engine.errors import TransientError
from shared.engine.types import ResourceCall


@register("azure", "grafana")
class Grafana(ArmResource):
    label = "Managed Grafana"

    def get(self, call: ResourceCall) -> Any:
        return get_or_none(lambda: mgmt(DashboardManagementClient).grafana.get(resource_group(call), name_of(call)))

    def differs(self, call: ResourceCall, current: Any) -> list[str]:
        out = []
        if current.sku is None or current.sku.name != cfg(call, "sku", "Standard"):
            out.append("sku")
        api_key = enum_str(current.properties.api_key if current.properties else "")
        if api_key.lower() != str(cfg(call, "api_key", "Enabled")).lower():
            out.append("api_key")
        return out

    def put(self, call: ResourceCall, current: Any) -> None:
        body = ManagedGrafana(
            location=location(call),
            sku=ResourceSku(name=cfg(call, "sku", "Standard")),
            identity=ManagedServiceIdentity(type="SystemAssigned"),
            properties=ManagedGrafanaProperties(api_key=cfg(call, "api_key", "Enabled"), zone_redundancy="Disabled",
                                                public_network_access="Enabled"),
            tags=dict((current.tags or {}) if current is not None else {}),
        )
        mgmt(DashboardManagementClient).grafana.begin_create(resource_group(call), name_of(call), body, polling=False)

    def remove(self, call: ResourceCall, current: Any) -> None:
        mgmt(DashboardManagementClient).grafana.begin_delete(resource_group(call), name_of(call), polling=False)

    def outputs(self, call: ResourceCall, current: Any) -> dict[str, str]:
        endpoint = current.properties.endpoint if current.properties else None
        if not endpoint:
            raise TransientError(f"Managed Grafana {name_of(call)}: no endpoint yet")
        return {Output.GRAFANA_URL: str(endpoint)}
