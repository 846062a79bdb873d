"""The control plane's monitoring: a Log Analytics workspace and the workspace-based Application
Insights resource that keeps its data there (classic resources are retired). With local auth
off, the app sends telemetry with its identity ("Monitoring Metrics Publisher" on the component)
and `APPLICATIONINSIGHTS_AUTHENTICATION_STRING`; the component's connection string is its output."""

from __future__ import annotations

from typing import Any

from activities.providers.azure._common import arm_id, subscription_id
from activities.providers.azure._generic import GenericArmResource, differing, properties
from activities.registry import register
from shared.engine.errors import TransientError
from shared.engine.types import ResourceCall
from shared.resources.azure import AppInsightsConfig, LogAnalyticsConfig

WORKSPACE_API_VERSION = "2023-09-01"
COMPONENT_API_VERSION = "2020-02-02"
WORKSPACE_TYPE = "Microsoft.OperationalInsights/workspaces"


@register("azure", "log-analytics")
class LogAnalyticsWorkspace(GenericArmResource[LogAnalyticsConfig]):
    model = LogAnalyticsConfig
    label = "Log Analytics workspace"
    arm_type = WORKSPACE_TYPE
    api_version = WORKSPACE_API_VERSION

    def _props(self, config: LogAnalyticsConfig) -> dict[str, Any]:
        return {"sku": {"name": config.sku}, "retentionInDays": config.retention_days}

    def differs(self, call: ResourceCall, config: LogAnalyticsConfig, current: Any) -> list[str]:
        return differing(self._props(config), properties(current))

    def body(self, call: ResourceCall, config: LogAnalyticsConfig, current: Any) -> dict[str, Any]:
        return {"location": config.location, "properties": self._props(config)}

    def outputs(self, call: ResourceCall, config: LogAnalyticsConfig, current: Any) -> dict[str, str]:
        return {name: str(current.id) for name in call.resource.produces}


@register("azure", "app-insights")
class AppInsights(GenericArmResource[AppInsightsConfig]):
    model = AppInsightsConfig
    label = "Application Insights"
    arm_type = "Microsoft.Insights/components"
    api_version = COMPONENT_API_VERSION

    def _props(self, config: AppInsightsConfig) -> dict[str, Any]:
        workspace = arm_id(subscription_id(), config.resource_group, WORKSPACE_TYPE, config.workspace)
        return {"Application_Type": "web", "WorkspaceResourceId": workspace, "DisableLocalAuth": not config.local_auth}

    def differs(self, call: ResourceCall, config: AppInsightsConfig, current: Any) -> list[str]:
        have = properties(current)
        want = self._props(config)
        # ARM ids compare without case.
        if str(have.get("WorkspaceResourceId", "")).lower() == str(want["WorkspaceResourceId"]).lower():
            have = {**have, "WorkspaceResourceId": want["WorkspaceResourceId"]}
        return differing(want, have)

    def body(self, call: ResourceCall, config: AppInsightsConfig, current: Any) -> dict[str, Any]:
        return {"location": config.location, "kind": "web", "properties": self._props(config)}

    def outputs(self, call: ResourceCall, config: AppInsightsConfig, current: Any) -> dict[str, str]:
        value = str(properties(current).get("ConnectionString") or "")
        if not value:
            raise TransientError(f"Application Insights {config.name}: no connection string yet")
        return {name: value for name in call.resource.produces}
