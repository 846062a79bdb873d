"""Setup: the user-assigned managed identity the twin's Function Apps run as."""

from __future__ import annotations

from typing import Any

from azure.mgmt.msi import ManagedServiceIdentityClient

from activities.providers.azure._common import ArmResource, get_or_none, mgmt
from activities.registry import register
from shared.contracts import Output
from shared.engine.infrastructure import InstallOutput
from shared.engine.types import ResourceCall
from shared.resources.azure import IdentityConfig


@register("azure", "identity")
class Identity(ArmResource[IdentityConfig]):
    model = IdentityConfig
    label = "managed identity"

    def get(self, call: ResourceCall, config: IdentityConfig) -> Any:
        client = mgmt(ManagedServiceIdentityClient)
        return get_or_none(lambda: client.user_assigned_identities.get(config.resource_group, config.name))

    def differs(self, call: ResourceCall, config: IdentityConfig, current: Any) -> list[str]:
        return []  # location cannot change; nothing else is configured

    def put(self, call: ResourceCall, config: IdentityConfig, current: Any) -> None:
        mgmt(ManagedServiceIdentityClient).user_assigned_identities.create_or_update(
            config.resource_group, config.name,
            {"location": config.location, "tags": self.owned_tags(call, config, current)}
        )

    def remove(self, call: ResourceCall, config: IdentityConfig, current: Any) -> None:
        mgmt(ManagedServiceIdentityClient).user_assigned_identities.delete(config.resource_group, config.name)

    def outputs(self, call: ResourceCall, config: IdentityConfig, current: Any) -> dict[str, str]:
        out: dict[str, str] = {
            Output.AZURE_IDENTITY_CLIENT_ID: str(current.client_id),
            Output.AZURE_IDENTITY_PRINCIPAL_ID: str(current.principal_id),
        }
        if InstallOutput.AZURE_TENANT_ID in call.resource.produces:
            out[InstallOutput.AZURE_TENANT_ID] = str(current.tenant_id)
        return out

    def details(self, current: Any) -> dict[str, Any]:
        return {"id": current.id, "clientId": current.client_id, "principalId": current.principal_id}
