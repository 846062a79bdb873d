"""Configurations of the Azure resource kinds (`activities/providers/azure/`, one module per kind).

Every kind but the resource group lives in the twin's resource group (`AzureConfig`). Names of
other resources (a plan, an identity, a hub) are plain names in that resource group; a
`ResourceRef` names a resource another one points at by ARM id (a role's scope, a topic's source).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import Field, JsonValue, field_validator

from shared.contracts import Trigger, TwinUpdatePath
from shared.resources.base import (
    ConfigPart,
    GrafanaDatasourceFields,
    PackageName,
    ResourceConfig,
    UserCodeRef,
)

FunctionsSku = Literal["FC1", "Y1", "EP1", "EP2", "EP3"]
"""Function App hosting plans: Flex Consumption, Consumption, Elastic Premium (Linux)."""

ReferencedKind = Literal["iot-hub", "digital-twins", "storage-account", "function-app", "grafana", "cosmos-account",
                         "key-vault", "eventgrid-topic", "app-insights", "durable-task-scheduler", "subscription"]


class ResourceRef(ConfigPart):
    """Another resource of the twin's resource group, by plan kind and name (its ARM id follows);
    kind `subscription` names a subscription by its id."""

    kind: ReferencedKind
    name: str = Field(min_length=1)


class AzureConfig(ResourceConfig):
    """A resource inside the twin's resource group."""

    resource_group: str = Field(min_length=1)


class AzureResourceGroupConfig(ResourceConfig):
    """Setup: the twin's resource group (`subscription_id` None: the control plane's own)."""

    location: str
    subscription_id: str | None
    tags: Mapping[str, str]


class IdentityConfig(AzureConfig):
    """Setup: the user-assigned managed identity the Function Apps run as."""

    location: str


class StorageAccountConfig(AzureConfig):
    """Setup: the storage account (Functions host storage, Flex packages, cold/archive blobs)."""

    location: str
    sku: str
    """e.g. `Standard_LRS`."""
    kind: str
    """e.g. `StorageV2`."""
    https_only: bool
    minimum_tls_version: str
    """e.g. `TLS1_2`."""
    shared_key_access: bool = True
    """False: only Entra identities reach the data (`allowSharedKeyAccess`; the control plane's own
    account, whose host storage is identity-based). Such an account yields no connection string."""


class AppServicePlanConfig(AzureConfig):
    """The hosting plan of one Function App."""

    location: str
    sku: FunctionsSku


class FunctionRuntime(ConfigPart):
    name: Literal["python"]
    version: str


class HostedFunction(ConfigPart):
    """One function of a Function App."""

    name: str
    """The function's name in the app (also its HTTP route)."""
    package: PackageName
    trigger: Trigger
    auth_level: Literal["anonymous", "function"] | None
    """HTTP functions only: receivers are anonymous (they check the inter-cloud token in code)."""
    schedule: str | None = None
    """Timer functions: the NCRONTAB schedule."""
    twin_update: TwinUpdatePath | None = None
    """The persister: how its readings reach the twin graph."""
    user_function: str | None = None
    """A user's event action: its function name in the spec."""
    path_to_code: str | None = None


class HostedAppConfig(AzureConfig):
    """What every Function App the control plane deploys has: its plan, runtime, identity and
    the storage account of its package, and its static settings."""

    location: str
    plan: str
    """The App Service plan's name."""
    plan_sku: FunctionsSku
    """The plan's SKU: whether the app is shaped for Flex Consumption is known without reading
    the plan."""
    runtime: FunctionRuntime
    identity: str
    """The user-assigned identity's name."""
    storage_account: str
    """Where Flex Consumption keeps the app's package (a container per app)."""
    app_settings: Mapping[str, str]
    """Static settings (never secrets: those are wired at apply time)."""


class FunctionAppConfig(HostedAppConfig):
    """A Function App of a twin, its settings and the payload functions its one package holds."""

    functions: tuple[HostedFunction, ...]
    processors: tuple[str, ...] = ()
    """Device ids whose processing this app runs (the L2 app)."""
    user_code: tuple[UserCodeRef, ...] = ()
    """The users' code the package carries (the L2 user-functions app: processors by device,
    event actions by function name)."""


class IotHubConfig(AzureConfig):
    location: str
    sku: str
    """e.g. `S1` (the free and basic tiers lack what the twin uses)."""
    capacity: int = Field(ge=1)


class RoleAssignmentConfig(AzureConfig):
    """Built-in roles for the wired principal (`PRINCIPAL_ID`) on `scope`."""

    scope: ResourceRef
    role_definition_ids: tuple[str, ...] = Field(min_length=1)
    principal_type: Literal["ServicePrincipal", "User", "Group"]


class EventGridSystemTopicConfig(AzureConfig):
    location: str
    source: ResourceRef
    topic_type: str


class EventSubscriptionConfig(AzureConfig):
    """A system topic's subscription delivering to one function of a Function App (a payload
    function, or the control plane's own `azure_resource_events`)."""

    system_topic: str
    function_app: str
    function: str = Field(min_length=1)
    included_event_types: tuple[str, ...]


class AzureIotDeviceConfig(AzureConfig):
    """A device identity in the hub's registry."""

    device_id: str
    hub: str
    auth: Literal["sas"]


class CosmosAccountConfig(AzureConfig):
    location: str
    capabilities: tuple[str, ...]
    consistency: Literal["Eventual", "ConsistentPrefix", "Session", "BoundedStaleness", "Strong"]


