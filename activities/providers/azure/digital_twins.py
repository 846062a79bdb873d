"""L4: the Azure Digital Twins instance (its own region, `clouds.azure.region_digital_twin`).
Output `ADT_INSTANCE_URL` = "https://" + the instance's real `hostName` (never built from the name)."""

from __future__ import annotations

from typing import Any

from azure.digitaltwins.core import DigitalTwinsClient
from azure.mgmt.digitaltwins import AzureDigitalTwinsManagementClient
from azure.mgmt.digitaltwins.models import DigitalTwinsDescription, DigitalTwinsIdentity

from activities.providers.azure._common import (
    ArmResource,
    clouds,
    get_or_none,
    location,
    mgmt,
    name_of,
    naming,
    resource_group,
)
from activities.registry import register
from shared.contracts import Output
from shared.engine.errors import PermanentError, TransientError
from shared.engine.types import ResourceCall


def instance_url(rg: str, name: str) -> str:
    """`https://` + hostName of an existing, provisioned instance."""
    inst = get_or_none(lambda: mgmt(AzureDigitalTwinsManagementClient).digital_twins.get(rg, name))
    if inst is None:
        raise PermanentError(f"Digital Twins instance {name} does not exist: deploy L4's instance first")
    if not inst.host_name:
        raise TransientError(f"Digital Twins instance {name}: no hostName yet (still provisioning)")
    return f"https://{inst.host_name}"


def data_client(call: ResourceCall) -> DigitalTwinsClient:
    """The data-plane client of the twin's instance (config.name names the instance)."""
    url = instance_url(resource_group(call), str(call.resource.config.get("instance") or
                                                 call.resource.config.get("name") or naming(call).twin + "-adt"))
    cl = clouds()
    return DigitalTwinsClient(url, cl.azure_credential(), **cl.azure_client_kwargs())


@register("azure", "digital-twins")
class DigitalTwins(ArmResource):
    label = "Digital Twins instance"

    def get(self, call: ResourceCall) -> Any:
        client = mgmt(AzureDigitalTwinsManagementClient)
        return get_or_none(lambda: client.digital_twins.get(resource_group(call), name_of(call)))

    def differs(self, call: ResourceCall, current: Any) -> list[str]:
        if current.location.replace(" ", "").lower() != location(call).replace(" ", "").lower():
            raise PermanentError(
                f"Digital Twins instance {name_of(call)} exists in {current.location}, not {location(call)}: "
                "destroy L4 or set clouds.azure.region_digital_twin to its region"
            )
        return []

    def put(self, call: ResourceCall, current: Any) -> None:
        desc = DigitalTwinsDescription(location=location(call), identity=DigitalTwinsIdentity(type="SystemAssigned"),
                                       tags=dict((current.tags or {}) if current is not None else {}))
        mgmt(AzureDigitalTwinsManagementClient).digital_twins.begin_create_or_update(
            resource_group(call), name_of(call), desc, polling=False
        )

    def remove(self, call: ResourceCall, current: Any) -> None:
        mgmt(AzureDigitalTwinsManagementClient).digital_twins.begin_delete(resource_group(call), name_of(call),
                                                                             polling=False)

    def outputs(self, call: ResourceCall, current: Any) -> dict[str, str]:
        if not current.host_name:
            raise TransientError(f"Digital Twins instance {name_of(call)}: no hostName yet")
        return {Output.ADT_INSTANCE_URL: f"https://{current.host_name}"}

    def details(self, current: Any) -> dict[str, Any]:
        return {"id": current.id, "hostName": current.host_name, "provisioningState": str(current.provisioning_state)}
