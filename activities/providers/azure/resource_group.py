"""Setup: the twin's resource group (location, tags). Deleting it removes everything left in it."""

from __future__ import annotations

from typing import Any

from azure.mgmt.resource.resources import ResourceManagementClient

from activities.providers.azure._common import ArmResource, cfg, get_or_none, location, mgmt, name_of
from activities.registry import register
from shared.engine.errors import PermanentError
from shared.engine.types import ResourceCall


@register("azure", "resource-group")
class ResourceGroup(ArmResource):
    label = "resource group"

    def get(self, call: ResourceCall) -> Any:
        return get_or_none(lambda: mgmt(ResourceManagementClient).resource_groups.get(name_of(call)))

    def differs(self, call: ResourceCall, current: Any) -> list[str]:
        if str(current.location).replace(" ", "").lower() != location(call).replace(" ", "").lower():
            raise PermanentError(
                f"resource group {name_of(call)} exists in {current.location}, not {location(call)}: a resource "
                "group cannot move; delete it or choose the region it is in"
            )
        wanted = dict(cfg(call, "tags", {}) or {})
        have = dict(current.tags or {})
        return ["tags"] if any(have.get(k) != v for k, v in wanted.items()) else []

    def put(self, call: ResourceCall, current: Any) -> None:
        # Tags set by others are kept: merge ours into theirs.
        tags = {**dict((current.tags or {}) if current is not None else {}), **dict(cfg(call, "tags", {}) or {})}
        mgmt(ResourceManagementClient).resource_groups.create_or_update(
            name_of(call), {"location": location(call), "tags": tags}
        )

    def remove(self, call: ResourceCall, current: Any) -> None:
        mgmt(ResourceManagementClient).resource_groups.begin_delete(name_of(call), polling=False)
