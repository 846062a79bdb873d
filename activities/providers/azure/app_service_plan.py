"""An App Service plan for one Function App: Flex Consumption (FC1, default), Consumption (Y1) or
Elastic Premium (EP1), Linux."""

from __future__ import annotations

from typing import Any

from azure.mgmt.web import WebSiteManagementClient
from azure.mgmt.web.models import AppServicePlan as AppServicePlanModel
from azure.mgmt.web.models import AppServicePlanProperties, SkuDescription

from activities.providers.azure._common import (
    ArmResource,
    cfg,
    get_or_none,
    location,
    mgmt,
    name_of,
    resource_group,
)
from activities.registry import register
from shared.engine.errors import PermanentError
from shared.engine.types import ResourceCall

# SKU name -> tier, as App Service names them.
PLAN_TIERS = {"FC1": "FlexConsumption", "Y1": "Dynamic", "EP1": "ElasticPremium", "EP2": "ElasticPremium",
              "EP3": "ElasticPremium"}


def plan_sku(call: ResourceCall) -> str:
    sku = str(cfg(call, "sku", "FC1")).upper()
    if sku not in PLAN_TIERS:
        raise PermanentError(
            f"{call.resource.id}: config.sku {sku!r} is not a Functions hosting plan; use one of {', '.join(PLAN_TIERS)}"
        )
    return sku


def is_flex(sku: str) -> bool:
    return sku.upper() == "FC1"


@register("azure", "app-service-plan")
class AppServicePlan(ArmResource):
    label = "App Service plan"

    def get(self, call: ResourceCall) -> Any:
        client = mgmt(WebSiteManagementClient)
        return get_or_none(lambda: client.app_service_plans.get(resource_group(call), name_of(call)))

    def differs(self, call: ResourceCall, current: Any) -> list[str]:
        out = []
        if current.sku is None or str(current.sku.name).upper() != plan_sku(call):
            out.append("sku")
        if not current.reserved:
            out.append("reserved")
        return out

    def put(self, call: ResourceCall, current: Any) -> None:
        sku = plan_sku(call)
        if current is not None and current.sku is not None and is_flex(str(current.sku.name)) != is_flex(sku):
            raise PermanentError(
                f"App Service plan {name_of(call)} is {current.sku.name}; it cannot change to {sku} in place "
                "(Flex and non-Flex plans differ): destroy the layer and deploy again"
            )
        model = AppServicePlanModel(
            location=location(call), kind="functionapp", properties=AppServicePlanProperties(reserved=True),
            sku=SkuDescription(name=sku, tier=PLAN_TIERS[sku]),
        )
        mgmt(WebSiteManagementClient).app_service_plans.begin_create_or_update(
            resource_group(call), name_of(call), model, polling=False
        )

    def remove(self, call: ResourceCall, current: Any) -> None:
        mgmt(WebSiteManagementClient).app_service_plans.delete(resource_group(call), name_of(call))
