"""Setup: the twin's resource group (location, tags). Deleting it removes everything left in it."""

from __future__ import annotations

from typing import Any

from azure.mgmt.resource.resources import ResourceManagementClient

from activities.providers.azure._common import ArmResource, get_or_none, mgmt
from activities.registry import register
from shared.engine.errors import PermanentError
from shared.engine.types import ResourceCall
from shared.resources.azure import AzureResourceGroupConfig


def _region(value: str) -> str:
    return value.replace(" ", "").lower()


@register("azure", "resource-group")
class ResourceGroup(ArmResource[AzureResourceGroupConfig]):
    model = AzureResourceGroupConfig
    label = "resource group"

    def get(self, call: ResourceCall, config: AzureResourceGroupConfig) -> Any:
        return get_or_none(lambda: mgmt(ResourceManagementClient).resource_groups.get(config.name))

    def differs(self, call: ResourceCall, config: AzureResourceGroupConfig, current: Any) -> list[str]:
        if _region(str(current.location)) != _region(config.location):
            raise PermanentError(
                f"resource group {config.name} exists in {current.location}, not {config.location}: a resource "
                "group cannot move; delete it or choose the region it is in"
            )
        have = dict(current.tags or {})
        return ["tags"] if any(have.get(k) != v for k, v in config.tags.items()) else []

    def put(self, call: ResourceCall, config: AzureResourceGroupConfig, current: Any) -> None:
        # Tags set by others are kept: merge ours (the owner's among them) into theirs.
        tags = {**self.owned_tags(call, config, current), **config.tags}
        mgmt(ResourceManagementClient).resource_groups.create_or_update(
            config.name, {"location": config.location, "tags": tags}
        )

    def remove(self, call: ResourceCall, config: AzureResourceGroupConfig, current: Any) -> None:
        mgmt(ResourceManagementClient).resource_groups.begin_delete(config.name, polling=False)
