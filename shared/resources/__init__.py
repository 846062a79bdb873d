"""The typed configuration of every resource kind: one model per (provider, kind).

The planner (`shared.plan`) builds these models; their JSON form crosses the Durable boundary;
each provider parses its kind's model once, at the top of an operation, and reads attributes.
One module per cloud (`azure`, `aws`, `gcp`) plus `control` (what the control plane produces
itself); `base` holds what every kind shares.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.resources import aws, azure, control, gcp
from shared.resources.base import (
    EVENT_ACTION_PACKAGE,
    ConfigError,
    ConfigPart,
    PackageName,
    ResourceConfig,
    UserCodeRef,
    parse_config,
)
from shared.resources.ownership import CONTROL_PLANE, Owner

CONFIG_MODELS: Mapping[tuple[str, str], type[ResourceConfig]] = {
    ("control", "secret"): control.GeneratedSecretConfig,
    # Azure
    ("azure", "resource-group"): azure.AzureResourceGroupConfig,
    ("azure", "identity"): azure.IdentityConfig,
    ("azure", "storage-account"): azure.StorageAccountConfig,
    ("azure", "app-service-plan"): azure.AppServicePlanConfig,
    ("azure", "function-app"): azure.FunctionAppConfig,
    ("azure", "iot-hub"): azure.IotHubConfig,
    ("azure", "role-assignment"): azure.RoleAssignmentConfig,
    ("azure", "eventgrid-system-topic"): azure.EventGridSystemTopicConfig,
    ("azure", "event-subscription"): azure.EventSubscriptionConfig,
    ("azure", "iot-device"): azure.AzureIotDeviceConfig,
    ("azure", "cosmos-account"): azure.CosmosAccountConfig,
    ("azure", "cosmos-container"): azure.CosmosContainerConfig,
    ("azure", "blob-container"): azure.BlobContainerConfig,
    ("azure", "digital-twins"): azure.DigitalTwinsConfig,
    ("azure", "dtdl-models"): azure.DtdlModelsConfig,
    ("azure", "twin-graph"): azure.TwinGraphConfig,
    ("azure", "grafana"): azure.AzureGrafanaConfig,
    ("azure", "grafana-datasource"): azure.AzureGrafanaDatasourceConfig,
    ("azure", "logic-app"): azure.LogicAppConfig,
    # Azure: the control plane's own resources (`install`)
    ("azure", "key-vault"): azure.KeyVaultConfig,
    ("azure", "eventgrid-topic"): azure.EventGridTopicConfig,
    ("azure", "topic-subscription"): azure.TopicSubscriptionConfig,
    ("azure", "log-analytics"): azure.LogAnalyticsConfig,
    ("azure", "app-insights"): azure.AppInsightsConfig,
    ("azure", "durable-task-scheduler"): azure.DurableTaskSchedulerConfig,
    ("azure", "durable-task-hub"): azure.DurableTaskHubConfig,
    ("azure", "control-plane-app"): azure.ControlPlaneAppConfig,
    # AWS
    ("aws", "resource-group"): aws.AwsResourceGroupConfig,
    ("aws", "lambda"): aws.LambdaConfig,
    ("aws", "iot-topic-rule"): aws.IotTopicRuleConfig,
    ("aws", "iot-device"): aws.AwsIotDeviceConfig,
    ("aws", "step-function"): aws.StepFunctionConfig,
    ("aws", "dynamodb-table"): aws.DynamoDbTableConfig,
    ("aws", "s3-bucket"): aws.S3BucketConfig,
    ("aws", "schedule"): aws.ScheduleConfig,
    ("aws", "twinmaker-workspace"): aws.TwinMakerWorkspaceConfig,
    ("aws", "twinmaker-component-type"): aws.TwinMakerComponentTypeConfig,
    ("aws", "twinmaker-entities"): aws.TwinMakerEntitiesConfig,
    ("aws", "grafana"): aws.AwsGrafanaConfig,
    ("aws", "grafana-datasource"): aws.AwsGrafanaDatasourceConfig,
    # AWS: the control plane's own web identity (`install --aws-account`)
    ("aws", "oidc-provider"): aws.OidcProviderConfig,
    ("aws", "web-identity-role"): aws.WebIdentityRoleConfig,
    # GCP
    ("gcp", "service-account"): gcp.ServiceAccountConfig,
    ("gcp", "gcs-bucket"): gcp.GcsBucketConfig,
    ("gcp", "pubsub-topic"): gcp.PubSubTopicConfig,
    ("gcp", "cloud-function"): gcp.CloudFunctionConfig,
    ("gcp", "firestore"): gcp.FirestoreConfig,
    ("gcp", "iot-device"): gcp.GcpIotDeviceConfig,
    ("gcp", "scheduler-job"): gcp.SchedulerJobConfig,
    ("gcp", "workflow"): gcp.WorkflowConfig,
}
"""(provider, kind) -> the model of its configuration."""


def config_model(provider: str, kind: str) -> type[ResourceConfig]:
    """The configuration model of (provider, kind); KeyError for a kind the plan never emits."""
    try:
        return CONFIG_MODELS[(provider, kind)]
    except KeyError:
        raise KeyError(f"no configuration model for {provider}/{kind}") from None


__all__ = [
    "CONFIG_MODELS",
    "CONTROL_PLANE",
    "EVENT_ACTION_PACKAGE",
    "ConfigError",
    "ConfigPart",
    "Owner",
    "PackageName",
    "ResourceConfig",
    "UserCodeRef",
    "aws",
    "azure",
    "config_model",
    "control",
    "gcp",
    "parse_config",
]