class CosmosContainerConfig(AzureConfig):
    """The SQL database `database` and its container `name` in Cosmos DB account `account`."""

    account: str
    database: str
    partition_key_path: str
    default_ttl: int
    """Seconds; -1: items do not expire unless they say so."""


class BlobContainerConfig(AzureConfig):
    """A private container in the setup storage account; `access_tier` is kept as its metadata
    (containers have no tier: writers set it per blob)."""

    storage_account: str
    access_tier: Literal["Hot", "Cool", "Cold", "Archive"]
    public_access: Literal["None", "Blob", "Container"]


class DigitalTwinsConfig(AzureConfig):
    location: str


class DtdlModelsConfig(AzureConfig):
    """The hierarchy's DTDL models, uploaded as given into Digital Twins instance `instance`."""

    instance: str
    models: tuple[dict[str, JsonValue], ...]

    @field_validator("models")
    @classmethod
    def _have_ids(cls, models: tuple[dict[str, JsonValue], ...]) -> tuple[dict[str, JsonValue], ...]:
        for model in models:
            mid = model.get("@id")
            if not isinstance(mid, str) or not mid.startswith("dtmi:"):
                raise ValueError("every DTDL model needs an '@id' that is a dtmi")
        return models


class DigitalTwin(ConfigPart):
    """One twin: its id, its model and the property values it starts with."""

    twin_id: str = Field(min_length=1)
    model: str
    properties: Mapping[str, JsonValue]


class TwinRelationship(ConfigPart):
    source_id: str = Field(min_length=1)
    relationship_id: str = Field(min_length=1)
    """Stable, so a re-run upserts the same relationship."""
    target_id: str
    name: str


class TwinGraphConfig(AzureConfig):
    """The hierarchy's twins and relationships in Digital Twins instance `instance`."""

    instance: str
    twins: tuple[DigitalTwin, ...]
    relationships: tuple[TwinRelationship, ...]


class AzureGrafanaConfig(AzureConfig):
    location: str
    sku: str
    """e.g. `Standard`."""
    api_key: Literal["Enabled", "Disabled"]


class AzureGrafanaDatasourceConfig(GrafanaDatasourceFields, AzureConfig):
    """The hot-reader datasource in the twin's Azure Managed Grafana."""


class LogicAppConfig(AzureConfig):
    """The notification workflow the event checker triggers (planned; no provider yet)."""

    location: str
    definition: str
    """The original project's definition file name."""


# --- the control plane's own resources (`python -m control_plane install`) ----------------------


class KeyVaultConfig(AzureConfig):
    """A Key Vault authorising with Azure RBAC (never access policies), soft delete on."""

    location: str
    sku: Literal["standard", "premium"]
    soft_delete_retention_days: int = Field(ge=7, le=90)
    purge_protection: bool


class EventGridTopicConfig(AzureConfig):
    """A custom Event Grid topic (the control plane's `twin.*` events)."""

    location: str
    input_schema: Literal["CloudEventSchemaV1_0", "EventGridSchema"]
    local_auth: bool
    """False: publishers authenticate with Entra (EventGrid Data Sender), access keys are refused."""


class TopicSubscriptionConfig(AzureConfig):
    """A custom topic's subscription delivering to one function of a Function App."""

    topic: str
    function_app: str
    function: str = Field(min_length=1)
    delivery_schema: Literal["CloudEventSchemaV1_0", "EventGridSchema"]


class LogAnalyticsConfig(AzureConfig):
    """The Log Analytics workspace Application Insights keeps its data in."""

    location: str
    sku: Literal["PerGB2018"]
    retention_days: int = Field(ge=30, le=730)


class AppInsightsConfig(AzureConfig):
    """Workspace-based Application Insights; with local auth off, telemetry is sent with Entra."""

    location: str
    workspace: str
    """The Log Analytics workspace's name (same resource group)."""
    local_auth: bool


class DurableTaskSchedulerConfig(AzureConfig):
    """A Durable Task Scheduler (the managed Durable backend)."""

    location: str
    sku: Literal["Consumption", "Dedicated"]
    capacity: int | None = Field(default=None, ge=1)
    """Dedicated only: capacity units."""
    ip_allowlist: tuple[str, ...] = Field(min_length=1)
    """CIDR ranges allowed (an empty list denies all traffic)."""


class DurableTaskHubConfig(AzureConfig):
    """A task hub of a Durable Task Scheduler (`scheduler`, same resource group)."""

    scheduler: str


DurableBackend = Literal["azure-storage", "durable-task-scheduler"]


class ControlPlanePackage(ConfigPart):
    """The control plane's own zip (built per `.funcignore` by `install`): where the installing
    process keeps it and its SHA-256 (hex), which decides whether it is uploaded."""

    sha256: str = Field(pattern="^[0-9a-f]{64}$")
    path: str = Field(min_length=1)


class ControlPlaneAppConfig(HostedAppConfig):
    """The control plane's own Function App (Flex Consumption): identity-based host storage
    (`storage_account`) and deployment container, its package, the Durable backend; settings
    wired from its resources."""

    functions: tuple[str, ...] = Field(min_length=1)
    """The functions the package must be seen to hold once deployed (indexed)."""
    package: ControlPlanePackage
    durable_backend: DurableBackend
    task_hub: str | None = None
    """The Durable Task Scheduler's task hub (its backend only)."""
    maximum_instance_count: int = Field(ge=1, le=1000)
    instance_memory_mb: Literal[512, 2048, 4096]
