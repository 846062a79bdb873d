"""L3 cold / archive: a private blob container in the setup storage account.

A container has no access tier of its own; the tier (Cool for cold, Archive for archive) is
recorded as container metadata `access_tier`, which the movers and writers apply per blob.
"""

from __future__ import annotations

from typing import Any

from azure.mgmt.storage import StorageManagementClient
from azure.mgmt.storage.models import BlobContainer as BlobContainerModel
from azure.mgmt.storage.models import ContainerProperties

from activities.providers.azure._common import (
    ArmResource,
    cfg,
    enum_str,
    get_or_none,
    mgmt,
    name_of,
    naming,
    resource_group,
)
from activities.registry import register
from shared.engine.types import ResourceCall

TIER_METADATA = "access_tier"


def _account(call: ResourceCall) -> str:
    return str(call.resource.config.get("storage_account") or naming(call).storage_account())


@register("azure", "blob-container")
class BlobContainer(ArmResource):
    label = "blob container"

    def get(self, call: ResourceCall) -> Any:
        client = mgmt(StorageManagementClient)
        return get_or_none(lambda: client.blob_containers.get(resource_group(call), _account(call), name_of(call)))

    def _desired(self, call: ResourceCall) -> tuple[str, dict[str, str]]:
        return str(cfg(call, "public_access", "None")), {TIER_METADATA: str(cfg(call, "access_tier", "Cool"))}

    def differs(self, call: ResourceCall, current: Any) -> list[str]:
        access, metadata = self._desired(call)
        out = []
        if (enum_str(current.public_access) or "None") != access:
            out.append("public_access")
        have = dict(current.metadata or {})
        if any(have.get(k) != v for k, v in metadata.items()):
            out.append("metadata")
        return out

    def put(self, call: ResourceCall, current: Any) -> None:
        access, metadata = self._desired(call)
        if current is not None:
            metadata = {**dict(current.metadata or {}), **metadata}  # keep others' metadata
        mgmt(StorageManagementClient).blob_containers.create(
            resource_group(call), _account(call), name_of(call),
            BlobContainerModel(container_properties=ContainerProperties(public_access=access, metadata=metadata)),
        )

    def remove(self, call: ResourceCall, current: Any) -> None:
        mgmt(StorageManagementClient).blob_containers.delete(resource_group(call), _account(call), name_of(call))

    def outputs(self, call: ResourceCall, current: Any) -> dict[str, str]:
        return {str(p): name_of(call) for p in call.resource.produces}
