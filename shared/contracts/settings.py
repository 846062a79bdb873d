"""Environment variables / app settings: those the deployer writes into a twin's functions and
resources (`Setting`), which of them are secret or late-bound, which each payload function reads
on each cloud (`settings_read`), and the control plane's own settings (`ControlPlaneSetting`)."""

from __future__ import annotations

import hashlib
import re
from enum import StrEnum

from shared.contracts.functions import Function
from shared.contracts.layers import PROVIDER_NAMES


class Setting(StrEnum):
    """Environment variable (Lambda, Cloud Function) / app setting (Function App) names, and the
    setting names of non-function consumers (Grafana datasource, TwinMaker component type,
    role assignment) that the plan's wires fill in."""

    # Every payload function
    DIGITAL_TWIN_INFO = "DIGITAL_TWIN_INFO"
    """JSON, the one shape of `DigitalTwinInfo`."""

    # Inter-cloud authentication
    INTER_CLOUD_TOKEN = "INTER_CLOUD_TOKEN"
    """The shared secret senders put in `X-Inter-Cloud-Token` and receivers check."""
    INTER_CLOUD_TOKEN_PREVIOUS = "INTER_CLOUD_TOKEN_PREVIOUS"
    """The token before the last rotation; receivers accept both while senders roll over."""

    # Senders: where the remote receiver is
    REMOTE_INGESTION_URL = "REMOTE_INGESTION_URL"
    REMOTE_WRITER_URL = "REMOTE_WRITER_URL"
    REMOTE_COLD_WRITER_URL = "REMOTE_COLD_WRITER_URL"
    REMOTE_ARCHIVE_WRITER_URL = "REMOTE_ARCHIVE_WRITER_URL"
    REMOTE_READER_URL = "REMOTE_READER_URL"
    REMOTE_READER_LAST_ENTRY_URL = "REMOTE_READER_LAST_ENTRY_URL"
    REMOTE_ADT_PUSHER_URL = "REMOTE_ADT_PUSHER_URL"
    REMOTE_FEEDBACK_URL = "REMOTE_FEEDBACK_URL"
    """The event checker: `event-feedback` on L1's cloud when L1 and L2 are on different clouds."""

    # Dispatch inside a cloud
    TARGET_FUNCTION = "TARGET_FUNCTION"
    """What the dispatcher calls: `processor` when L1 and L2 share a cloud, else `connector`."""
    PROCESSOR_URL = "PROCESSOR_URL"
    """URL of the L2 `processor` (Azure, GCP); AWS invokes `{twin}-{device}-processor` by name."""
    PROCESSOR_KEY = "PROCESSOR_KEY"
    """Function key of the Azure L2 app (the processor's auth level is FUNCTION)."""
    PERSISTER_URL = "PERSISTER_URL"
    USER_PROCESSOR_URL = "USER_PROCESSOR_URL"
    """Azure L2: where the users' processors run (the user-functions app)."""
    USER_PROCESSOR_DEVICES = "USER_PROCESSOR_DEVICES"
    """Azure L2: JSON list of the device ids that have their own processor code."""
    EVENT_ACTION_URL = "EVENT_ACTION_URL"
    """Azure L2: where the users' event actions run (the user-functions app)."""
    USER_FUNCTIONS_KEY = "USER_FUNCTIONS_KEY"
    """Azure L2: function key of the user-functions app."""
    EVENT_CHECKER_URL = "EVENT_CHECKER_URL"
    CONNECTOR_URL = "CONNECTOR_URL"
    USE_EVENT_CHECKING = "USE_EVENT_CHECKING"
    EVENT_RULES = "EVENT_RULES"
    """JSON list of the spec's `events` (by alias), read by the event checker."""
    USE_FEEDBACK = "USE_FEEDBACK"
    LAMBDA_CHAIN_STATE_MACHINE_ARN = "LAMBDA_CHAIN_STATE_MACHINE_ARN"
    LOGIC_APP_TRIGGER_URL = "LOGIC_APP_TRIGGER_URL"
    WORKFLOW_NAME = "WORKFLOW_NAME"
    TWINMAKER_WORKSPACE_NAME = "TWINMAKER_WORKSPACE_NAME"
    IOT_ENDPOINT = "IOT_ENDPOINT"
    """AWS IoT data endpoint (feedback publishes back to devices)."""
    IOT_HUB_SERVICE_CONNECTION_STRING = "IOT_HUB_SERVICE_CONNECTION_STRING"
    FEEDBACK_TOPIC = "FEEDBACK_TOPIC"
    """GCP `event-feedback` (and the event checker when L1 is GCP too): where feedback is published."""

    # Azure Digital Twins
    ADT_INSTANCE_URL = "ADT_INSTANCE_URL"
    """`https://` + the ARM `hostName` of the Digital Twins instance."""
    AZURE_CLIENT_ID = "AZURE_CLIENT_ID"
    """Client id of the user-assigned identity (DefaultAzureCredential picks it up)."""

    # Azure Functions host
    AZURE_WEBJOBS_STORAGE = "AzureWebJobsStorage"
    FUNCTIONS_WORKER_RUNTIME = "FUNCTIONS_WORKER_RUNTIME"
    FUNCTIONS_EXTENSION_VERSION = "FUNCTIONS_EXTENSION_VERSION"
    SCM_DO_BUILD_DURING_DEPLOYMENT = "SCM_DO_BUILD_DURING_DEPLOYMENT"
    ENABLE_ORYX_BUILD = "ENABLE_ORYX_BUILD"
    DEPLOYMENT_STORAGE_CONNECTION_STRING = "DEPLOYMENT_STORAGE_CONNECTION_STRING"
    """Flex Consumption: `functionAppConfig.deployment.storage` names this setting for the
    package container's connection string (the deployer copies `AzureWebJobsStorage` into it)."""
    WEBSITE_HOSTNAME = "WEBSITE_HOSTNAME"
    """Set by the platform (the app's own host name). Functions hosted in the same Function App
    call each other in-process (processor -> persister -> event checker), not over HTTP, so no
    app ever needs its own function key."""

    # Hot storage
    DYNAMODB_TABLE_NAME = "DYNAMODB_TABLE_NAME"
    COSMOS_DB_ENDPOINT = "COSMOS_DB_ENDPOINT"
    COSMOS_DB_KEY = "COSMOS_DB_KEY"
    COSMOS_DB_DATABASE = "COSMOS_DB_DATABASE"
    COSMOS_DB_CONTAINER = "COSMOS_DB_CONTAINER"
    FIRESTORE_DATABASE = "FIRESTORE_DATABASE"
    FIRESTORE_COLLECTION = "FIRESTORE_COLLECTION"

    # Cold / archive storage
    COLD_S3_BUCKET_NAME = "COLD_S3_BUCKET_NAME"
    ARCHIVE_S3_BUCKET_NAME = "ARCHIVE_S3_BUCKET_NAME"
    BLOB_CONNECTION_STRING = "BLOB_CONNECTION_STRING"
    COLD_STORAGE_CONTAINER = "COLD_STORAGE_CONTAINER"
    ARCHIVE_STORAGE_CONTAINER = "ARCHIVE_STORAGE_CONTAINER"
    COLD_GCS_BUCKET = "COLD_GCS_BUCKET"
    ARCHIVE_GCS_BUCKET = "ARCHIVE_GCS_BUCKET"

    # Settings of non-function consumers
    DATASOURCE_URL = "DATASOURCE_URL"
    """Grafana JSON datasource: the hot reader URL it queries."""
    DATASOURCE_TOKEN = "DATASOURCE_TOKEN"
    """Grafana JSON datasource: sent as `X-Inter-Cloud-Token` (kept in `secureJsonData`)."""
    DATA_READER_FUNCTION_ARN = "DATA_READER_FUNCTION_ARN"
    """TwinMaker component type `functions.dataReader`."""
    LAST_ENTRY_READER_FUNCTION_ARN = "LAST_ENTRY_READER_FUNCTION_ARN"
    """TwinMaker component type `functions.attributePropertyValueReaderByEntity`."""
    PRINCIPAL_ID = "PRINCIPAL_ID"
    """Role assignment: the principal that gets the role."""


