"""L1: the IoT Hub (in its own region, `clouds.azure.region_iothub`). Ready once provisioning
succeeded and the hub is `Active`. Output: the `service` policy connection string (event feedback through the device twin)."""

from __future__ import annotations

from typing import Any

from azure.mgmt.iothub import IotHubClient
from azure.mgmt.iothub.models import IotHubDescription, IotHubSkuInfo

from activities.providers.azure._common import ArmResource, enum_str, get_or_none, mgmt
from activities.registry import register
from shared.contracts import Output
from shared.engine.errors import PermanentError, TransientError
from shared.engine.types import ResourceCall
from shared.resources.azure import IotHubConfig

SERVICE_POLICY = "service"
REGISTRY_POLICY = "registryReadWrite"


def hub_connection_string(host: str, policy: str, key: str) -> str:
    return f"HostName={host};SharedAccessKeyName={policy};SharedAccessKey={key}"


def hub_policy_key(rg: str, hub: str, policy: str) -> str:
    rule = mgmt(IotHubClient).iot_hub_resource.get_keys_for_key_name(rg, hub, policy)
    if not rule.primary_key:
        raise TransientError(f"IoT Hub {hub}: policy {policy} has no key yet")
    return str(rule.primary_key)


def _region(value: str) -> str:
    return value.replace(" ", "").lower()


@register("azure", "iot-hub")
class IotHub(ArmResource[IotHubConfig]):
    model = IotHubConfig
    label = "IoT Hub"

    def get(self, call: ResourceCall, config: IotHubConfig) -> Any:
        return get_or_none(lambda: mgmt(IotHubClient).iot_hub_resource.get(config.resource_group, config.name))

    def ready(self, current: Any) -> bool:
        state = enum_str(current.properties.state if current.properties is not None else "").lower()
        return super().ready(current) and state in ("", "active")

    def differs(self, call: ResourceCall, config: IotHubConfig, current: Any) -> list[str]:
        out = []
        if _region(current.location) != _region(config.location):
            raise PermanentError(
                f"IoT Hub {config.name} exists in {current.location}, not {config.location}: a hub cannot move; "
                "destroy L1 or set clouds.azure.region_iothub to its region"
            )
        if enum_str(current.sku.name) != config.sku or int(current.sku.capacity or 1) != config.capacity:
            out.append("sku")
        return out

    def put(self, call: ResourceCall, config: IotHubConfig, current: Any) -> None:
        desc = IotHubDescription(
            location=config.location,
            sku=IotHubSkuInfo(name=config.sku, capacity=config.capacity),
            tags=self.owned_tags(call, config, current),
        )
        if current is not None:
            # An update must carry the hub's etag and existing properties (routes, endpoints).
            desc.properties = current.properties
            desc.etag = current.etag
        mgmt(IotHubClient).iot_hub_resource.begin_create_or_update(
            config.resource_group, config.name, desc, polling=False
        )

    def remove(self, call: ResourceCall, config: IotHubConfig, current: Any) -> None:
        mgmt(IotHubClient).iot_hub_resource.begin_delete(config.resource_group, config.name, polling=False)

    def outputs(self, call: ResourceCall, config: IotHubConfig, current: Any) -> dict[str, str]:
        if Output.IOT_HUB_SERVICE_CONNECTION_STRING not in call.resource.produces:
            return {}
        host = str(current.properties.host_name)
        key = hub_policy_key(config.resource_group, config.name, SERVICE_POLICY)
        return {Output.IOT_HUB_SERVICE_CONNECTION_STRING: hub_connection_string(host, SERVICE_POLICY, key)}

    def details(self, current: Any) -> dict[str, Any]:
        props = current.properties
        return {"id": current.id, "hostName": props.host_name if props else None,
                "state": enum_str(props.state) if props else None, "provisioningState": enum_str(
                    props.provisioning_state) if props else None}
