"""L3 cold / archive: a private blob container in the setup storage account.

A container has no access tier of its own; the tier (Cool for cold, Archive for archive) is
recorded as container metadata `access_tier`, which the movers and writers apply per blob.
"""

from __future__ import annotations

from typing import Any

from azure.mgmt.storage import StorageManagementClient
from azure.mgmt.storage.models import BlobContainer as BlobContainerModel
from azure.mgmt.storage.models import ContainerProperties

from activities.providers.azure._common import ArmResource, enum_str, get_or_none, mgmt
from activities.registry import register
from shared.engine.infrastructure import InstallOutput
from shared.engine.types import ResourceCall
from shared.resources.azure import BlobContainerConfig

TIER_METADATA = "access_tier"


@register("azure", "blob-container")
class BlobContainer(ArmResource[BlobContainerConfig]):
    model = BlobContainerConfig
    label = "blob container"
    tagged = False  # the resource group's

    def get(self, call: ResourceCall, config: BlobContainerConfig) -> Any:
        client = mgmt(StorageManagementClient)
        return get_or_none(lambda: client.blob_containers.get(config.resource_group, config.storage_account,
                                                              config.name))

    def differs(self, call: ResourceCall, config: BlobContainerConfig, current: Any) -> list[str]:
        out = []
        if (enum_str(current.public_access) or "None") != config.public_access:
            out.append("public_access")
        if dict(current.metadata or {}).get(TIER_METADATA) != config.access_tier:
            out.append("metadata")
        return out

    def put(self, call: ResourceCall, config: BlobContainerConfig, current: Any) -> None:
        # Metadata set by others is kept.
        metadata = {**dict((current.metadata or {}) if current is not None else {}), TIER_METADATA: config.access_tier}
        mgmt(StorageManagementClient).blob_containers.create(
            config.resource_group, config.storage_account, config.name,
            BlobContainerModel(container_properties=ContainerProperties(public_access=config.public_access,
                                                                        metadata=metadata)),
        )

    def remove(self, call: ResourceCall, config: BlobContainerConfig, current: Any) -> None:
        mgmt(StorageManagementClient).blob_containers.delete(config.resource_group, config.storage_account,
                                                             config.name)

    def outputs(self, call: ResourceCall, config: BlobContainerConfig, current: Any) -> dict[str, str]:
        out = {}
        for name in call.resource.produces:
            if name == InstallOutput.BUNDLE_CONTAINER_URL:  # the container's URL, not its name
                account = mgmt(StorageManagementClient).storage_accounts.get_properties(
                    config.resource_group, config.storage_account)
                blob = str(account.primary_endpoints.blob if account.primary_endpoints else "")
                out[name] = blob.rstrip("/") + "/" + config.name
            else:
                out[str(name)] = config.name
        return out
