"""An App Service plan for one Function App: Flex Consumption (FC1, default), Consumption (Y1) or
Elastic Premium (EP1-EP3), Linux."""

from __future__ import annotations

from typing import Any

from azure.mgmt.web import WebSiteManagementClient
from azure.mgmt.web.models import AppServicePlan as AppServicePlanModel
from azure.mgmt.web.models import AppServicePlanProperties, SkuDescription

from activities.providers.azure._common import ArmResource, get_or_none, mgmt
from activities.registry import register
from shared.engine.errors import PermanentError
from shared.engine.types import ResourceCall
from shared.resources.azure import AppServicePlanConfig, FunctionsSku

# SKU name -> tier, as App Service names them.
PLAN_TIERS: dict[FunctionsSku, str] = {"FC1": "FlexConsumption", "Y1": "Dynamic", "EP1": "ElasticPremium",
                                       "EP2": "ElasticPremium", "EP3": "ElasticPremium"}


def is_flex(sku: str) -> bool:
    return sku.upper() == "FC1"


@register("azure", "app-service-plan")
class AppServicePlan(ArmResource[AppServicePlanConfig]):
    model = AppServicePlanConfig
    label = "App Service plan"

    def get(self, call: ResourceCall, config: AppServicePlanConfig) -> Any:
        client = mgmt(WebSiteManagementClient)
        return get_or_none(lambda: client.app_service_plans.get(config.resource_group, config.name))

    def differs(self, call: ResourceCall, config: AppServicePlanConfig, current: Any) -> list[str]:
        out = []
        if current.sku is None or str(current.sku.name).upper() != config.sku:
            out.append("sku")
        if not current.reserved:
            out.append("reserved")
        return out

    def put(self, call: ResourceCall, config: AppServicePlanConfig, current: Any) -> None:
        if current is not None and current.sku is not None and is_flex(str(current.sku.name)) != is_flex(config.sku):
            raise PermanentError(
                f"App Service plan {config.name} is {current.sku.name}; it cannot change to {config.sku} in place "
                "(Flex and non-Flex plans differ): destroy the layer and deploy again"
            )
        model = AppServicePlanModel(
            location=config.location, kind="functionapp", properties=AppServicePlanProperties(reserved=True),
            tags=self.owned_tags(call, config, current),
            sku=SkuDescription(name=config.sku, tier=PLAN_TIERS[config.sku]),
        )
        mgmt(WebSiteManagementClient).app_service_plans.begin_create_or_update(
            config.resource_group, config.name, model, polling=False
        )

    def remove(self, call: ResourceCall, config: AppServicePlanConfig, current: Any) -> None:
        mgmt(WebSiteManagementClient).app_service_plans.delete(config.resource_group, config.name)