AZURE_TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
"""The audience a managed identity's token is requested for when another cloud trusts it (AWS web
identity federation, Google workload identity federation): Microsoft's recommended value."""


class ControlPlaneSetting(StrEnum):
    """App settings / environment variables of the control plane ITSELF (its Function App, the
    local host and the CLI), as opposed to `Setting`, which the deployer writes into a twin's
    functions and resources."""

    PROVIDER_MODULES = "TWIN_PROVIDER_MODULES"
    """Comma-separated modules whose import registers the resource providers."""
    SANDBOX_DIR = "TWIN_SANDBOX_DIR"
    """State folder of a running sandbox: when set, every cloud SDK client targets the sandbox."""
    AZURE_SUBSCRIPTION_ID = "AZURE_SUBSCRIPTION_ID"
    """Subscription the Azure providers deploy into."""
    AWS_REGION = "AWS_REGION"
    """Default region of the AWS clients."""
    EVENTS_ENDPOINT = "TWIN_EVENTS_ENDPOINT"
    """Comma-separated Event Grid topic endpoints that receive the `EventType` events."""
    EVENTS_KEY = "TWIN_EVENTS_KEY"
    """Access key of those topics (secret)."""
    ENGINE_OPTIONS = "TWIN_ENGINE_OPTIONS"
    """JSON object of engine options (concurrency, retry policy) for new operations."""
    FUNCTION_KEY = "TWIN_FUNCTION_KEY"
    """CLI: the function key sent to a remote control plane (`--url`)."""
    KEY_VAULT_URL = "TWIN_KEY_VAULT_URL"
    """The control plane's Key Vault (`https://<vault>.vault.azure.net/`): secret outputs are kept
    there and only references travel through Durable state. Unset: they are kept inline."""
    ALLOW_INLINE_SECRETS = "TWIN_ALLOW_INLINE_SECRETS"
    """`true`: on Azure, start without `TWIN_KEY_VAULT_URL` (secrets then live in Durable state);
    without it the app refuses to start there."""
    GCP_PROJECT = "TWIN_GCP_PROJECT"
    """Google Cloud project of the GCP layers when the spec names none (`clouds.gcp.project_id`);
    unset: the project of the credentials (Application Default Credentials)."""
    GCP_WORKLOAD_IDENTITY_PROVIDER = "TWIN_GCP_WORKLOAD_IDENTITY_PROVIDER"
    """On Azure: the workload identity pool provider that trusts the control plane's managed
    identity (`//iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/
    providers/PROVIDER`). Set: Google credentials come from exchanging a managed-identity token
    (workload identity federation, no key file); unset: Application Default Credentials."""
    GCP_SERVICE_ACCOUNT = "TWIN_GCP_SERVICE_ACCOUNT"
    """With workload identity federation: the service account the federated identity impersonates
    (its email); unset: the federated principal is granted roles itself."""
    GCP_TOKEN_AUDIENCE = "TWIN_GCP_TOKEN_AUDIENCE"
    """With workload identity federation: the Microsoft Entra application ID URI the managed identity
    requests its token for (the provider's allowed audience); default `AZURE_TOKEN_EXCHANGE_AUDIENCE`."""
    FUNCTIONS_HOST_KEY = "FUNCTIONS_HOST_KEY"
    """Local host / sandbox Function Apps: the key FUNCTION-level routes require."""
    BUNDLE_CONTAINER_URL = "TWIN_BUNDLE_CONTAINER_URL"
    """Blob container (`https://<account>.blob.core.windows.net/<container>`) where deployment
    bundles are kept, content-addressed; reached with the control plane's identity."""
    CONTROL_PLANE_NAME = "TWIN_CONTROL_PLANE_NAME"
    """The installed control plane's name (`install --name`, default `twin-control-plane`): its
    resource group and the names of its events topic and ARM watch (`shared.engine.infrastructure`)."""
    AWS_ROLE_ARN = "TWIN_AWS_ROLE_ARN"
    """The AWS role the control plane assumes with its managed identity's token (STS
    `AssumeRoleWithWebIdentity`; `install --aws-account`). Unset: the AWS credential chain."""
    AWS_WEB_IDENTITY_AUDIENCE = "TWIN_AWS_WEB_IDENTITY_AUDIENCE"
    """The audience of the identity token exchanged for the AWS role (the IAM OIDC provider's client id)."""
    AZURE_CLIENT_ID = "AZURE_CLIENT_ID"
    """Client id of the user-assigned identity the app runs as (azure-identity reads it)."""
    FUNCTIONS_FUNCTION_KEYS = "FUNCTIONS_FUNCTION_KEYS"
    """Comma-separated function keys the local host also accepts on FUNCTION-level routes (as Azure
    accepts the host's `default` function key next to the master key); webhooks take the master key."""


