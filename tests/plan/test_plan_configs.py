"""Typed resource configurations: every planned resource carries its kind's model, and every
kind's configuration survives the Durable boundary (JSON) unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from plan_specs import all_placements, spec_dict

from shared.engine.plan import plan_to_engine
from shared.engine.types import ResourceCall
from shared.loaders import spec_from_dict
from shared.plan import Plan, build_plan
from shared.resources import CONFIG_MODELS, ConfigError, config_model, parse_config
from shared.resources.aws import LambdaConfig
from shared.resources.azure import RoleAssignmentConfig
from shared.spec import TwinSpec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p.name for p in (ROOT / "examples").iterdir() if (p / "twin.json").is_file())
# Every option on: workflows, feedback and users' event actions are planned too.
EVERYTHING = {
    "events": [{"condition": "room-1.temperature-sensor-1.temperature > DOUBLE(30)",
                "action": {"type": "lambda", "functionName": "cool-down", "functionNameB": "notify",
                           "pathToCode": "actions/cool", "autoDeploy": True}}],
    "options": {"use_event_checking": True, "trigger_notification_workflow": True, "return_feedback_to_device": True},
}


def _plans() -> list[tuple[str, Plan]]:
    out = [(f"example:{name}", build_plan(spec_from_dict(json.loads((ROOT / "examples" / name / "twin.json").read_text()))))
           for name in EXAMPLES]
    for combo in all_placements():
        out.append((",".join(combo), build_plan(TwinSpec.model_validate(spec_dict(combo, **EVERYTHING)))))
    # And with nothing optional: the event checker's absence changes what L2 plans.
    for combo in all_placements()[::7]:
        out.append((f"bare:{','.join(combo)}",
                    build_plan(TwinSpec.model_validate(spec_dict(combo, options={"use_event_checking": False})))))
    # The control plane's own plan (`install`) plans the kinds only it has.
    from shared.plan.control_plane import AwsSide, InstallOptions, build_control_plane_plan

    install = InstallOptions(name="twin-control-plane", location="westeurope",
                             subscription_id="00000000-0000-0000-0000-000000000000", package_sha256="a" * 64,
                             package_path="/tmp/control-plane.zip", functions=("twin_events",),
                             durable_backend="durable-task-scheduler",
                             aws=AwsSide(account="123456789012", region="us-east-1", tenant_id="tenant"))
    out.append(("control-plane", build_control_plane_plan(install)))
    return out


PLANS = _plans()


def test_every_planned_resource_carries_its_kinds_model() -> None:
    wrong = [f"{name}: {r.id} is {type(r.config).__name__}, not {config_model(r.provider, r.kind).__name__}"
             for name, plan in PLANS for r in plan.resources if type(r.config) is not config_model(r.provider, r.kind)]
    assert not wrong, "\n".join(wrong[:20])


def test_every_kind_with_a_model_is_planned_somewhere() -> None:
    planned = {(r.provider, r.kind) for _, plan in PLANS for r in plan.resources}
    assert planned == set(CONFIG_MODELS)


def test_every_config_round_trips_through_the_durable_boundary() -> None:
    """The engine's plan and each activity payload are JSON: parsing the config back on the
    provider's side gives exactly the planner's model."""
    failures: list[str] = []
    for name, plan in PLANS:
        engine = json.loads(json.dumps(plan_to_engine(plan)))
        for planned, sent in zip(plan.resources, engine["resources"], strict=True):
            call = ResourceCall.from_dict(json.loads(json.dumps(
                {"twin": plan.twin, "resource": sent, "settings": {}, "current": {}, "pending": None})))
            model = config_model(call.resource.provider, call.resource.kind)
            parsed = parse_config(call.resource.id, call.resource.config, model)
            if parsed != planned.config or sent["config"] != planned.to_json(include_config=True)["config"]:
                failures.append(f"{name}: {planned.id}")
    assert not failures, "\n".join(failures[:20])


@pytest.mark.parametrize(("provider", "kind"), sorted(CONFIG_MODELS))
def test_each_kind_refuses_unknown_fields_with_their_path(provider: str, kind: str) -> None:
    plan_config = next(r.config for _, plan in PLANS for r in plan.resources if (r.provider, r.kind) == (provider, kind))
    data = {**plan_config.to_json(), "nmae": "typo"}
    with pytest.raises(ConfigError) as caught:
        parse_config(f"{provider}/x/{kind}", data, config_model(provider, kind))
    assert ("config.nmae", "Extra inputs are not permitted") in caught.value.problems


def test_a_wrong_value_names_its_path_and_never_echoes_the_value() -> None:
    plan = dict(PLANS)["example:aws-to-azure"]
    role = next(r for r in plan.resources if isinstance(r.config, RoleAssignmentConfig))
    data = role.config.to_json()
    data["scope"] = {"kind": "s3cr3t-kind", "name": "s3cr3t-value"}
    with pytest.raises(ConfigError) as caught:
        parse_config(role.id, data, RoleAssignmentConfig)
    assert [path for path, _ in caught.value.problems] == ["config.scope.kind"]
    assert "s3cr3t" not in str(caught.value) and role.id in str(caught.value)


def test_configs_are_frozen() -> None:
    plan = dict(PLANS)["example:aws-only"]
    config = next(r.config for r in plan.resources if isinstance(r.config, LambdaConfig))
    with pytest.raises(ValueError, match="frozen"):
        config.runtime = "python2.7"  # type: ignore[misc]


def test_each_provider_parses_its_kinds_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kind table and the providers agree. The Azure Logic App and the GCP workflow are planned
    but have no provider yet (the plan refuses the GCP workflow)."""
    from activities.registry import (
        DEFAULT_PROVIDER_MODULES,
        PROVIDER_MODULES_SETTING,
        has_provider,
        provider_for,
    )

    monkeypatch.setenv(PROVIDER_MODULES_SETTING, DEFAULT_PROVIDER_MODULES)
    without = sorted(key for key in CONFIG_MODELS if not has_provider(*key))
    assert without == [("azure", "logic-app"), ("gcp", "workflow")]
    for key, model in CONFIG_MODELS.items():
        if key not in without:
            assert getattr(provider_for(*key), "model", None) is model, key


def test_a_provider_refuses_a_config_that_does_not_fit_before_any_cloud_call(monkeypatch: pytest.MonkeyPatch) -> None:
    from activities.registry import DEFAULT_PROVIDER_MODULES, PROVIDER_MODULES_SETTING, provider_for
    from shared.engine.errors import PermanentError
    from shared.engine.types import Resource

    monkeypatch.setenv(PROVIDER_MODULES_SETTING, DEFAULT_PROVIDER_MODULES)
    plan = dict(PLANS)["example:aws-only"]
    table = next(r for r in plan.resources if r.kind == "dynamodb-table")
    config = {**table.config.to_json(), "billing_mode": "FREE", "ttl_attribute": "ttl"}
    call = ResourceCall(plan.twin, Resource(table.id, table.layer, table.provider, table.kind, config=config))
    with pytest.raises(PermanentError) as caught:
        provider_for("aws", "dynamodb-table").ensure(call)
    assert "config.billing_mode" in str(caught.value) and "config.ttl_attribute" in str(caught.value)
