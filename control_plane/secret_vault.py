"""The control plane's Key Vault, where secret outputs live (`activities/secrets.py`).

Like the control plane itself, the vault is infrastructure created once: on Azure by the operator
(README, "Running against real Azure and AWS"), locally by the commands that start a local host
against the sandbox. Idempotent: an existing vault is only read.
"""

from __future__ import annotations

from activities.clouds import Clouds
from control_plane.resource_watch import WATCH_RESOURCE_GROUP

VAULT_NAME = "twin-control-plane-kv"
VAULT_API_VERSION = "2023-07-01"


def ensure_vault(clouds: Clouds, location: str = "westeurope") -> str:
    """The vault's URL (`properties.vaultUri`), creating the vault (and its group) if missing."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.mgmt.resource.resources import ResourceManagementClient
    from azure.mgmt.resource.resources.models import GenericResource

    subscription = clouds.azure_subscription_id()
    arm = clouds.azure_mgmt_client(ResourceManagementClient)
    vault_id = (f"/subscriptions/{subscription}/resourceGroups/{WATCH_RESOURCE_GROUP}"
                f"/providers/Microsoft.KeyVault/vaults/{VAULT_NAME}")
    try:
        vault = arm.resources.get_by_id(vault_id, api_version=VAULT_API_VERSION)
    except ResourceNotFoundError:
        if not arm.resource_groups.check_existence(WATCH_RESOURCE_GROUP):
            arm.resource_groups.create_or_update(WATCH_RESOURCE_GROUP, {"location": location})
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
