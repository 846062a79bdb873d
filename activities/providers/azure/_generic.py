"""ARM resources reached through the generic resources API (`azure-mgmt-resource`'s
`resources.*_by_id` with the type's own api-version), for the control plane's kinds whose
management SDK the deployed app does not otherwise need (Key Vault, Log Analytics, Application
Insights, the Durable Task Scheduler): the request and the answer are the type's published
shapes, checked by `tests/conformance` against its OpenAPI document.
"""

from __future__ import annotations

from typing import Any, ClassVar

from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.resource.resources.models import GenericResource

from activities.providers.azure._common import ArmResource, arm_id, get_or_none, mgmt, subscription_id
from shared.engine.errors import PermanentError
from shared.engine.types import ResourceCall
from shared.resources.azure import AzureConfig
from shared.resources.base import C


def properties(current: Any) -> dict[str, Any]:
    """A generic resource's `properties` as a dict ({} when absent)."""
    value = getattr(current, "properties", None)
    return dict(value) if isinstance(value, dict) else {}


class GenericArmResource(ArmResource[C]):
    """One resource of `arm_type` at `api_version`; subclasses give the body and what to compare."""

    arm_type: ClassVar[str]
    """`Namespace/type` (a child type: `Namespace/parent/child`, see `resource_id`)."""
    api_version: ClassVar[str]

    def resource_id(self, config: C) -> str:
        assert isinstance(config, AzureConfig)
        return arm_id(subscription_id(), config.resource_group, self.arm_type, config.name)

    def body(self, call: ResourceCall, config: C, current: Any) -> dict[str, Any]:
        """The PUT body: `location`, `properties` (and `sku`, `kind`, `tags` where the type has them)."""
        raise PermanentError(f"{type(self).__name__} does not define body")

    def get(self, call: ResourceCall, config: C) -> Any:
        client = mgmt(ResourceManagementClient)
        current = get_or_none(lambda: client.resources.get_by_id(self.resource_id(config), api_version=self.api_version))
        if current is not None:
            # A generic resource's properties are a dict: lift the state where `state_of` reads it.
            setattr(current, "provisioning_state", properties(current).get("provisioningState"))  # noqa: B010
        return current

    def put(self, call: ResourceCall, config: C, current: Any) -> None:
        body = self.body(call, config, current)
        if self.tagged:
            body["tags"] = self.owned_tags(call, config, current)  # the owner's, others' kept
        mgmt(ResourceManagementClient).resources.begin_create_or_update_by_id(
            self.resource_id(config), api_version=self.api_version, parameters=GenericResource(**body), polling=False)

    def remove(self, call: ResourceCall, config: C, current: Any) -> None:
        mgmt(ResourceManagementClient).resources.begin_delete_by_id(
            self.resource_id(config), api_version=self.api_version, polling=False)


def differing(want: dict[str, Any], have: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted paths of `want` whose value `have` does not hold (objects compared key by key;
    keys `have` has besides are others' or read-only, never a difference)."""
    out: list[str] = []
    for key, value in want.items():
        path = f"{prefix}{key}"
        other = have.get(key)
        if isinstance(value, dict) and isinstance(other, dict):
            out.extend(differing(value, other, path + "."))
        elif isinstance(value, list | tuple) and isinstance(other, list | tuple):
            if [_plain(v) for v in value] != [_plain(v) for v in other]:
                out.append(path)
        elif _plain(value) != _plain(other):
            out.append(path)
    return out


def _plain(value: Any) -> Any:
    return value.lower() if isinstance(value, str) and value.lower() in ("true", "false") else value
