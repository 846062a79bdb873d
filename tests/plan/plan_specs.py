"""Spec builders and plan probes shared by the plan tests."""

from __future__ import annotations

import copy
import itertools
from typing import Any

from shared.plan import Plan, Resource
from shared.resources.aws import LambdaConfig
from shared.resources.azure import FunctionAppConfig, HostedFunction
from shared.resources.gcp import CloudFunctionConfig
from shared.spec import TwinSpec

PROVIDERS = ("aws", "azure", "gcp")
SLOTS = (
    "layer_1_provider",
    "layer_2_provider",
    "layer_3_hot_provider",
    "layer_3_cold_provider",
    "layer_3_archive_provider",
    "layer_4_provider",
    "layer_5_provider",
)
LAYER_OF_SLOT = dict(zip(SLOTS, ("L1", "L2", "L3_hot", "L3_cold", "L3_archive", "L4", "L5"), strict=True))

BASE: dict[str, Any] = {
    "twin": {"name": "plant-a", "hot_storage_days": 30, "cold_storage_days": 90, "mode": "DEBUG"},
    "providers": {slot: "azure" for slot in SLOTS},
    "devices": [
        {
            "id": "temperature-sensor-1",
            "properties": [{"name": "temperature", "dataType": "DOUBLE", "initValue": 20.0}],
            "constProperties": [{"name": "serial-number", "dataType": "STRING", "value": "T-1"}],
        },
        {"id": "pressure-sensor-1", "properties": [{"name": "pressure", "dataType": "DOUBLE"}]},
    ],
    "hierarchy": {
        "azure": {
            "header": {"fileVersion": "1.0.0"},
            "models": [
                {"@id": "dtmi:plant:Room;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3",
                 "contents": [{"@type": "Relationship", "name": "hasSensor"}]},
                {"@id": "dtmi:plant:Sensor;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3",
                 "contents": [{"@type": "Telemetry", "name": "temperature", "schema": "double"},
                              {"@type": "Property", "name": "lastTemperature", "schema": "double", "writable": True}]},
            ],
            "twins": [
                {"$dtId": "room-1", "$metadata": {"$model": "dtmi:plant:Room;1"}},
                {"$dtId": "temperature-sensor-1", "$metadata": {"$model": "dtmi:plant:Sensor;1"}},
                {"$dtId": "pressure-sensor-1", "$metadata": {"$model": "dtmi:plant:Sensor;1"}},
            ],
            "relationships": [
                {"$dtId": "room-1", "$targetId": "temperature-sensor-1", "$relationshipName": "hasSensor"},
                {"$dtId": "room-1", "$targetId": "pressure-sensor-1", "$relationshipName": "hasSensor"},
            ],
        },
        "aws": [
            {"type": "entity", "id": "room-1", "children": [
                {"type": "component", "name": "temperature-sensor-1", "iotDeviceId": "temperature-sensor-1"},
                {"type": "component", "name": "pressure-sensor-1", "iotDeviceId": "pressure-sensor-1"},
            ]},
        ],
    },
    "events": [
        {
            "condition": "room-1.temperature-sensor-1.temperature > DOUBLE(30)",
            "action": {"type": "lambda", "functionName": "high-temperature", "autoDeploy": False},
        }
    ],
}


def spec_dict(providers: dict[str, str] | tuple[str, ...] | None = None, **changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    if isinstance(providers, tuple):
        providers = dict(zip(SLOTS, providers, strict=True))
    if providers:
        data["providers"].update(providers)
    data.update(copy.deepcopy(changes))
    return data


def make_spec(providers: dict[str, str] | tuple[str, ...] | None = None, **changes: Any) -> TwinSpec:
    return TwinSpec.model_validate(spec_dict(providers, **changes))


def all_placements() -> list[tuple[str, ...]]:
    """Every provider choice for the seven slots, L4 and L5 never on gcp (3^5 * 2 * 2 = 972)."""
    return [
        combo
        for combo in itertools.product(PROVIDERS, repeat=7)
        if combo[5] != "gcp" and combo[6] != "gcp"
    ]


def hosted(plan: Plan, provider: str, layer: str, function: str) -> bool:
    """Is `function` deployed on `provider` in `layer`? (Azure: inside the layer's Function App.)"""
    if provider == "azure":
        rid = f"azure/{layer}/function-app"
        return plan.has(rid) and any(f.name == function for f in app_functions(plan.resource(rid)))
    return plan.has(f"{provider}/{layer}/{function}")


def app_functions(resource: Resource) -> tuple[HostedFunction, ...]:
    """The functions a Function App hosts (none for any other kind)."""
    return resource.config.functions if isinstance(resource.config, FunctionAppConfig) else ()


def static_settings(resource: Resource) -> dict[str, str]:
    """A function host's static settings: app settings, or a function's environment."""
    config = resource.config
    if isinstance(config, FunctionAppConfig):
        return dict(config.app_settings)
    if isinstance(config, LambdaConfig | CloudFunctionConfig):
        return dict(config.environment)
    return {}


def host_id(provider: str, layer: str, function: str) -> str:
    return f"azure/{layer}/function-app" if provider == "azure" else f"{provider}/{layer}/{function}"


def settings(plan: Plan, consumer: str) -> dict[str, str]:
    """setting -> output for the wires into `consumer`."""
    return {w.setting: w.output for w in plan.wires if w.consumer == consumer}
