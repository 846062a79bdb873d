"""Configurations of the AWS resource kinds (`activities/providers/aws/`, one module per kind).

Every kind names its region (`AwsConfig`): all of a twin's AWS resources go to the spec's
`clouds.aws.region`, whatever the control plane's own default region is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import Field, JsonValue

from shared.contracts import Trigger, TwinUpdatePath
from shared.resources.base import (
    ConfigPart,
    GrafanaDatasourceFields,
    PackageName,
    ResourceConfig,
    UserCodeRef,
)
from shared.spec import DataType

S3StorageClass = Literal["STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "GLACIER",
                         "DEEP_ARCHIVE"]


class AwsConfig(ResourceConfig):
    region: str = Field(min_length=1)


class AwsResourceGroupConfig(AwsConfig):
    """Setup: a Resource Group whose tag query lists everything of the twin."""

    tags: Mapping[str, str]


class LambdaConfig(AwsConfig):
    """A Lambda function running one of our packages (or a user's event action), with its role."""

    role_name: str
    package: PackageName
    runtime: str
    """e.g. `python3.12`."""
    trigger: Trigger
    environment: Mapping[str, str]
    """Static environment (never secrets: those are wired at apply time)."""
    function_url: bool
    """A public Function URL (receivers: they check the inter-cloud token in code)."""
    device_id: str | None = None
    """A processor: the device whose readings it processes."""
    twin_update: TwinUpdatePath | None = None
    """The persister: how its readings reach the twin graph."""
    user_function: str | None = None
    """A user's event action: its function name in the spec."""
    path_to_code: str | None = None
    user_code: tuple[UserCodeRef, ...] = ()
    """The users' code the package carries: the device's own processor, or the event action's
    code (at most one)."""


class IotTopicRuleConfig(AwsConfig):
    """The IoT Core rule sending the twin's topic to the dispatcher Lambda `function`."""

    topic: str
    sql: str
    function: str


class AwsIotDeviceConfig(AwsConfig):
    """An IoT thing (`name`) with its certificate and a policy named `policy_name`."""

    device_id: str
    policy_name: str
    topic: str


class StepFunctionConfig(AwsConfig):
    """The notification workflow (a state machine) the event checker starts."""

    definition: str | dict[str, JsonValue]
    """The original project's definition file name (built in), or the definition itself."""


class DynamoDbTableConfig(AwsConfig):
    hash_key: str
    range_key: str
    billing_mode: Literal["PAY_PER_REQUEST", "PROVISIONED"]


class S3BucketConfig(AwsConfig):
    storage_class: S3StorageClass
    """The class objects move to (a lifecycle rule); STANDARD: they stay."""


class ScheduleConfig(AwsConfig):
    """An EventBridge rule running Lambda `function` on `expression` (`cron(...)`, `rate(...)`)."""

    expression: str
    function: str


class TwinMakerWorkspaceConfig(AwsConfig):
    role_name: str
    bucket: str
    """The workspace's S3 bucket (its own resource)."""


class ConstantProperty(ConfigPart):
    data_type: DataType
    value: JsonValue


class TwinMakerComponentTypeConfig(AwsConfig):
    """The component type of one device in workspace `workspace` (keyed by property name, as
    TwinMaker's `propertyDefinitions` are)."""

    workspace: str
    device_id: str
    properties: Mapping[str, DataType]
    """Time-series properties (read through the hot reader, stored outside TwinMaker): their types."""
    const_properties: Mapping[str, ConstantProperty]


class TwinMakerComponent(ConfigPart):
    name: str
    component_type_id: str


class TwinMakerEntity(ConfigPart):
    """An entity of the tree, with its components and its child entities."""

    entity_id: str = Field(min_length=1)
    name: str
    components: tuple[TwinMakerComponent, ...] = ()
    children: tuple[TwinMakerEntity, ...] = ()


class TwinMakerEntitiesConfig(AwsConfig):
    """The entity tree of workspace `workspace`."""

    workspace: str
    entities: tuple[TwinMakerEntity, ...]


class AwsGrafanaConfig(AwsConfig):
    """An Amazon Managed Grafana workspace and its role `role_name`."""

    role_name: str
    account_access_type: Literal["CURRENT_ACCOUNT", "ORGANIZATION"]
    authentication_providers: tuple[Literal["AWS_SSO", "SAML"], ...]
    permission_type: Literal["CUSTOMER_MANAGED", "SERVICE_MANAGED"]


class AwsGrafanaDatasourceConfig(GrafanaDatasourceFields, AwsConfig):
    """The hot-reader datasource in the twin's Amazon Managed Grafana."""


# --- the control plane's own AWS side (`install --aws-account`) -------------------------------


class OidcProviderConfig(AwsConfig):
    """An IAM OpenID Connect provider trusting the Entra tenant's token issuer. IAM has one
    provider per issuer URL in an account: `name` is the URL's host and path."""

    url: str = Field(pattern="^https://")
    client_ids: tuple[str, ...] = Field(min_length=1)
    """Audiences accepted (the identity token's `aud`)."""
    thumbprints: tuple[str, ...] = ()
    """Server certificate thumbprints (IAM fetches them itself for well-known issuers)."""


class WebIdentityRoleConfig(AwsConfig):
    """The role the control plane assumes with its managed identity's token: the trust policy
    names the OIDC provider, the audience and the identity (`PRINCIPAL_ID`, wired) as `sub`;
    one inline least-privilege policy."""

    provider_url: str = Field(pattern="^https://")
    audience: str = Field(min_length=1)
    policy: tuple[dict[str, JsonValue], ...] = Field(min_length=1)
    """The inline policy's statements."""
    max_session_seconds: int = Field(ge=3600, le=43200)