KEYED_SETTINGS: frozenset[Setting] = frozenset({Setting.PROCESSOR_URL, Setting.EVENT_ACTION_URL})
"""Settings a GCP function holds once per key: the URL of each device's processor (the dispatcher
and ingestion), of each event action (the event checker). GCP runs one function per device and
per action, each with its own URL, where AWS invokes them by name and Azure routes in one app."""
KEYED_SEPARATOR = "__"


def keyed_setting(base: Setting, key: str) -> str:
    """The environment variable holding `base` for `key` (a device id, an action's function name):
    `{base}__{KEY}__{hash}`. Environment names take letters, digits and `_` only, so the readable
    part is the key upper-cased with other characters as `_`, and a hash of the key keeps keys that
    differ only in case or `-`/`_` apart."""
    if base not in KEYED_SETTINGS:
        raise ValueError(f"{base} is not a keyed setting")
    readable = re.sub(r"[^A-Z0-9]", "_", key.upper())[:48]
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:8].upper()
    return f"{base}{KEYED_SEPARATOR}{readable}{KEYED_SEPARATOR}{digest}"


def setting_base(name: str) -> str:
    """The `Setting` a keyed setting name stands for (`PROCESSOR_URL__X__HASH` -> `PROCESSOR_URL`);
    any other name unchanged."""
    base = name.split(KEYED_SEPARATOR, 1)[0]
    return base if KEYED_SEPARATOR in name and base in {str(s) for s in KEYED_SETTINGS} else name


