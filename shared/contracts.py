"""The one place that spells every name two parts of the system must agree on.

The deployer (plan, providers, activities) and the payload functions deployed into the twin's
clouds both import this module; nothing else spells these strings. The original project's worst
defects were drift between what the deployer set and what the functions read (seed-inventory
section 9, lesson 1), so each name lives here once:

- layers and the spec field that places each one (`Layer`, `LAYER_SLOTS`);
- environment variables / app settings (`Setting`), which are secret, and which settings each
  payload function reads on each cloud (`settings_read`); the control plane's own settings
  (`ControlPlaneSetting`);
- payload function names, triggers and HTTP routes (`Function`, `FUNCTIONS`, `route`, `url_path`);
- the inter-cloud header and envelope, telemetry and storage field names;
- control-plane event types and the CloudEvent `source`;
- output names (`Output`) and which outputs are secret (`is_secret_output`);
- the one shape of `DIGITAL_TWIN_INFO` (`DigitalTwinInfo`).

Pure standard library: payload functions import this inside Lambdas and Function Apps.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

ProviderName = Literal["aws", "azure", "gcp"]
PROVIDER_NAMES: tuple[ProviderName, ...] = ("aws", "azure", "gcp")
CONTROL = "control"
"""Provider name of resources the control plane itself owns (the inter-cloud token)."""


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------


class Layer(StrEnum):
    """Layer names, in the order a person reads a twin (not necessarily deployment order)."""

    SETUP = "setup"
    L0 = "L0"
    L1 = "L1"
    L2 = "L2"
    L3_HOT = "L3_hot"
    L3_COLD = "L3_cold"
    L3_ARCHIVE = "L3_archive"
    L4 = "L4"
    L5 = "L5"


LAYERS: tuple[Layer, ...] = tuple(Layer)

LAYER_SLOTS: dict[Layer, str] = {
    Layer.L1: "layer_1_provider",
    Layer.L2: "layer_2_provider",
    Layer.L3_HOT: "layer_3_hot_provider",
    Layer.L3_COLD: "layer_3_cold_provider",
    Layer.L3_ARCHIVE: "layer_3_archive_provider",
    Layer.L4: "layer_4_provider",
    Layer.L5: "layer_5_provider",
}
"""The spec's `providers.*` field that places each layer slot (setup and L0 follow the others)."""

PULL_TWIN_PROVIDERS: frozenset[str] = frozenset({"aws"})
"""L4 providers whose twin service pulls readings through the hot reader (IoT TwinMaker)."""


# --------------------------------------------------------------------------------------------
# Environment variables / app settings
# --------------------------------------------------------------------------------------------


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

    # Dispatch inside a cloud
    TARGET_FUNCTION = "TARGET_FUNCTION"
    """What the dispatcher calls: `processor` when L1 and L2 share a cloud, else `connector`."""
    PROCESSOR_URL = "PROCESSOR_URL"
    """URL of the L2 `processor` (Azure, GCP); AWS invokes `{twin}-{device}-processor` by name."""
    PROCESSOR_KEY = "PROCESSOR_KEY"
    """Function key of the Azure L2 app (the processor's auth level is FUNCTION)."""
    PERSISTER_URL = "PERSISTER_URL"
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
    FUNCTIONS_HOST_KEY = "FUNCTIONS_HOST_KEY"
    """Local host / sandbox Function Apps: the key FUNCTION-level routes require."""
    FUNCTIONS_FUNCTION_KEYS = "FUNCTIONS_FUNCTION_KEYS"
    """Comma-separated function keys the local host also accepts on FUNCTION-level routes (as Azure
    accepts the host's `default` function key next to the master key); webhooks take the master key."""


