"""The deployment spec: the one JSON document that describes a twin (DESIGN.md section 4).

These pydantic models fix the document's shape. Field names follow the original project's
config files (`dataType`, `initValue`, `constProperties`, `$dtId`, ...) so that existing users
can move over; Python attributes are snake_case. Semantic checks that span sections (twin name
rules per cloud, DTDL references, event conditions) live in `shared.validation`, and the loaders
(JSON file, dict, original folder layout) in `shared.loaders`.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, JsonValue, WithJsonSchema
from pydantic.config import JsonDict

Provider = Literal["aws", "azure", "gcp"]
PROVIDERS: tuple[Provider, ...] = ("aws", "azure", "gcp")
# The original project spelled GCP "google" in config_providers.json.
PROVIDER_ALIASES: dict[str, Provider] = {"google": "gcp"}


def _normalise_provider(value: Any) -> Any:
    if isinstance(value, str):
        lowered = value.strip().lower()
        return PROVIDER_ALIASES.get(lowered, lowered)
    return value


ProviderName = Annotated[
    Provider,
    BeforeValidator(_normalise_provider),
    # The schema describes what a document may say, so it lists the accepted alias too.
    WithJsonSchema({"type": "string", "enum": ["aws", "azure", "gcp", "google"], "description": "google means gcp"}),
]

# Layers 4 and 5 cannot run on gcp: the validator says so in words; the schema says so too.
TwinLayerProviderName = Annotated[
    Provider,
    BeforeValidator(_normalise_provider),
    WithJsonSchema({"type": "string", "enum": ["aws", "azure"], "description": "GCP has no managed service for it"}),
]

# The twin name prefixes every cloud resource. What any cloud accepts (the path parameter of the
# HTTP API uses it too); each used cloud narrows it (`TWIN_NAME_LIMITS`). `shared.validation`
# derives the same limits from the generated names; a test keeps the two in step.
TWIN_NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9-]*$"
TWIN_NAME_MAX_LENGTH = 42
TWIN_NAME_REGEX = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,41}")
TWIN_NAME_LIMITS: dict[str, tuple[int, str]] = {
    # cloud: (max length, pattern): e.g. Azure Managed Grafana names start with a letter, 2-23 chars.
    "azure": (15, "^[A-Za-z][A-Za-z0-9-]*$"),
    "aws": (42, TWIN_NAME_PATTERN),
    "gcp": (41, "^[A-Za-z][A-Za-z0-9-]*$"),
}
DEVICE_ID_PATTERN = "^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62}[A-Za-z0-9])?$"
NOT_BLANK: JsonDict = {"minLength": 1, "pattern": "\\S"}

# TwinMaker data types, as used by config_iot_devices.json.
DataType = Literal["DOUBLE", "INTEGER", "LONG", "BOOLEAN", "STRING"]


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


class _Strict(BaseModel):
    """Our own sections reject unknown keys, so a typo is reported instead of ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class TwinSettings(_Strict):
    name: str = Field(
        description="Prefix of every cloud resource; checked against each used cloud's naming rules.",
        json_schema_extra={"minLength": 1, "maxLength": TWIN_NAME_MAX_LENGTH, "pattern": TWIN_NAME_PATTERN},
    )
    hot_storage_days: int = Field(30, ge=1, le=3650, description="Days a reading stays in hot storage.")
    cold_storage_days: int = Field(90, ge=1, le=36500, description="Days a reading stays in cold storage.")
    mode: Annotated[Literal["DEBUG", "PRODUCTION"], BeforeValidator(_upper)] = "PRODUCTION"


class Providers(_Strict):
    """Which cloud hosts each layer slot (`google` is accepted for `gcp`)."""

    layer_1_provider: ProviderName
    layer_2_provider: ProviderName
    layer_3_hot_provider: ProviderName
    layer_3_cold_provider: ProviderName
    layer_3_archive_provider: ProviderName
    layer_4_provider: TwinLayerProviderName
    layer_5_provider: TwinLayerProviderName


class DeviceProperty(_Strict):
    """A time-series property a device sends."""

    name: str = Field(json_schema_extra=NOT_BLANK)
    data_type: Annotated[DataType, BeforeValidator(_upper)] = Field(alias="dataType")
    init_value: Any = Field(None, alias="initValue")


class ConstProperty(_Strict):
    """A fixed attribute of a device (serial number, location, ...)."""

    name: str = Field(json_schema_extra=NOT_BLANK)
    data_type: Annotated[DataType, BeforeValidator(_upper)] = Field(alias="dataType")
    value: Any


class Device(_Strict):
    id: str = Field(description="Becomes part of cloud resource names.", json_schema_extra={"pattern": DEVICE_ID_PATTERN})
    properties: list[DeviceProperty] = Field(min_length=1)
    const_properties: list[ConstProperty] = Field(default_factory=list, alias="constProperties")