LATE_BOUND_SETTINGS: frozenset[Setting] = frozenset(
    {
        Setting.REMOTE_INGESTION_URL,
        Setting.REMOTE_WRITER_URL,
        Setting.REMOTE_COLD_WRITER_URL,
        Setting.REMOTE_ARCHIVE_WRITER_URL,
        Setting.REMOTE_READER_URL,
        Setting.REMOTE_READER_LAST_ENTRY_URL,
        Setting.REMOTE_ADT_PUSHER_URL,
        Setting.REMOTE_FEEDBACK_URL,
        Setting.ADT_INSTANCE_URL,
        Setting.DATASOURCE_URL,
    }
)
"""Settings a function needs only when it runs, not to be created. Their wires do not order the
consumer after the producer: the consumer is deployed without them (it answers 503 until wired)
and output propagation writes them when the producer has them. So a slow producer (a Digital
Twins instance takes minutes) does not hold up its consumers on other clouds."""


SECRET_SETTINGS: frozenset[Setting] = frozenset(
    {
        Setting.INTER_CLOUD_TOKEN,
        Setting.INTER_CLOUD_TOKEN_PREVIOUS,
        Setting.PROCESSOR_KEY,
        Setting.USER_FUNCTIONS_KEY,
        Setting.LOGIC_APP_TRIGGER_URL,
        Setting.IOT_HUB_SERVICE_CONNECTION_STRING,
        Setting.AZURE_WEBJOBS_STORAGE,
        Setting.COSMOS_DB_KEY,
        Setting.BLOB_CONNECTION_STRING,
        Setting.DEPLOYMENT_STORAGE_CONNECTION_STRING,
        Setting.DATASOURCE_TOKEN,
    }
)
"""Settings whose value is a secret: never logged, never in a resource's static config."""


