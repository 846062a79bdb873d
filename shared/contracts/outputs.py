"""Outputs: the named values resources yield (wires carry them into consumers' settings), and
which of them are secret."""

from __future__ import annotations

from enum import StrEnum


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
    FEEDBACK_URL = "FEEDBACK_URL"
    """`event-feedback` on L1's cloud, when the event checker (L2) runs on another cloud."""

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
    FEEDBACK_TOPIC = "FEEDBACK_TOPIC"
    """GCP: the feedback topic (`projects/P/topics/T`) devices read through their subscriptions."""

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
    USER_PROCESSOR_URL = "USER_PROCESSOR_URL"
    """Azure: the users' processors in the L2 user-functions app (`user-processor`)."""
    EVENT_ACTION_URL = "EVENT_ACTION_URL"
    """Azure: the users' event actions in the L2 user-functions app (`event-action?name=...`)."""
    USER_FUNCTIONS_KEY = "USER_FUNCTIONS_KEY"
    """A function key of the Azure user-functions app, sent as `x-functions-key`."""

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


def keyed_output(base: Output, key: str) -> str:
    """A URL output one of several functions of a kind yields, by key: `PROCESSOR_URL:{device}`
    (GCP's per-device processors), `EVENT_ACTION_URL:{function name}` (GCP's event actions)."""
    return f"{base}:{key}"


SECRET_OUTPUTS: frozenset[str] = frozenset(
    {
        Output.INTER_CLOUD_TOKEN,
        Output.INTER_CLOUD_TOKEN_PREVIOUS,
        Output.AZURE_STORAGE_CONNECTION_STRING,
        Output.IOT_HUB_SERVICE_CONNECTION_STRING,
        Output.PROCESSOR_KEY,
        Output.USER_FUNCTIONS_KEY,
        Output.LOGIC_APP_TRIGGER_URL,
        Output.COSMOS_DB_KEY,
    }
)


def is_secret_output(name: str) -> bool:
    """True when an output's value must never be logged, shown or put into events."""
    return name in SECRET_OUTPUTS or name.startswith(DEVICE_CREDENTIALS_PREFIX)