class DtdlTwinMetadata(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)
    model: str = Field(alias="$model")


class DtdlTwin(BaseModel):
    """A twin of the Azure hierarchy: `$dtId`, `$metadata.$model`, and initial property values."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)
    dt_id: str = Field(alias="$dtId", json_schema_extra=NOT_BLANK)
    metadata: DtdlTwinMetadata = Field(alias="$metadata")

    def initial_properties(self) -> dict[str, Any]:
        """Property values given next to `$dtId` (everything not starting with `$`)."""
        return {k: v for k, v in (self.model_extra or {}).items() if not k.startswith("$")}


class DtdlRelationship(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)
    source_id: str = Field(alias="$dtId")
    target_id: str = Field(alias="$targetId")
    name: str = Field(alias="$relationshipName")
    relationship_id: str | None = Field(None, alias="$relationshipId")

    def stable_id(self) -> str:
        """The given `$relationshipId`, else one derived from source, name and target, so a
        re-run upserts the same relationship instead of adding a duplicate."""
        return self.relationship_id or f"{self.source_id}-{self.name}-{self.target_id}"


class AzureHierarchy(BaseModel):
    """The Azure Digital Twins hierarchy (`twin_hierarchy/azure_hierarchy.json`): DTDL models as
    given (validated in `shared.validation`), twins and relationships."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)
    header: dict[str, Any] | None = None
    models: list[dict[str, Any]] = Field(default_factory=list)
    twins: list[DtdlTwin] = Field(default_factory=list)
    relationships: list[DtdlRelationship] = Field(default_factory=list)


class TwinMakerProperty(_Strict):
    name: str
    data_type: Annotated[DataType, BeforeValidator(_upper)] = Field(alias="dataType")


class TwinMakerConstProperty(_Strict):
    name: str
    data_type: Annotated[DataType, BeforeValidator(_upper)] = Field(alias="dataType")
    value: Any


class TwinMakerNode(_Strict):
    """One node of the AWS IoT TwinMaker tree (`twin_hierarchy/aws_hierarchy.json`): an entity
    with children, or a component bound to a device (`iotDeviceId`, else its `name`)."""

    type: Literal["entity", "component"]
    id: str | None = None
    name: str | None = None
    children: list[TwinMakerNode] = Field(default_factory=list)
    component_type_id: str | None = Field(None, alias="componentTypeId")
    iot_device_id: str | None = Field(None, alias="iotDeviceId")
    properties: list[TwinMakerProperty] = Field(default_factory=list)
    const_properties: list[TwinMakerConstProperty] = Field(default_factory=list, alias="constProperties")

    def device_id(self) -> str | None:
        if self.type != "component":
            return None
        return self.iot_device_id or self.name


class Hierarchy(_Strict):
    azure: AzureHierarchy | None = None
    aws: list[TwinMakerNode] | None = None


class EventFeedback(_Strict):
    type: Literal["mqtt"]
    iot_device_id: str = Field(alias="iotDeviceId")
    payload: str


class EventAction(_Strict):
    type: Literal["lambda", "function", "step_function", "logic_app", "workflow"]
    function_name: str = Field(alias="functionName", json_schema_extra=NOT_BLANK)
    function_name_b: str | None = Field(None, alias="functionNameB")
    path_to_code: str | None = Field(None, alias="pathToCode")
    auto_deploy: bool = Field(False, alias="autoDeploy")
    feedback: EventFeedback | None = None


class EventRule(_Strict):
    """`condition` is `A OP B` with OP in `<`, `>`, `==`; operands are `entity.component.property`
    or typed literals `DOUBLE(30)`, `INTEGER(5)`, `STRING(x)` (parsed by `shared.validation`)."""

    condition: str = Field(json_schema_extra=NOT_BLANK)
    action: EventAction


FunctionsPlan = Literal["FC1", "Y1", "EP1"]


class AzureCloud(_Strict):
    """Where Azure layers go. Credentials never appear here: DefaultAzureCredential / managed identity."""

    subscription_id: str | None = None
    tenant_id: str | None = None
    region: str = "westeurope"
    region_iothub: str | None = None
    region_digital_twin: str | None = None
    functions_plan: FunctionsPlan = Field(
        "FC1", description="Hosting plan of every Function App: FC1 (Flex Consumption), Y1 (Consumption) or EP1 (Premium)."
    )

    @property
    def iothub_region(self) -> str:
        return self.region_iothub or self.region

    @property
    def digital_twin_region(self) -> str:
        return self.region_digital_twin or self.region


