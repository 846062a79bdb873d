"""The control plane's Key Vault: Azure RBAC authorisation (no access policies), soft delete on.
Its `vaultUri` is the output the app gets as `TWIN_KEY_VAULT_URL`; the app's identity holds "Key
Vault Secrets Officer" on it (a role-assignment resource of the same plan)."""

from __future__ import annotations

from typing import Any

from activities.providers.azure._generic import GenericArmResource, differing, properties
from activities.registry import register
from shared.engine.errors import TransientError
from shared.engine.types import ResourceCall
from shared.resources.azure import KeyVaultConfig

API_VERSION = "2023-07-01"


def _wanted(config: KeyVaultConfig, tenant: str) -> dict[str, Any]:
    props: dict[str, Any] = {
        "tenantId": tenant,
        "sku": {"family": "A", "name": config.sku},
        "enableRbacAuthorization": True,
        "enableSoftDelete": True,
        "softDeleteRetentionInDays": config.soft_delete_retention_days,
    }
    if config.purge_protection:  # once on it cannot be turned off: never sent as false
        props["enablePurgeProtection"] = True
    return props


@register("azure", "key-vault")
class KeyVault(GenericArmResource[KeyVaultConfig]):
    model = KeyVaultConfig
    label = "Key Vault"
    arm_type = "Microsoft.KeyVault/vaults"
    api_version = API_VERSION

    def differs(self, call: ResourceCall, config: KeyVaultConfig, current: Any) -> list[str]:
        have = properties(current)
        # The tenant is the vault's own (it never moves); the rest is compared.
        return differing(_wanted(config, str(have.get("tenantId") or "")), have)

    def body(self, call: ResourceCall, config: KeyVaultConfig, current: Any) -> dict[str, Any]:
        tenant = str(properties(current).get("tenantId") or "") if current is not None else ""
        if not tenant:
            from activities.providers.azure._common import clouds

            tenant = clouds().azure_tenant_id()
        return {"location": config.location, "properties": _wanted(config, tenant)}

    def outputs(self, call: ResourceCall, config: KeyVaultConfig, current: Any) -> dict[str, str]:
        uri = str(properties(current).get("vaultUri") or "")
        if not uri:
            raise TransientError(f"Key Vault {config.name}: no vaultUri yet")
        return {name: uri for name in call.resource.produces}
