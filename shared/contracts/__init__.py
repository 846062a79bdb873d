"""The one place that spells every name two parts of the system must agree on.

The deployer (plan, providers, activities) and the payload functions deployed into the twin's
clouds both import this package; nothing else spells these strings. The original project's worst
defect was drift between what its deployer set and what its functions read (a setting written
under one name and read under another fails only at run time, in another cloud), so each name
lives here once, in the module of its concern:

- `layers`: layers, provider names and the spec field that places each layer;
- `functions`: payload function names, triggers and HTTP routes;
- `settings`: environment variables / app settings (`Setting`), which are secret or late-bound,
  which each payload function reads on each cloud (`settings_read`), and the control plane's own
  settings (`ControlPlaneSetting`);
- `outputs`: output names (`Output`) and which are secret (`is_secret_output`);
- `boundaries`: which receiver serves which sender across clouds, and the twin-update path;
- `payloads`: the inter-cloud header and envelope, telemetry, storage and body field names;
- `events`: control-plane event types, the ARM events watched, the CloudEvent `source`;
- `twin_info`: the one shape of `DIGITAL_TWIN_INFO`.

Every name is also importable from `shared.contracts` itself. Pure standard library: payload
functions import this inside Lambdas and Function Apps (their packages carry the whole package).
"""

from shared.contracts.boundaries import (
    BOUNDARIES,
    FEEDBACK_BOUNDARY,
    RECEIVER_OUTPUTS,
    Boundary,
    TwinUpdatePath,
    twin_update_path,
)
from shared.contracts.events import (
    EVENT_SOURCE_PREFIX,
    ArmEventType,
    EventType,
    OutputChangedData,
    event_source,
)
from shared.contracts.functions import (
    FUNCTIONS,
    ROUTE_PREFIX,
    USER_CODE_FUNCTIONS,
    Function,
    FunctionContract,
    Trigger,
    azure_function_url,
    route,
    url_path,
)
from shared.contracts.layers import (
    CONTROL,
    LAYER_SLOTS,
    LAYERS,
    PROVIDER_NAMES,
    PULL_TWIN_PROVIDERS,
    Layer,
    ProviderName,
)
from shared.contracts.outputs import (
    DEVICE_CREDENTIALS_PREFIX,
    SECRET_OUTPUTS,
    Output,
    device_credentials_output,
    is_secret_output,
    keyed_output,
)
from shared.contracts.payloads import (
    COSMOS_PARTITION_KEY_PATH,
    EVENT_ACTION_EVENT,
    EVENT_ACTION_NAME_PARAM,
    FEEDBACK_DESIRED_PROPERTY,
    INTER_CLOUD_TOKEN_HEADER,
    IOT_HUB_SERVICE_API_VERSION,
    LEGACY_DEVICE_ID_FIELDS,
    LEGACY_TIMESTAMP_FIELDS,
    MESSAGE_TYPE_FEEDBACK,
    MESSAGE_TYPE_TELEMETRY,
    PUBSUB_DEVICE_ID_ATTRIBUTE,
    AdtPush,
    ArchiveObject,
    ColdChunk,
    Envelope,
    FeedbackField,
    StorageKey,
    Telemetry,
    adt_property_name,
)
from shared.contracts.settings import (
    AZURE_TOKEN_EXCHANGE_AUDIENCE,
    KEYED_SETTINGS,
    LATE_BOUND_SETTINGS,
    SECRET_SETTINGS,
    ControlPlaneSetting,
    Setting,
    archive_store_settings,
    cold_store_settings,
    hot_store_settings,
    keyed_setting,
    setting_base,
    settings_read,
)
from shared.contracts.twin_info import DigitalTwinInfo

__all__ = [
    "AZURE_TOKEN_EXCHANGE_AUDIENCE",
    "BOUNDARIES",
    "FEEDBACK_BOUNDARY",
    "CONTROL",
    "COSMOS_PARTITION_KEY_PATH",
    "DEVICE_CREDENTIALS_PREFIX",
    "EVENT_SOURCE_PREFIX",
    "EVENT_ACTION_EVENT",
    "EVENT_ACTION_NAME_PARAM",
    "FEEDBACK_DESIRED_PROPERTY",
    "FUNCTIONS",
    "INTER_CLOUD_TOKEN_HEADER",
    "IOT_HUB_SERVICE_API_VERSION",
    "KEYED_SETTINGS",
    "LATE_BOUND_SETTINGS",
    "LAYERS",
    "LAYER_SLOTS",
    "LEGACY_DEVICE_ID_FIELDS",
    "LEGACY_TIMESTAMP_FIELDS",
    "MESSAGE_TYPE_FEEDBACK",
    "MESSAGE_TYPE_TELEMETRY",
    "PROVIDER_NAMES",
    "PUBSUB_DEVICE_ID_ATTRIBUTE",
    "PULL_TWIN_PROVIDERS",
    "RECEIVER_OUTPUTS",
    "ROUTE_PREFIX",
    "USER_CODE_FUNCTIONS",
    "SECRET_OUTPUTS",
    "SECRET_SETTINGS",
    "AdtPush",
    "ArchiveObject",
    "ArmEventType",
    "Boundary",
    "ColdChunk",
    "ControlPlaneSetting",
    "DigitalTwinInfo",
    "Envelope",
    "EventType",
    "FeedbackField",
    "Function",
    "FunctionContract",
    "Layer",
    "Output",
    "OutputChangedData",
    "ProviderName",
    "Setting",
    "StorageKey",
    "Telemetry",
    "Trigger",
    "TwinUpdatePath",
    "adt_property_name",
    "archive_store_settings",
    "azure_function_url",
    "cold_store_settings",
    "device_credentials_output",
    "keyed_output",
    "keyed_setting",
    "setting_base",
    "event_source",
    "hot_store_settings",
    "is_secret_output",
    "route",
    "settings_read",
    "twin_update_path",
    "url_path",
]
