"""The deployment spec: the one JSON document that describes a twin (DESIGN.md section 4).

These pydantic models fix the document's shape. Field names follow the original project's
config files (`dataType`, `initValue`, `constProperties`, `$dtId`, ...) so that existing users
can move over; Python attributes are snake_case. Semantic checks that span sections (twin name
rules per cloud, DTDL references, event conditions) live in `shared.validation`, and the loaders
(JSON file, dict, original folder layout) in `shared.loaders`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

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

# TwinMaker data types, as used by config_iot_devices.json.
DataType = Literal["DOUBLE", "INTEGER", "LONG", "BOOLEAN", "STRING"]


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


class _Strict(BaseModel):
    """Our own sections reject unknown keys, so a typo is reported instead of ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class TwinSettings(_Strict):
    name: str = Field(description="Prefix of every cloud resource; checked against each used cloud's naming rules.")
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
    layer_4_provider: ProviderName
    layer_5_provider: ProviderName


class DeviceProperty(_Strict):
    """A time-series property a device sends."""

    name: str
    data_type: Annotated[DataType, BeforeValidator(_upper)] = Field(alias="dataType")
    init_value: Any = Field(None, alias="initValue")


class ConstProperty(_Strict):
    """A fixed attribute of a device (serial number, location, ...)."""

    name: str
    data_type: Annotated[DataType, BeforeValidator(_upper)] = Field(alias="dataType")
    value: Any


class Device(_Strict):
    id: str
    properties: list[DeviceProperty] = Field(min_length=1)
    const_properties: list[ConstProperty] = Field(default_factory=list, alias="constProperties")


class DtdlTwinMetadata(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)
    model: str = Field(alias="$model")


class DtdlTwin(BaseModel):
    """A twin of the Azure hierarchy: `$dtId`, `$metadata.$model`, and initial property values."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)
    dt_id: str = Field(alias="$dtId")
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
    function_name: str = Field(alias="functionName")
    function_name_b: str | None = Field(None, alias="functionNameB")
    path_to_code: str | None = Field(None, alias="pathToCode")
    auto_deploy: bool = Field(False, alias="autoDeploy")
    feedback: EventFeedback | None = None


class EventRule(_Strict):
    """`condition` is `A OP B` with OP in `<`, `>`, `==`; operands are `entity.component.property`
    or typed literals `DOUBLE(30)`, `INTEGER(5)`, `STRING(x)` (parsed by `shared.validation`)."""

    condition: str
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
    project_id: str | None = None
    region: str = "europe-west1"


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


class TwinSpec(_Strict):
    """The whole deployment spec."""

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


def render_json_schema() -> str:
    """The schema as committed: stable key order and a trailing newline, so diffs stay small."""
    return json.dumps(spec_json_schema(), indent=2, ensure_ascii=False) + "\n"