LATE_BOUND_SETTINGS: frozenset[Setting] = frozenset(
    {
        Setting.REMOTE_INGESTION_URL,
        Setting.REMOTE_WRITER_URL,
        Setting.REMOTE_COLD_WRITER_URL,
        Setting.REMOTE_ARCHIVE_WRITER_URL,
        Setting.REMOTE_READER_URL,
        Setting.REMOTE_READER_LAST_ENTRY_URL,
        Setting.REMOTE_ADT_PUSHER_URL,
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


# --------------------------------------------------------------------------------------------
# Payload functions and routes
# --------------------------------------------------------------------------------------------


class Function(StrEnum):
    """Payload function names: the Azure function name and HTTP route, the suffix of the AWS
    Lambda / GCP Cloud Function name (`{twin}-{function}`), and the code package name."""

    INGESTION = "ingestion"
    HOT_WRITER = "hot-writer"
    COLD_WRITER = "cold-writer"
    ARCHIVE_WRITER = "archive-writer"
    HOT_READER = "hot-reader"
    HOT_READER_LAST_ENTRY = "hot-reader-last-entry"
    ADT_PUSHER = "adt-pusher"
    DISPATCHER = "dispatcher"
    CONNECTOR = "connector"
    PROCESSOR = "processor"
    PERSISTER = "persister"
    EVENT_CHECKER = "event-checker"
    EVENT_FEEDBACK = "event-feedback"
    HOT_TO_COLD_MOVER = "hot-to-cold-mover"
    COLD_TO_ARCHIVE_MOVER = "cold-to-archive-mover"
    ADT_UPDATER = "adt-updater"
    DT_READER = "dt-reader"
    """AWS L4 side of the hot-reader boundary: TwinMaker's dataReader forwarding to a remote reader."""
    DT_READER_LAST_ENTRY = "dt-reader-last-entry"


Trigger = Literal["http", "event-grid", "timer", "pubsub", "iot-rule", "invoke"]


@dataclass(frozen=True)
class FunctionContract:
    """What one payload function is: where it runs, how it is triggered, and whether it is a
    public inter-cloud receiver (token-checked, reachable from other clouds)."""

    name: Function
    layer: Layer
    trigger: Trigger
    receiver: bool = False
    description: str = ""


FUNCTIONS: dict[Function, FunctionContract] = {
    c.name: c
    for c in (
        FunctionContract(Function.INGESTION, Layer.L0, "http", True, "L1->L2 receiver on the L2 cloud; calls the local processor."),
        FunctionContract(Function.HOT_WRITER, Layer.L0, "http", True, "L2->L3_hot receiver on the hot cloud; upserts one reading."),
        FunctionContract(Function.COLD_WRITER, Layer.L0, "http", True, "L3_hot->L3_cold receiver; writes one chunk."),
        FunctionContract(Function.ARCHIVE_WRITER, Layer.L0, "http", True, "L3_cold->L3_archive receiver; writes one object."),
        FunctionContract(Function.HOT_READER, Layer.L0, "http", True, "L3_hot->L4/L5 receiver; time-range query."),
        FunctionContract(Function.HOT_READER_LAST_ENTRY, Layer.L0, "http", True, "L3_hot->L4/L5 receiver; latest value."),
        FunctionContract(Function.ADT_PUSHER, Layer.L0, "http", True, "Azure L0: a remote persister's reading -> twin patch."),
        FunctionContract(Function.DISPATCHER, Layer.L1, "event-grid", False, "Routes telemetry to the processor or the connector."),
        FunctionContract(Function.CONNECTOR, Layer.L1, "http", False, "L1 sender when L2 is on another cloud."),
        FunctionContract(Function.PROCESSOR, Layer.L2, "http", False, "Runs the device's processing, then calls the persister."),
        FunctionContract(Function.PERSISTER, Layer.L2, "http", False, "Stores a reading (locally or remote), updates twins when it owns that."),
        FunctionContract(Function.EVENT_CHECKER, Layer.L2, "http", False, "Evaluates the spec's event rules."),
        FunctionContract(Function.EVENT_FEEDBACK, Layer.L2, "http", False, "Publishes feedback back to a device."),
        FunctionContract(Function.HOT_TO_COLD_MOVER, Layer.L3_HOT, "timer", False, "Moves expired hot readings to cold storage."),
        FunctionContract(Function.COLD_TO_ARCHIVE_MOVER, Layer.L3_COLD, "timer", False, "Moves expired cold objects to the archive."),
        FunctionContract(Function.ADT_UPDATER, Layer.L4, "event-grid", False, "All-Azure path: IoT Hub telemetry -> twin patch."),
        FunctionContract(Function.DT_READER, Layer.L4, "invoke", False, "TwinMaker dataReader forwarding to the remote hot reader."),
        FunctionContract(Function.DT_READER_LAST_ENTRY, Layer.L4, "invoke", False, "TwinMaker last-entry reader forwarding to the remote reader."),
    )
}

ROUTE_PREFIX = "api"
"""Azure Functions' default HTTP route prefix (host.json `extensions.http.routePrefix`)."""


def route(function: Function | str) -> str:
    """The `route=` of an HTTP-triggered Azure function: the function name itself."""
    return str(Function(function))


def url_path(function: Function | str) -> str:
    """The URL path of an HTTP function in a Function App, e.g. `/api/hot-writer`."""
    return f"/{ROUTE_PREFIX}/{route(function)}"


def azure_function_url(app_host: str, function: Function | str) -> str:
    """`https://{app_host}/api/{function}` (app_host is the ARM `defaultHostName`)."""
    return f"https://{app_host}{url_path(function)}"


# --------------------------------------------------------------------------------------------
# Inter-cloud HTTP contract and payload field names
# --------------------------------------------------------------------------------------------

INTER_CLOUD_TOKEN_HEADER = "X-Inter-Cloud-Token"
"""Header carrying the inter-cloud token; receivers compare it in constant time, 401 otherwise."""


class Envelope(StrEnum):
    """Fields of the JSON envelope senders POST to remote receivers."""

    SOURCE_CLOUD = "source_cloud"
    TARGET_LAYER = "target_layer"
    MESSAGE_TYPE = "message_type"
    TIMESTAMP = "timestamp"
    PAYLOAD = "payload"
    TRACE_ID = "trace_id"


MESSAGE_TYPE_TELEMETRY = "telemetry"


class Telemetry(StrEnum):
    """Canonical telemetry fields: every reading carries `device_id` and an ISO-8601 UTC
    `timestamp`; the other keys are the device's property values."""

    DEVICE_ID = "device_id"
    TIMESTAMP = "timestamp"


LEGACY_DEVICE_ID_FIELDS: tuple[str, ...] = ("iotDeviceId", "deviceId")
"""Accepted on input and normalised to `device_id` (the original project's field names)."""
LEGACY_TIMESTAMP_FIELDS: tuple[str, ...] = ("time", "ts")
"""Accepted on input and normalised to `timestamp`."""


class StorageKey(StrEnum):
    """Keys of a stored reading in every hot store (DynamoDB hash/range, Cosmos partition key,
    Firestore document id parts)."""

    PARTITION = "device_id"
    SORT = "timestamp"


COSMOS_PARTITION_KEY_PATH = "/device_id"


class AdtPush(StrEnum):
    """Body the persister POSTs (inside the envelope) to the Azure L0 `adt-pusher`."""

    DEVICE_ID = "device_id"
    TELEMETRY = "telemetry"
    TIMESTAMP = "timestamp"


class ColdChunk(StrEnum):
    """Body the hot-to-cold mover POSTs to a remote `cold-writer`."""

    DEVICE_ID = "device_id"
    CHUNK_INDEX = "chunk_index"
    START_TIMESTAMP = "start_timestamp"
    END_TIMESTAMP = "end_timestamp"
    ITEMS = "items"
    SOURCE_CLOUD = "source_cloud"


class ArchiveObject(StrEnum):
    """Body the cold-to-archive mover POSTs to a remote `archive-writer`."""

    OBJECT_KEY = "object_key"
    DATA = "data"
    SOURCE_CLOUD = "source_cloud"


class FeedbackField(StrEnum):
    """The event checker's call to `event-feedback`: `{"detail": {"digitalTwinName",
    "iotDeviceId", "payload"}}` (the original project's shape, seed-inventory section 3)."""

    DETAIL = "detail"
    TWIN = "digitalTwinName"
    DEVICE_ID = "iotDeviceId"
    PAYLOAD = "payload"
    SENT_AT = "sentAt"
    """Added by `event-feedback` to what reaches the device (UTC ISO-8601)."""


FEEDBACK_DESIRED_PROPERTY = "feedback"
"""Azure: the device twin desired property `event-feedback` writes (`properties.desired.feedback`)."""
IOT_HUB_SERVICE_API_VERSION = "2021-04-12"
"""IoT Hub service REST api-version (registry and twins)."""


def adt_property_name(telemetry_name: str) -> str:
    """The twin Property a telemetry value is patched into: `temperature` -> `lastTemperature`
    (DTDL v3 needs unique content names, so the Property sits next to the Telemetry)."""
    return "last" + telemetry_name[:1].upper() + telemetry_name[1:]


# --------------------------------------------------------------------------------------------
# Control-plane events
# --------------------------------------------------------------------------------------------


class EventType(StrEnum):
    """CloudEvents 1.0 `type`s the control plane emits on its Event Grid topic."""

    OUTPUT_CHANGED = "twin.output.changed"
    LAYER_COMPLETED = "twin.layer.completed"
    DEPLOYMENT_COMPLETED = "twin.deployment.completed"
    DEPLOYMENT_FAILED = "twin.deployment.failed"


class ArmEventType(StrEnum):
    """Azure Resource Manager's own events (Event Grid `Microsoft.Resources.*` system topics) the
    control plane watches to notice changes made outside a deployment."""

    WRITE_SUCCESS = "Microsoft.Resources.ResourceWriteSuccess"
    DELETE_SUCCESS = "Microsoft.Resources.ResourceDeleteSuccess"


EVENT_SOURCE_PREFIX = "/twins/"


def event_source(twin: str) -> str:
    """CloudEvent `source` of every event about `twin`."""
    return f"{EVENT_SOURCE_PREFIX}{twin}"


class OutputChangedData(StrEnum):
    """Fields of a `twin.output.changed` event's `data` (`value` only when not secret)."""

    OUTPUT = "output"
    VERSION = "version"
    PRODUCER = "producer"
    SECRET = "secret"
    VALUE = "value"


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------


class Output(StrEnum):
    """Named values resources yield; wires carry them into consumers' settings."""

    INTER_CLOUD_TOKEN = "INTER_CLOUD_TOKEN"
    """Produced by the control plane itself (`control/setup/inter-cloud-token`)."""
    INTER_CLOUD_TOKEN_PREVIOUS = "INTER_CLOUD_TOKEN_PREVIOUS"
    """The token before the last rotation ("" before the first); only receivers consume it."""

    # Receivers (L0 of the receiving cloud). The value is the full URL a sender POSTs to:
    # Azure `https://{defaultHostName}/api/{function}`, the Lambda Function URL, the GCP function URL.
    INGESTION_URL = "INGESTION_URL"
    HOT_WRITER_URL = "HOT_WRITER_URL"
    COLD_WRITER_URL = "COLD_WRITER_URL"
    ARCHIVE_WRITER_URL = "ARCHIVE_WRITER_URL"
    HOT_READER_URL = "HOT_READER_URL"
    HOT_READER_LAST_ENTRY_URL = "HOT_READER_LAST_ENTRY_URL"
    ADT_PUSHER_URL = "ADT_PUSHER_URL"

    # Azure setup
    AZURE_IDENTITY_CLIENT_ID = "AZURE_IDENTITY_CLIENT_ID"
    """The user-assigned identity's `clientId` (becomes `AZURE_CLIENT_ID` in every app)."""
    AZURE_IDENTITY_PRINCIPAL_ID = "AZURE_IDENTITY_PRINCIPAL_ID"
    """The identity's `principalId`, granted roles on IoT Hub and Digital Twins."""
    AZURE_STORAGE_CONNECTION_STRING = "AZURE_STORAGE_CONNECTION_STRING"
    """Connection string of the setup storage account (from `list_keys`)."""

    # L1
    IOT_ENDPOINT = "IOT_ENDPOINT"
    """AWS IoT Core data endpoint (`describe_endpoint(endpointType="iot:Data-ATS")`)."""
    IOT_HUB_SERVICE_CONNECTION_STRING = "IOT_HUB_SERVICE_CONNECTION_STRING"
    """IoT Hub `service` policy connection string (event feedback through the device twin)."""
    CONNECTOR_URL = "CONNECTOR_URL"

    # L2
    PROCESSOR_URL = "PROCESSOR_URL"
    """URL of the L2 `processor` on Azure/GCP (callers on the same cloud only)."""
    PROCESSOR_KEY = "PROCESSOR_KEY"
    """A function key of the Azure L2 app, sent as `x-functions-key`."""
    PERSISTER_URL = "PERSISTER_URL"
    EVENT_CHECKER_URL = "EVENT_CHECKER_URL"
    LAMBDA_CHAIN_STATE_MACHINE_ARN = "LAMBDA_CHAIN_STATE_MACHINE_ARN"
    LOGIC_APP_TRIGGER_URL = "LOGIC_APP_TRIGGER_URL"
    WORKFLOW_NAME = "WORKFLOW_NAME"

    # L3
    DYNAMODB_TABLE_NAME = "DYNAMODB_TABLE_NAME"
    COSMOS_DB_ENDPOINT = "COSMOS_DB_ENDPOINT"
    COSMOS_DB_KEY = "COSMOS_DB_KEY"
    COSMOS_DB_DATABASE = "COSMOS_DB_DATABASE"
    COSMOS_DB_CONTAINER = "COSMOS_DB_CONTAINER"
    FIRESTORE_DATABASE = "FIRESTORE_DATABASE"
    FIRESTORE_COLLECTION = "FIRESTORE_COLLECTION"
    COLD_S3_BUCKET_NAME = "COLD_S3_BUCKET_NAME"
    ARCHIVE_S3_BUCKET_NAME = "ARCHIVE_S3_BUCKET_NAME"
    COLD_STORAGE_CONTAINER = "COLD_STORAGE_CONTAINER"
    ARCHIVE_STORAGE_CONTAINER = "ARCHIVE_STORAGE_CONTAINER"
    COLD_GCS_BUCKET = "COLD_GCS_BUCKET"
    ARCHIVE_GCS_BUCKET = "ARCHIVE_GCS_BUCKET"
    LOCAL_HOT_READER_URL = "LOCAL_HOT_READER_URL"
    """The hot cloud's own reader (same-cloud L5 datasource)."""
    HOT_READER_FUNCTION_ARN = "HOT_READER_FUNCTION_ARN"
    HOT_READER_LAST_ENTRY_FUNCTION_ARN = "HOT_READER_LAST_ENTRY_FUNCTION_ARN"

    # L4
    ADT_INSTANCE_URL = "ADT_INSTANCE_URL"
    """`https://` + the instance's ARM `properties.hostName` (never built from name + region)."""
    TWINMAKER_WORKSPACE_NAME = "TWINMAKER_WORKSPACE_NAME"
    DT_READER_FUNCTION_ARN = "DT_READER_FUNCTION_ARN"
    DT_READER_LAST_ENTRY_FUNCTION_ARN = "DT_READER_LAST_ENTRY_FUNCTION_ARN"

    # L5
    GRAFANA_URL = "GRAFANA_URL"


DEVICE_CREDENTIALS_PREFIX = "DEVICE_CREDENTIALS:"


def device_credentials_output(device_id: str) -> str:
    """Output holding one device's connection credentials (connection string / certificate)."""
    return f"{DEVICE_CREDENTIALS_PREFIX}{device_id}"


SECRET_OUTPUTS: frozenset[str] = frozenset(
    {
        Output.INTER_CLOUD_TOKEN,
        Output.INTER_CLOUD_TOKEN_PREVIOUS,
        Output.AZURE_STORAGE_CONNECTION_STRING,
        Output.IOT_HUB_SERVICE_CONNECTION_STRING,
        Output.PROCESSOR_KEY,
        Output.LOGIC_APP_TRIGGER_URL,
        Output.COSMOS_DB_KEY,
    }
)


def is_secret_output(name: str) -> bool:
    """True when an output's value must never be logged, shown or put into events."""
    return name in SECRET_OUTPUTS or name.startswith(DEVICE_CREDENTIALS_PREFIX)


# --------------------------------------------------------------------------------------------
# Boundaries: which receiver serves which sender
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Boundary:
    """A layer-to-layer hop that may cross clouds. When `sender_layer` and `receiver_layer` sit
    on different clouds, `receivers` run in L0 of the receiving cloud and the sending function
    reads the receiver's URL output from `url_settings` plus the inter-cloud token."""

    name: str
    sender_layer: Layer
    receiver_layer: Layer
    sender: Function
    receivers: tuple[Function, ...]
    url_settings: tuple[tuple[Output, Setting], ...]


BOUNDARIES: tuple[Boundary, ...] = (
    Boundary("L1->L2", Layer.L1, Layer.L2, Function.CONNECTOR, (Function.INGESTION,),
             ((Output.INGESTION_URL, Setting.REMOTE_INGESTION_URL),)),
    Boundary("L2->L3_hot", Layer.L2, Layer.L3_HOT, Function.PERSISTER, (Function.HOT_WRITER,),
             ((Output.HOT_WRITER_URL, Setting.REMOTE_WRITER_URL),)),
    Boundary("L3_hot->L3_cold", Layer.L3_HOT, Layer.L3_COLD, Function.HOT_TO_COLD_MOVER, (Function.COLD_WRITER,),
             ((Output.COLD_WRITER_URL, Setting.REMOTE_COLD_WRITER_URL),)),
    Boundary("L3_cold->L3_archive", Layer.L3_COLD, Layer.L3_ARCHIVE, Function.COLD_TO_ARCHIVE_MOVER,
             (Function.ARCHIVE_WRITER,), ((Output.ARCHIVE_WRITER_URL, Setting.REMOTE_ARCHIVE_WRITER_URL),)),
    # The reader boundary is pulled: the "sender" is the pulling side (TwinMaker's dt-reader on
    # AWS L4, the L5 Grafana datasource) and the receivers sit on the hot cloud.
    Boundary("L3_hot->L4", Layer.L4, Layer.L3_HOT, Function.DT_READER,
             (Function.HOT_READER, Function.HOT_READER_LAST_ENTRY),
             ((Output.HOT_READER_URL, Setting.REMOTE_READER_URL),
              (Output.HOT_READER_LAST_ENTRY_URL, Setting.REMOTE_READER_LAST_ENTRY_URL))),
)

RECEIVER_OUTPUTS: dict[Function, Output] = {
    Function.INGESTION: Output.INGESTION_URL,
    Function.HOT_WRITER: Output.HOT_WRITER_URL,
    Function.COLD_WRITER: Output.COLD_WRITER_URL,
    Function.ARCHIVE_WRITER: Output.ARCHIVE_WRITER_URL,
    Function.HOT_READER: Output.HOT_READER_URL,
    Function.HOT_READER_LAST_ENTRY: Output.HOT_READER_LAST_ENTRY_URL,
    Function.ADT_PUSHER: Output.ADT_PUSHER_URL,
}
"""The URL output each receiver yields (one receiver of each kind per twin at most)."""


class TwinUpdatePath(StrEnum):
    """How a telemetry reading reaches the twin graph (DESIGN.md section 5)."""

    EVENT_GRID_ADT_UPDATER = "event-grid-adt-updater"
    """L1 = L2 = L4 = azure: IoT Hub -> Event Grid -> `adt-updater` in the L4 app."""
    PERSISTER_DIRECT = "persister-direct"
    """L1 != azure, L2 = L4 = azure: the Azure persister patches the twin after its storage write."""
    REMOTE_ADT_PUSHER = "remote-adt-pusher"
    """L2 on aws/gcp, L4 = azure: the remote persister POSTs to the Azure L0 `adt-pusher`."""
    PULL = "pull"
    """L4 = aws: nothing pushes; TwinMaker pulls through the hot reader."""


def twin_update_path(l1: str, l2: str, l4: str) -> TwinUpdatePath:
    """The twin-update decision table for one (L1, L2, L4) placement."""
    if l4 != "azure":
        return TwinUpdatePath.PULL
    if l2 != "azure":
        return TwinUpdatePath.REMOTE_ADT_PUSHER
    if l1 == "azure":
        return TwinUpdatePath.EVENT_GRID_ADT_UPDATER
    return TwinUpdatePath.PERSISTER_DIRECT


# --------------------------------------------------------------------------------------------
# Which settings each function reads
# --------------------------------------------------------------------------------------------

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
            reads.update((Setting.ADT_INSTANCE_URL, Setting.AZURE_CLIENT_ID))
    elif fn == Function.EVENT_FEEDBACK:
        if provider == "aws":
            reads.add(Setting.IOT_ENDPOINT)
        elif provider == "azure":
            reads.add(Setting.IOT_HUB_SERVICE_CONNECTION_STRING)
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


# --------------------------------------------------------------------------------------------
# DIGITAL_TWIN_INFO: one shape
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DigitalTwinInfo:
    """The value of `DIGITAL_TWIN_INFO` in every payload function. Deliberately small and
    independent of the device list: Lambda environments are limited to 4 KB, and adding a
    device must not touch every function's configuration."""

    twin_name: str
    mode: str
    hot_storage_days: int
    cold_storage_days: int
    providers: Mapping[str, str] = field(default_factory=dict)
    """Layer name (`L1`, `L2`, `L3_hot`, ...) -> provider."""

    FIELDS = ("twin_name", "mode", "hot_storage_days", "cold_storage_days", "providers")

    def to_dict(self) -> dict[str, Any]:
        return {
            "twin_name": self.twin_name,
            "mode": self.mode,
            "hot_storage_days": self.hot_storage_days,
            "cold_storage_days": self.cold_storage_days,
            "providers": dict(sorted(self.providers.items())),
        }

    def to_json(self) -> str:
        """Compact, key-sorted JSON: the same twin always yields the same setting value."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> DigitalTwinInfo:
        """Parse the setting; a bad value raises ValueError naming the setting and the field."""
        try:
            data = json.loads(text)
        except (TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{Setting.DIGITAL_TWIN_INFO} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{Setting.DIGITAL_TWIN_INFO} must be a JSON object")
        missing = [f for f in cls.FIELDS if f not in data]
        if missing:
            raise ValueError(f"{Setting.DIGITAL_TWIN_INFO} lacks {', '.join(missing)}")
        providers = data["providers"]
        if not isinstance(providers, dict):
            raise ValueError(f"{Setting.DIGITAL_TWIN_INFO}.providers must be an object")
        for key in ("hot_storage_days", "cold_storage_days"):
            if not isinstance(data[key], int) or isinstance(data[key], bool):
                raise ValueError(f"{Setting.DIGITAL_TWIN_INFO}.{key} must be an integer")
        return cls(
            twin_name=str(data["twin_name"]),
            mode=str(data["mode"]),
            hot_storage_days=data["hot_storage_days"],
            cold_storage_days=data["cold_storage_days"],
            providers={str(k): str(v) for k, v in providers.items()},
        )
