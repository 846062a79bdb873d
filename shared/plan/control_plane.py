"""The plan of the control plane's OWN resources (`python -m control_plane install`): a `Plan`
like a twin's, walked by the same `deploy_twin` through the same providers and recorded in a
state entity like a twin's (its "twin" is the control plane's name).

What it holds (Microsoft's azd template `durable-functions-quickstart-python-azd` and its
Durable Task Scheduler variant make the same resources with the same roles):

| resource | kind | notes |
|---|---|---|
| resource group `{name}` | resource-group | health looks for the events topic and watch there |
| user-assigned identity | identity | the app runs as it; roles below are its |
| storage `st{token}` | storage-account | shared keys off: host storage and the Flex deployment container by identity |
| `twin-bundles` | blob-container | deployment bundles (`TWIN_BUNDLE_CONTAINER_URL`) |
| Flex Consumption plan | app-service-plan | FC1 |
| Log Analytics + Application Insights | log-analytics, app-insights | workspace-based, local auth off |
| Key Vault `kv-{token}` | key-vault | RBAC; `TWIN_KEY_VAULT_URL` |
| the `twin.*` topic | eventgrid-topic | CloudEvents 1.0, local auth off; `TWIN_EVENTS_ENDPOINT` |
| role assignments | role-assignment | storage blob/queue/table data, Key Vault Secrets Officer, EventGrid Data Sender, Monitoring Metrics Publisher, Contributor and User Access Administrator on each target subscription (and Durable Task Data Contributor on the scheduler) |
| the app `{name}-{token}` | control-plane-app | Python 3.11 on Flex; the package; settings wired from the above |
| topic subscription `twin-events` | topic-subscription | to the app's `twin_events` |
| the ARM watch | eventgrid-system-topic + event-subscription | `Microsoft.Resources.Subscriptions` on the subscription, to `azure_resource_events` |
| scheduler + task hub (option) | durable-task-scheduler, durable-task-hub | `DURABLE_TASK_SCHEDULER_CONNECTION_STRING` |
| IAM OIDC provider + role (option) | oidc-provider, web-identity-role | `TWIN_AWS_ROLE_ARN`: AWS by web identity federation |

`{token}` is a short hash of (subscription, name, location), as azd's `resourceToken`: the
globally named resources (storage account, vault, app) get unique, stable names.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from pydantic import JsonValue

from shared.contracts import ArmEventType, ControlPlaneSetting, Output, Setting, TwinUpdatePath
from shared.engine.infrastructure import (
    AWS_WEB_IDENTITY_AUDIENCE,
    BUNDLE_CONTAINER,
    DTS_ENDPOINT,
    DTS_TASK_HUB,
    EVENTS_FUNCTION,
    EVENTS_SUBSCRIPTION,
    INSIGHTS_CONNECTION_STRING,
    SUBSCRIPTION_TOPIC_TYPE,
    WATCH_FUNCTION,
    WATCH_SUBSCRIPTION,
    WEBJOBS_STORAGE_BLOB_URI,
    WEBJOBS_STORAGE_CLIENT_ID,
    WEBJOBS_STORAGE_QUEUE_URI,
    WEBJOBS_STORAGE_TABLE_URI,
    ControlPlaneNames,
    InstallOutput,
)
from shared.plan.model import Plan, PlannedOutput, Resource, Wire
from shared.resources import ResourceConfig
from shared.resources.aws import OidcProviderConfig, WebIdentityRoleConfig
from shared.resources.azure import (
    AppInsightsConfig,
    AppServicePlanConfig,
    AzureResourceGroupConfig,
    BlobContainerConfig,
    ControlPlaneAppConfig,
    ControlPlanePackage,
    DurableBackend,
    DurableTaskHubConfig,
    DurableTaskSchedulerConfig,
    EventGridSystemTopicConfig,
    EventGridTopicConfig,
    EventSubscriptionConfig,
    FunctionRuntime,
    FunctionsSku,
    IdentityConfig,
    KeyVaultConfig,
    LogAnalyticsConfig,
    ReferencedKind,
    ResourceRef,
    RoleAssignmentConfig,
    StorageAccountConfig,
    TopicSubscriptionConfig,
)
from shared.resources.ownership import INSTALLER, Owner, planning_for

PYTHON_VERSION = "3.11"
LAYER = "setup"
# The control plane runs on Flex Consumption (identity-based deployment storage, scale to zero).
PLAN_SKU: FunctionsSku = "FC1"

# Built-in role definitions (Azure's fixed ids).
STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
KEY_VAULT_SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
EVENTGRID_DATA_SENDER = "d5a91429-5739-47e2-a06b-3470a27159e7"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
USER_ACCESS_ADMINISTRATOR = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
DURABLE_TASK_DATA_CONTRIBUTOR = "0ad04412-c4d5-4796-b79c-f76d14c8d402"


@dataclass(frozen=True)
class AwsSide:
    """`install --aws-account`: the AWS account the control plane deploys into by web identity."""

    account: str
    region: str
    tenant_id: str
    """The Entra tenant whose tokens the IAM OIDC provider trusts."""
    audience: str = AWS_WEB_IDENTITY_AUDIENCE
    issuer: str = ""
    """The token issuer (default: Entra's v1 issuer of the tenant, `https://sts.windows.net/{tenant}/`)."""

    @property
    def issuer_url(self) -> str:
        return self.issuer or f"https://sts.windows.net/{self.tenant_id}/"


@dataclass(frozen=True)
class InstallOptions:
    name: str
    location: str
    subscription_id: str
    package_sha256: str
    package_path: str
    functions: tuple[str, ...]
    durable_backend: DurableBackend = "azure-storage"
    target_subscriptions: tuple[str, ...] = ()
    """Where twins are deployed (Contributor and User Access Administrator); default: `subscription_id`."""
    aws: AwsSide | None = None
    extra_settings: dict[str, str] = field(default_factory=dict)
    """Static app settings besides the planned ones (the sandbox's `TWIN_SANDBOX_DIR`)."""

    @property
    def names(self) -> ControlPlaneNames:
        return ControlPlaneNames(self.name)

    @property
    def token(self) -> str:
        digest = hashlib.sha256(f"{self.subscription_id}|{self.name}|{self.location}".lower().encode()).digest()
        return base64.b32encode(digest).decode().lower().rstrip("=")[:13]


def resource_names(options: InstallOptions) -> dict[str, str]:
    token, name = options.token, options.name
    return {
        "group": options.names.resource_group, "identity": f"{name}-identity", "storage": f"st{token}",
        "plan": f"{name}-plan", "workspace": f"{name}-logs", "insights": f"{name}-insights",
        "vault": f"kv-{token}", "topic": options.names.events_topic, "app": f"{name}-{token}",
        "watch": options.names.watch_topic, "scheduler": f"dts-{token}", "hub": name, "role": name,
    }


class _Plan:
    def __init__(self, options: InstallOptions) -> None:
        self.options = options
        self.resources: list[Resource] = []
        self.outputs: list[PlannedOutput] = []
        self.wires: list[Wire] = []

    def add(self, short: str, kind: str, config: ResourceConfig, needs: Iterable[str] = (),
            produces: Iterable[str] = (), provider: str = "azure") -> str:
        rid = f"{provider}/{LAYER}/{short}"
        produced = tuple(produces)
        self.resources.append(Resource(rid, LAYER, provider, kind, config.name, tuple(needs), produced, config))
        self.outputs.extend(PlannedOutput(o, rid, False) for o in produced)
        return rid

    def wire(self, output: str, producer: str, consumer: str, setting: str) -> None:
        self.wires.append(Wire(output, producer, consumer, setting))


def build_control_plane_plan(options: InstallOptions) -> Plan:
    """The control plane's resources, their outputs and the wires into its app; every
    configuration is owned by the control plane's own state (its name, managed by the installer:
    a twin of the same name is another owner), as a twin's are by the twin."""
    with planning_for(Owner(twin=options.name, control_plane=INSTALLER)):
        return _build(options)


def _build(options: InstallOptions) -> Plan:
    n = resource_names(options)
    rg, loc = n["group"], options.location
    p = _Plan(options)
    group = p.add("resource-group", "resource-group", AzureResourceGroupConfig(
        name=rg, location=loc, subscription_id=options.subscription_id,
        tags={"twin-control-plane": options.name}))
    identity = p.add("identity", "identity", IdentityConfig(name=n["identity"], resource_group=rg, location=loc),
                     [group], [Output.AZURE_IDENTITY_CLIENT_ID, Output.AZURE_IDENTITY_PRINCIPAL_ID,
                               InstallOutput.AZURE_TENANT_ID])
    storage = p.add("storage", "storage-account", StorageAccountConfig(
        name=n["storage"], resource_group=rg, location=loc, sku="Standard_LRS", kind="StorageV2", https_only=True,
        minimum_tls_version="TLS1_2", shared_key_access=False), [group],
        [InstallOutput.STORAGE_BLOB_ENDPOINT, InstallOutput.STORAGE_QUEUE_ENDPOINT, InstallOutput.STORAGE_TABLE_ENDPOINT])
    bundles = p.add("bundle-container", "blob-container", BlobContainerConfig(
        name=BUNDLE_CONTAINER, resource_group=rg, storage_account=n["storage"], access_tier="Hot", public_access="None"),
        [storage], [InstallOutput.BUNDLE_CONTAINER_URL])
    plan = p.add("plan", "app-service-plan", AppServicePlanConfig(name=n["plan"], resource_group=rg, location=loc,
                                                                  sku=PLAN_SKU), [group])
    workspace = p.add("log-analytics", "log-analytics", LogAnalyticsConfig(
        name=n["workspace"], resource_group=rg, location=loc, sku="PerGB2018", retention_days=30), [group])
    insights = p.add("app-insights", "app-insights", AppInsightsConfig(
        name=n["insights"], resource_group=rg, location=loc, workspace=n["workspace"], local_auth=False),
        [workspace], [InstallOutput.INSIGHTS_CONNECTION_STRING])
    vault = p.add("key-vault", "key-vault", KeyVaultConfig(
        name=n["vault"], resource_group=rg, location=loc, sku="standard", soft_delete_retention_days=7,
        purge_protection=False), [group], [InstallOutput.KEY_VAULT_URL])
    topic = p.add("events-topic", "eventgrid-topic", EventGridTopicConfig(
        name=n["topic"], resource_group=rg, location=loc, input_schema="CloudEventSchemaV1_0", local_auth=False),
        [group], [InstallOutput.EVENTS_ENDPOINT])

    def roles(short: str, scope_kind: ReferencedKind, scope_name: str, role_ids: tuple[str, ...], needs: str) -> str:
        rid = p.add(f"roles-{short}", "role-assignment", RoleAssignmentConfig(
            name=f"{n['identity']}-{short}", resource_group=rg, scope=ResourceRef(kind=scope_kind, name=scope_name),
            role_definition_ids=role_ids, principal_type="ServicePrincipal"), [identity, needs])
        p.wire(Output.AZURE_IDENTITY_PRINCIPAL_ID, identity, rid, Setting.PRINCIPAL_ID)
        return rid

    role_ids = [
        roles("storage", "storage-account", n["storage"],
              (STORAGE_BLOB_DATA_OWNER, STORAGE_QUEUE_DATA_CONTRIBUTOR, STORAGE_TABLE_DATA_CONTRIBUTOR), storage),
        roles("vault", "key-vault", n["vault"], (KEY_VAULT_SECRETS_OFFICER,), vault),
        roles("events", "eventgrid-topic", n["topic"], (EVENTGRID_DATA_SENDER,), topic),
        roles("insights", "app-insights", n["insights"], (MONITORING_METRICS_PUBLISHER,), insights),
    ]
    for i, target in enumerate(options.target_subscriptions or (options.subscription_id,)):
        role_ids.append(roles(f"subscription-{i}" if i else "subscription", "subscription", target,
                              (CONTRIBUTOR, USER_ACCESS_ADMINISTRATOR), group))

    app_needs = [plan, storage, bundles, identity, insights, vault, topic, *role_ids]
    settings: dict[str, str] = {
        ControlPlaneSetting.AZURE_SUBSCRIPTION_ID: (options.target_subscriptions or (options.subscription_id,))[0],
        ControlPlaneSetting.CONTROL_PLANE_NAME: options.name,
        **options.extra_settings,
    }
    task_hub: str | None = None
    scheduler_rid: str | None = None
    if options.durable_backend == "durable-task-scheduler":
        scheduler_rid = p.add("durable-task-scheduler", "durable-task-scheduler", DurableTaskSchedulerConfig(
            name=n["scheduler"], resource_group=rg, location=loc, sku="Consumption", ip_allowlist=("0.0.0.0/0",)),
            [group], [InstallOutput.SCHEDULER_ENDPOINT])
        hub = p.add("durable-task-hub", "durable-task-hub", DurableTaskHubConfig(
            name=n["hub"], resource_group=rg, scheduler=n["scheduler"]), [scheduler_rid])
        app_needs += [hub, roles("scheduler", "durable-task-scheduler", n["scheduler"],
                                 (DURABLE_TASK_DATA_CONTRIBUTOR,), scheduler_rid)]
        task_hub = n["hub"]
        settings[DTS_TASK_HUB] = task_hub
    aws_role: str | None = None
    if options.aws is not None:
        aws = options.aws
        provider = p.add("oidc-provider", "oidc-provider", OidcProviderConfig(
            name=aws.issuer_url.split("://", 1)[1].rstrip("/"), region=aws.region, url=aws.issuer_url,
            client_ids=(aws.audience,)), provider="aws")
        aws_role = p.add("web-identity-role", "web-identity-role", WebIdentityRoleConfig(
            name=n["role"], region=aws.region, provider_url=aws.issuer_url, audience=aws.audience,
            policy=aws_policy(aws.account), max_session_seconds=3600),
            [provider, identity], [InstallOutput.AWS_ROLE_ARN], provider="aws")
        p.wire(Output.AZURE_IDENTITY_PRINCIPAL_ID, identity, aws_role, Setting.PRINCIPAL_ID)
        settings[ControlPlaneSetting.AWS_REGION] = aws.region
        settings[ControlPlaneSetting.AWS_WEB_IDENTITY_AUDIENCE] = aws.audience
        app_needs.append(aws_role)

    app = p.add("app", "control-plane-app", ControlPlaneAppConfig(
        name=n["app"], resource_group=rg, location=loc, plan=n["plan"], plan_sku=PLAN_SKU,
        runtime=FunctionRuntime(name="python", version=PYTHON_VERSION), identity=n["identity"],
        storage_account=n["storage"], functions=options.functions, app_settings=settings,
        package=ControlPlanePackage(sha256=options.package_sha256, path=options.package_path),
        durable_backend=options.durable_backend, task_hub=task_hub, maximum_instance_count=40,
        instance_memory_mb=2048), app_needs, [InstallOutput.APP_URL])
    for output, producer, setting in (
        (Output.AZURE_IDENTITY_CLIENT_ID, identity, ControlPlaneSetting.AZURE_CLIENT_ID),
        (Output.AZURE_IDENTITY_CLIENT_ID, identity, WEBJOBS_STORAGE_CLIENT_ID),
        (InstallOutput.STORAGE_BLOB_ENDPOINT, storage, WEBJOBS_STORAGE_BLOB_URI),
        (InstallOutput.STORAGE_QUEUE_ENDPOINT, storage, WEBJOBS_STORAGE_QUEUE_URI),
        (InstallOutput.STORAGE_TABLE_ENDPOINT, storage, WEBJOBS_STORAGE_TABLE_URI),
        (InstallOutput.BUNDLE_CONTAINER_URL, bundles, ControlPlaneSetting.BUNDLE_CONTAINER_URL),
        (InstallOutput.INSIGHTS_CONNECTION_STRING, insights, INSIGHTS_CONNECTION_STRING),
        (InstallOutput.KEY_VAULT_URL, vault, ControlPlaneSetting.KEY_VAULT_URL),
        (InstallOutput.EVENTS_ENDPOINT, topic, ControlPlaneSetting.EVENTS_ENDPOINT),
    ):
        p.wire(output, producer, app, setting)
    if scheduler_rid is not None:
        p.wire(InstallOutput.SCHEDULER_ENDPOINT, scheduler_rid, app, DTS_ENDPOINT)
    if aws_role is not None:
        p.wire(InstallOutput.AWS_ROLE_ARN, aws_role, app, ControlPlaneSetting.AWS_ROLE_ARN)

    p.add("events-subscription", "topic-subscription", TopicSubscriptionConfig(
        name=EVENTS_SUBSCRIPTION, resource_group=rg, topic=n["topic"], function_app=n["app"],
        function=EVENTS_FUNCTION, delivery_schema="CloudEventSchemaV1_0"), [topic, app])
    watch = p.add("watch-topic", "eventgrid-system-topic", EventGridSystemTopicConfig(
        name=n["watch"], resource_group=rg, location="global",
        source=ResourceRef(kind="subscription", name=options.subscription_id), topic_type=SUBSCRIPTION_TOPIC_TYPE),
        [group])
    p.add("watch-subscription", "event-subscription", EventSubscriptionConfig(
        name=WATCH_SUBSCRIPTION, resource_group=rg, system_topic=n["watch"], function_app=n["app"],
        function=WATCH_FUNCTION, included_event_types=tuple(str(t) for t in ArmEventType)), [watch, app])
    return Plan(options.name, {}, p.resources, p.outputs, p.wires, TwinUpdatePath.REMOTE_ADT_PUSHER, ())


def _allow(actions: Iterable[str], resources: Iterable[str], sid: str) -> dict[str, JsonValue]:
    action: list[JsonValue] = list(sorted(set(actions)))
    resource: list[JsonValue] = list(sorted(set(resources)))
    return {"Sid": sid, "Effect": "Allow", "Action": action, "Resource": resource}


def aws_policy(account: str) -> tuple[dict[str, JsonValue], ...]:
    """What the control plane's AWS providers call, on this account's resources only (README:
    "Running against real Azure and AWS" lists it)."""
    a = account
    statements: list[dict[str, JsonValue]] = [
        _allow([f"lambda:{x}" for x in (
            "CreateFunction", "GetFunction", "GetFunctionConfiguration", "UpdateFunctionCode",
            "UpdateFunctionConfiguration", "DeleteFunction", "AddPermission", "RemovePermission", "GetPolicy",
            "CreateFunctionUrlConfig", "GetFunctionUrlConfig", "UpdateFunctionUrlConfig", "DeleteFunctionUrlConfig",
            "ListTags", "TagResource", "UntagResource")], [f"arn:aws:lambda:*:{a}:function:*"], "Lambda"),
        _allow([f"iam:{x}" for x in (
            "CreateRole", "GetRole", "DeleteRole", "UpdateAssumeRolePolicy", "TagRole", "PutRolePolicy",
            "GetRolePolicy", "DeleteRolePolicy", "ListRolePolicies", "ListAttachedRolePolicies", "DetachRolePolicy")],
            [f"arn:aws:iam::{a}:role/*"], "RolesOfTheTwinsFunctions"),
        {**_allow(["iam:PassRole"], [f"arn:aws:iam::{a}:role/*"], "PassThoseRoles"),
         "Condition": {"StringEquals": {"iam:PassedToService": [
             "lambda.amazonaws.com", "states.amazonaws.com", "iottwinmaker.amazonaws.com",
             "grafana.amazonaws.com", "iot.amazonaws.com"]}}},
        _allow([f"iot:{x}" for x in (
            "CreateThing", "DescribeThing", "UpdateThing", "DeleteThing", "ListThingPrincipals",
            "AttachThingPrincipal", "DetachThingPrincipal", "CreateKeysAndCertificate", "RegisterCertificateWithoutCA",
            "DescribeCertificate", "UpdateCertificate", "DeleteCertificate", "CreatePolicy", "GetPolicy", "DeletePolicy",
            "CreatePolicyVersion", "DeletePolicyVersion", "ListPolicyVersions", "AttachPolicy", "DetachPolicy",
            "ListAttachedPolicies", "ListTargetsForPolicy", "CreateTopicRule", "ReplaceTopicRule", "GetTopicRule",
            "DeleteTopicRule", "DescribeEndpoint", "TagResource", "ListTagsForResource")], ["*"], "IotCore"),
        _allow([f"dynamodb:{x}" for x in (
            "CreateTable", "DescribeTable", "UpdateTable", "DeleteTable", "DescribeTimeToLive", "UpdateTimeToLive",
            "TagResource", "ListTagsOfResource")], [f"arn:aws:dynamodb:*:{a}:table/*"], "DynamoDb"),
        _allow([f"s3:{x}" for x in (
            "CreateBucket", "DeleteBucket", "ListBucket", "DeleteObject", "GetBucketTagging", "PutBucketTagging",
            "GetLifecycleConfiguration", "PutLifecycleConfiguration", "GetEncryptionConfiguration",
            "PutEncryptionConfiguration", "GetBucketPublicAccessBlock", "PutBucketPublicAccessBlock",
            "GetBucketLocation")], ["arn:aws:s3:::*"], "S3"),
        _allow([f"events:{x}" for x in (
            "PutRule", "DescribeRule", "DeleteRule", "PutTargets", "RemoveTargets", "ListTargetsByRule", "TagResource",
            "ListTagsForResource")], [f"arn:aws:events:*:{a}:rule/*"], "EventBridge"),
        _allow([f"states:{x}" for x in (
            "CreateStateMachine", "DescribeStateMachine", "UpdateStateMachine", "DeleteStateMachine", "TagResource",
            "ListTagsForResource")], [f"arn:aws:states:*:{a}:stateMachine:*"], "StepFunctions"),
        _allow([f"iottwinmaker:{x}" for x in (
            "CreateWorkspace", "GetWorkspace", "UpdateWorkspace", "DeleteWorkspace", "CreateComponentType",
            "GetComponentType", "UpdateComponentType", "DeleteComponentType", "CreateEntity", "GetEntity",
            "UpdateEntity", "DeleteEntity", "ListEntities", "TagResource", "ListTagsForResource")],
            [f"arn:aws:iottwinmaker:*:{a}:workspace/*"], "TwinMaker"),
        _allow([f"grafana:{x}" for x in (
            "CreateWorkspace", "DescribeWorkspace", "UpdateWorkspace", "DeleteWorkspace", "ListWorkspaces",
            "CreateWorkspaceApiKey", "DeleteWorkspaceApiKey", "TagResource", "ListTagsForResource")], ["*"],
            "ManagedGrafana"),
        _allow([f"secretsmanager:{x}" for x in (
            "GetSecretValue", "CreateSecret", "PutSecretValue", "DescribeSecret", "TagResource", "DeleteSecret")],
            [f"arn:aws:secretsmanager:*:{a}:secret:twin-control-plane/*"], "GrafanaApiKeys"),
        _allow([f"resource-groups:{x}" for x in (
            "CreateGroup", "GetGroup", "GetGroupQuery", "UpdateGroupQuery", "DeleteGroup", "Tag", "GetTags")],
            [f"arn:aws:resource-groups:*:{a}:group/*"], "ResourceGroups"),
        _allow(["sts:GetCallerIdentity"], ["*"], "WhoAmI"),
    ]
    return tuple(statements)

