"""Pre-flight checks of a whole plan's Azure resources, before anything is created: regions
that do not offer a service or a hosting plan fail here with an actionable message, instead of
after half a deployment.

The region tables are a snapshot of Azure's products-by-region pages (2025); a live check would
read `GET /subscriptions/{sub}/providers/Microsoft.DigitalTwins` (resourceTypes[].locations) and
`GET /subscriptions/{sub}/providers/Microsoft.Web/geoRegions?sku=...&linuxWorkersEnabled=true`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from shared.engine.errors import PermanentError
from shared.resources import ResourceConfig, config_model, parse_config
from shared.resources.azure import AppServicePlanConfig, DigitalTwinsConfig

# Azure Digital Twins is offered in these regions only.
ADT_REGIONS = frozenset({
    "australiaeast", "canadacentral", "centralindia", "centralus", "eastasia", "eastus", "eastus2",
    "francecentral", "germanywestcentral", "japaneast", "koreacentral", "northeurope", "qatarcentral",
    "southcentralus", "southeastasia", "swedencentral", "switzerlandnorth", "uksouth", "westcentralus",
    "westeurope", "westus2", "westus3",
})
# Flex Consumption (FC1) regions.
FLEX_REGIONS = frozenset({
    "australiaeast", "australiasoutheast", "brazilsouth", "canadacentral", "centralindia", "centralus",
    "eastasia", "eastus", "eastus2", "francecentral", "germanywestcentral", "italynorth", "japaneast",
    "koreacentral", "northcentralus", "northeurope", "norwayeast", "southafricanorth", "southcentralus",
    "southeastasia", "southindia", "spaincentral", "swedencentral", "uaenorth", "uksouth", "ukwest",
    "westcentralus", "westeurope", "westus", "westus2", "westus3",
})
# Regions where Linux Consumption (Y1) cannot be created (it is also retiring on 2028-09-30).
Y1_LINUX_UNAVAILABLE = frozenset({"italynorth", "israelcentral", "polandcentral", "spaincentral", "mexicocentral",
                                  "newzealandnorth"})


@dataclass(frozen=True)
class PreflightProblem:
    resource_id: str
    message: str


def _region(value: str) -> str:
    return value.replace(" ", "").lower()


def _config(resource: Any) -> ResourceConfig:
    """A plan resource's typed configuration, or an engine resource's parsed from its JSON form."""
    if isinstance(resource.config, ResourceConfig):
        return resource.config
    return parse_config(resource.id, resource.config, config_model(resource.provider, resource.kind))


def check_resources(resources: Iterable[Any]) -> list[PreflightProblem]:
    """Problems of the Azure resources (plan or activity `Resource`s: provider, kind, id, config)."""
    problems: list[PreflightProblem] = []
    for r in resources:
        if r.provider != "azure" or r.kind not in ("app-service-plan", "digital-twins"):
            continue
        config = _config(r)
        if isinstance(config, AppServicePlanConfig):
            region = _region(config.location)
            if config.sku == "Y1" and region in Y1_LINUX_UNAVAILABLE:
                problems.append(PreflightProblem(r.id, (
                    f"Linux Consumption (Y1) is not offered in {region}: set clouds.azure.functions_plan to FC1 "
                    "(Flex Consumption) or EP1, or choose another clouds.azure.region")))
            elif config.sku == "FC1" and region and region not in FLEX_REGIONS:
                problems.append(PreflightProblem(r.id, (
                    f"Flex Consumption (FC1) is not offered in {region}: set clouds.azure.functions_plan to EP1 "
                    f"or Y1, or choose one of {', '.join(sorted(FLEX_REGIONS))}")))
        elif isinstance(config, DigitalTwinsConfig) and _region(config.location) not in ADT_REGIONS:
            region = _region(config.location)
            problems.append(PreflightProblem(r.id, (
                f"Azure Digital Twins is not offered in {region or '(no region)'}: set "
                f"clouds.azure.region_digital_twin to one of {', '.join(sorted(ADT_REGIONS))}")))
    return problems


def check_plan(plan: Any) -> list[PreflightProblem]:
    """Problems of a `shared.plan.Plan` (empty when it can be deployed as far as regions go)."""
    return check_resources(plan.resources)


def assert_deployable(plan: Any) -> None:
    """Raise one PermanentError listing every pre-flight problem, each with its resource id."""
    problems = check_plan(plan)
    if problems:
        raise PermanentError("; ".join(f"{p.resource_id}: {p.message}" for p in problems))