class AwsCloud(_Strict):
    """Where AWS layers go. Credentials come from the AWS credential chain (or `role_arn` to assume)."""

    region: str = "eu-central-1"
    account_id: str | None = None
    role_arn: str | None = None


class GcpCloud(_Strict):
    """Where GCP layers go. Credentials never appear here: Application Default Credentials, or
    workload identity federation from the control plane's managed identity on Azure."""

    project_id: str | None = Field(
        None, pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$",
        description="Google Cloud project of every GCP resource; unset: the control plane's TWIN_GCP_PROJECT, "
                    "else the project of its credentials.")
    region: str = Field(
        "europe-west1", pattern=r"^[a-z]+-[a-z]+[0-9]+$",
        description="Region of the Cloud Functions, Cloud Scheduler jobs, Firestore database and buckets "
                    "(e.g. europe-west1).")


class Clouds(_Strict):
    # Frozen models, so one shared default instance is safe.
    azure: AzureCloud = AzureCloud()
    aws: AwsCloud = AwsCloud()
    gcp: GcpCloud = GcpCloud()


class Options(_Strict):
    """Feature flags (the original `config_optimization.json` `result.inputParamsUsed`)."""

    use_event_checking: bool = True
    trigger_notification_workflow: bool = False
    return_feedback_to_device: bool = False
    integrate_error_handling: bool = False


_LAYER_SLOTS = ("layer_1_provider", "layer_2_provider", "layer_3_hot_provider", "layer_3_cold_provider",
                "layer_3_archive_provider", "layer_4_provider", "layer_5_provider")
_CLOUD_SPELLINGS: dict[str, list[JsonValue]] = {"azure": ["azure"], "aws": ["aws"], "gcp": ["gcp", "google"]}


def _uses(cloud: str, slots: tuple[str, ...] = _LAYER_SLOTS) -> JsonDict:
    """JSON Schema: some layer slot of `providers` names `cloud`."""
    return {"required": ["providers"], "properties": {"providers": {"anyOf": [
        {"required": [slot], "properties": {slot: {"enum": _CLOUD_SPELLINGS[cloud]}}} for slot in slots]}}}


def _cross_field_rules() -> list[JsonValue]:
    """What JSON Schema can say about rules that span sections: the twin name's limits per used
    cloud, and the hierarchy layer 4 needs. (Not expressible, so only the validator checks them:
    hot < cold days, unique ids, device ids within the names they enter, DTDL references.)"""
    rules: list[JsonValue] = [
        {"if": _uses(cloud), "then": {"properties": {"twin": {"properties": {"name": {
            "maxLength": max_length, "pattern": pattern}}}}}}
        for cloud, (max_length, pattern) in TWIN_NAME_LIMITS.items()
    ]
    rules.append({"if": _uses("azure", ("layer_4_provider",)), "then": {
        "required": ["hierarchy"], "properties": {"hierarchy": {"required": ["azure"],
                                                                "properties": {"azure": {"type": "object"}}}}}})
    rules.append({"if": _uses("aws", ("layer_4_provider",)), "then": {
        "required": ["hierarchy"], "properties": {"hierarchy": {"required": ["aws"],
                                                                "properties": {"aws": {"type": "array", "minItems": 1}}}}}})
    return rules


class TwinSpec(_Strict):
    """The whole deployment spec."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True,
                              json_schema_extra={"allOf": _cross_field_rules()})

    twin: TwinSettings
    providers: Providers
    devices: list[Device] = Field(min_length=1)
    hierarchy: Hierarchy = Hierarchy()
    events: list[EventRule] = Field(default_factory=list)
    clouds: Clouds = Clouds()
    options: Options = Options()

    def used_providers(self) -> list[Provider]:
        """Clouds that host at least one layer, in a fixed order."""
        used = set(self.providers.model_dump().values())
        return [p for p in PROVIDERS if p in used]


JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def spec_json_schema() -> dict[str, Any]:
    """The JSON Schema of the spec document (what `docs/spec.schema.json` holds)."""
    schema = TwinSpec.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": JSON_SCHEMA_DIALECT, "title": "Twin deployment spec", **{k: v for k, v in schema.items() if k != "title"}}


def spec_components(ref_template: str) -> dict[str, Any]:
    """The spec's schema as named schemas for another document (OpenAPI `components/schemas`):
    `TwinSpec` and every definition it uses, references written with `ref_template`."""
    schema = TwinSpec.model_json_schema(by_alias=True, mode="validation", ref_template=ref_template)
    definitions = schema.pop("$defs", {})
    return {"TwinSpec": schema, **definitions}


def render_json_schema() -> str:
    """The schema as committed: stable key order and a trailing newline, so diffs stay small."""
    return json.dumps(spec_json_schema(), indent=2, ensure_ascii=False) + "\n"
