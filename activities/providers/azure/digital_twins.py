"""L4: the Azure Digital Twins instance (its own region, `clouds.azure.region_digital_twin`).
Output `ADT_INSTANCE_URL` = "https://" + the instance's real `hostName` (never built from the name)."""

from __future__ import annotations

from typing import Any

from azure.mgmt.digitaltwins import AzureDigitalTwinsManagementClient
from azure.mgmt.digitaltwins.models import DigitalTwinsDescription, DigitalTwinsIdentity

from activities.providers.azure._common import ArmResource, get_or_none, mgmt
from activities.registry import register
from shared.contracts import Output
from shared.engine.errors import PermanentError, TransientError
from shared.engine.types import ResourceCall
from shared.resources.azure import DigitalTwinsConfig


def _region(value: str) -> str:
    return value.replace(" ", "").lower()


@register("azure", "digital-twins")
class DigitalTwins(ArmResource[DigitalTwinsConfig]):
    model = DigitalTwinsConfig
    label = "Digital Twins instance"

    def get(self, call: ResourceCall, config: DigitalTwinsConfig) -> Any:
        client = mgmt(AzureDigitalTwinsManagementClient)
        return get_or_none(lambda: client.digital_twins.get(config.resource_group, config.name))

    def differs(self, call: ResourceCall, config: DigitalTwinsConfig, current: Any) -> list[str]:
        if _region(current.location) != _region(config.location):
            raise PermanentError(
                f"Digital Twins instance {config.name} exists in {current.location}, not {config.location}: "
                "destroy L4 or set clouds.azure.region_digital_twin to its region"
            )
        return []

    def put(self, call: ResourceCall, config: DigitalTwinsConfig, current: Any) -> None:
        desc = DigitalTwinsDescription(location=config.location, identity=DigitalTwinsIdentity(type="SystemAssigned"),
                                       tags=self.owned_tags(call, config, current))
        mgmt(AzureDigitalTwinsManagementClient).digital_twins.begin_create_or_update(
            config.resource_group, config.name, desc, polling=False
        )

    def remove(self, call: ResourceCall, config: DigitalTwinsConfig, current: Any) -> None:
        mgmt(AzureDigitalTwinsManagementClient).digital_twins.begin_delete(config.resource_group, config.name,
                                                                             polling=False)

    def outputs(self, call: ResourceCall, config: DigitalTwinsConfig, current: Any) -> dict[str, str]:
        if not current.host_name:
            raise TransientError(f"Digital Twins instance {config.name}: no hostName yet")
        return {Output.ADT_INSTANCE_URL: f"https://{current.host_name}"}

    def details(self, current: Any) -> dict[str, Any]:
        return {"id": current.id, "hostName": current.host_name, "provisioningState": str(current.provisioning_state)}
