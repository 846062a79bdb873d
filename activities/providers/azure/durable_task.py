"""The Durable Task Scheduler option of the control plane's Durable backend: a scheduler (its
`endpoint` is the output the app's connection string is made of) and a task hub in it. The
app's identity holds "Durable Task Data Contributor" on the scheduler (a role assignment)."""

from __future__ import annotations

from typing import Any

from activities.providers.azure._common import arm_id, subscription_id
from activities.providers.azure._generic import GenericArmResource, differing, properties
from activities.registry import register
from shared.engine.errors import TransientError
from shared.engine.types import ResourceCall
from shared.resources.azure import DurableTaskHubConfig, DurableTaskSchedulerConfig

API_VERSION = "2025-11-01"
SCHEDULER_TYPE = "Microsoft.DurableTask/schedulers"


@register("azure", "durable-task-scheduler")
class DurableTaskScheduler(GenericArmResource[DurableTaskSchedulerConfig]):
    model = DurableTaskSchedulerConfig
    label = "Durable Task Scheduler"
    arm_type = SCHEDULER_TYPE
    api_version = API_VERSION

    def _props(self, config: DurableTaskSchedulerConfig) -> dict[str, Any]:
        sku: dict[str, Any] = {"name": config.sku}
        if config.capacity is not None:
            sku["capacity"] = config.capacity
        return {"sku": sku, "ipAllowlist": list(config.ip_allowlist)}

    def differs(self, call: ResourceCall, config: DurableTaskSchedulerConfig, current: Any) -> list[str]:
        return differing(self._props(config), properties(current))

    def body(self, call: ResourceCall, config: DurableTaskSchedulerConfig, current: Any) -> dict[str, Any]:
        return {"location": config.location, "properties": self._props(config)}

    def outputs(self, call: ResourceCall, config: DurableTaskSchedulerConfig, current: Any) -> dict[str, str]:
        endpoint = str(properties(current).get("endpoint") or "")
        if not endpoint:
            raise TransientError(f"Durable Task Scheduler {config.name}: no endpoint yet")
        return {name: endpoint for name in call.resource.produces}


@register("azure", "durable-task-hub")
class DurableTaskHub(GenericArmResource[DurableTaskHubConfig]):
    model = DurableTaskHubConfig
    label = "task hub"
    tagged = False  # a proxy resource: the resource group's
    arm_type = "Microsoft.DurableTask/schedulers/taskHubs"
    api_version = API_VERSION

    def resource_id(self, config: DurableTaskHubConfig) -> str:
        scheduler = arm_id(subscription_id(), config.resource_group, SCHEDULER_TYPE, config.scheduler)
        return f"{scheduler}/taskHubs/{config.name}"

    def body(self, call: ResourceCall, config: DurableTaskHubConfig, current: Any) -> dict[str, Any]:
        return {"properties": {}}