def hot_store_settings(provider: str) -> tuple[Setting, ...]:
    """The settings a function reads to reach hot storage on `provider`."""
    return {
        "aws": (Setting.DYNAMODB_TABLE_NAME,),
        "azure": (
            Setting.COSMOS_DB_ENDPOINT,
            Setting.COSMOS_DB_KEY,
            Setting.COSMOS_DB_DATABASE,
            Setting.COSMOS_DB_CONTAINER,
        ),
        "gcp": (Setting.FIRESTORE_DATABASE, Setting.FIRESTORE_COLLECTION),
    }[provider]


def cold_store_settings(provider: str) -> tuple[Setting, ...]:
    """The settings a function reads to reach cold storage on `provider`."""
    return {
        "aws": (Setting.COLD_S3_BUCKET_NAME,),
        "azure": (Setting.BLOB_CONNECTION_STRING, Setting.COLD_STORAGE_CONTAINER),
        "gcp": (Setting.COLD_GCS_BUCKET,),
    }[provider]


def archive_store_settings(provider: str) -> tuple[Setting, ...]:
    """The settings a function reads to reach archive storage on `provider`."""
    return {
        "aws": (Setting.ARCHIVE_S3_BUCKET_NAME,),
        "azure": (Setting.BLOB_CONNECTION_STRING, Setting.ARCHIVE_STORAGE_CONTAINER),
        "gcp": (Setting.ARCHIVE_GCS_BUCKET,),
    }[provider]


_RECEIVER_AUTH = (Setting.INTER_CLOUD_TOKEN, Setting.INTER_CLOUD_TOKEN_PREVIOUS)
# Read by the Functions host and the Azure SDK in every Azure app (AZURE_CLIENT_ID selects the
# user-assigned identity for DefaultAzureCredential).
_AZURE_HOST = (
    Setting.AZURE_WEBJOBS_STORAGE,
    Setting.FUNCTIONS_WORKER_RUNTIME,
    Setting.FUNCTIONS_EXTENSION_VERSION,
    Setting.AZURE_CLIENT_ID,
)


def settings_read(function: Function | str, provider: str) -> frozenset[Setting]:
    """Every setting `function` may read when it runs on `provider` (a superset: some are read
    only in some placements, e.g. `REMOTE_WRITER_URL` only when hot storage is elsewhere).

    Payload functions declare their reads by importing `Setting`; a contract test compares
    those with this table, and the plan never injects a setting outside it."""
    fn = Function(function)
    if provider not in PROVIDER_NAMES:
        raise ValueError(f"unknown provider {provider!r}; expected one of {', '.join(PROVIDER_NAMES)}")
    reads: set[Setting] = {Setting.DIGITAL_TWIN_INFO}
    if provider == "azure":
        reads.update(_AZURE_HOST)
        reads.add(Setting.WEBSITE_HOSTNAME)
    if fn in (Function.INGESTION,):
        reads.update(_RECEIVER_AUTH)
        if provider in ("azure", "gcp"):
            reads.add(Setting.PROCESSOR_URL)
        if provider == "azure":
            reads.add(Setting.PROCESSOR_KEY)
    elif fn in (Function.HOT_WRITER, Function.HOT_READER, Function.HOT_READER_LAST_ENTRY):
        reads.update(_RECEIVER_AUTH)
        reads.update(hot_store_settings(provider))
    elif fn == Function.COLD_WRITER:
        reads.update(_RECEIVER_AUTH)
        reads.update(cold_store_settings(provider))
    elif fn == Function.ARCHIVE_WRITER:
        reads.update(_RECEIVER_AUTH)
        reads.update(archive_store_settings(provider))
    elif fn == Function.ADT_PUSHER:
        reads.update(_RECEIVER_AUTH)
        reads.update((Setting.ADT_INSTANCE_URL, Setting.AZURE_CLIENT_ID))
    elif fn == Function.DISPATCHER:
        reads.add(Setting.TARGET_FUNCTION)
        if provider in ("azure", "gcp"):
            reads.add(Setting.PROCESSOR_URL)
        if provider == "azure":
            reads.add(Setting.PROCESSOR_KEY)
        if provider == "gcp":
            reads.add(Setting.CONNECTOR_URL)
    elif fn == Function.CONNECTOR:
        reads.update((Setting.REMOTE_INGESTION_URL, Setting.INTER_CLOUD_TOKEN))
    elif fn == Function.PROCESSOR:
        if provider == "gcp":
            reads.add(Setting.PERSISTER_URL)
        if provider == "azure":
            # Devices with their own code are processed by the user-functions app.
            reads.update((Setting.USER_PROCESSOR_URL, Setting.USER_FUNCTIONS_KEY, Setting.USER_PROCESSOR_DEVICES))
    elif fn == Function.PERSISTER:
        reads.update(hot_store_settings(provider))
        reads.update((Setting.USE_EVENT_CHECKING, Setting.REMOTE_WRITER_URL, Setting.INTER_CLOUD_TOKEN))
        if provider == "azure":
            # The Azure persister patches twins itself (twin-update path `persister-direct`).
            reads.update((Setting.ADT_INSTANCE_URL, Setting.AZURE_CLIENT_ID))
        else:
            reads.add(Setting.REMOTE_ADT_PUSHER_URL)
        if provider == "gcp":
            reads.add(Setting.EVENT_CHECKER_URL)
    elif fn == Function.EVENT_CHECKER:
        reads.update((Setting.EVENT_RULES, Setting.USE_FEEDBACK))
        reads.add(
            {
                "aws": Setting.LAMBDA_CHAIN_STATE_MACHINE_ARN,
                "azure": Setting.LOGIC_APP_TRIGGER_URL,
                "gcp": Setting.WORKFLOW_NAME,
            }[provider]
        )
        if provider == "aws":
            reads.add(Setting.TWINMAKER_WORKSPACE_NAME)
        if provider == "azure":
            reads.update((Setting.ADT_INSTANCE_URL, Setting.AZURE_CLIENT_ID, Setting.EVENT_ACTION_URL,
                          Setting.USER_FUNCTIONS_KEY))
        if provider == "gcp":
            # Keyed: each action's own function (`keyed_setting(EVENT_ACTION_URL, name)`); the
            # feedback topic when L1 is GCP too (the checker publishes feedback itself).
            reads.update((Setting.EVENT_ACTION_URL, Setting.FEEDBACK_TOPIC))
        # Feedback to devices on another cloud goes through its token-checked receiver.
        reads.update((Setting.REMOTE_FEEDBACK_URL, Setting.INTER_CLOUD_TOKEN))
    elif fn == Function.EVENT_FEEDBACK:
        if provider == "aws":
            reads.add(Setting.IOT_ENDPOINT)
        elif provider == "azure":
            reads.add(Setting.IOT_HUB_SERVICE_CONNECTION_STRING)
        else:
            reads.add(Setting.FEEDBACK_TOPIC)
        reads.update(_RECEIVER_AUTH)
    elif fn == Function.HOT_TO_COLD_MOVER:
        reads.update(hot_store_settings(provider))
        reads.update(cold_store_settings(provider))
        reads.update((Setting.REMOTE_COLD_WRITER_URL, Setting.INTER_CLOUD_TOKEN))
    elif fn == Function.COLD_TO_ARCHIVE_MOVER:
        reads.update(cold_store_settings(provider))
        reads.update(archive_store_settings(provider))
        reads.update((Setting.REMOTE_ARCHIVE_WRITER_URL, Setting.INTER_CLOUD_TOKEN))
    elif fn == Function.ADT_UPDATER:
        reads.update((Setting.ADT_INSTANCE_URL, Setting.AZURE_CLIENT_ID))
    elif fn == Function.DT_READER:
        reads.update((Setting.REMOTE_READER_URL, Setting.INTER_CLOUD_TOKEN))
    elif fn == Function.DT_READER_LAST_ENTRY:
        reads.update((Setting.REMOTE_READER_LAST_ENTRY_URL, Setting.INTER_CLOUD_TOKEN))
    return frozenset(reads)
