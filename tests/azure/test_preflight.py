"""Pre-flight region and hosting-plan checks on whole plans (pure: no cloud call)."""

from __future__ import annotations

import pytest
from providers_kit import example_spec, plan_for

from activities.providers.azure.preflight import assert_deployable, check_plan
from shared.engine.errors import PermanentError


def test_examples_pass() -> None:
    for name in ("azure-only", "aws-to-azure", "mixed"):
        assert check_plan(plan_for(example_spec(name))) == []


def test_y1_in_italynorth_is_refused_with_advice() -> None:
    plan = plan_for(example_spec("azure-only", clouds={"azure": {"region": "italynorth", "functions_plan": "Y1",
                                                                 "region_digital_twin": "westeurope"}}))
    problems = check_plan(plan)
    assert problems and all(p.resource_id.endswith("/app-plan") for p in problems)
    assert "Y1" in problems[0].message and "FC1" in problems[0].message
    with pytest.raises(PermanentError, match="italynorth"):
        assert_deployable(plan)


def test_digital_twins_region_is_checked() -> None:
    plan = plan_for(example_spec("azure-only", clouds={"azure": {"region": "westeurope",
                                                                 "region_digital_twin": "brazilsouth"}}))
    [problem] = check_plan(plan)
    assert problem.resource_id == "azure/L4/digital-twins" and "region_digital_twin" in problem.message


def test_flex_region_is_checked_and_y1_elsewhere_passes() -> None:
    flex = plan_for(example_spec("azure-only", clouds={"azure": {"region": "mexicocentral",
                                                                 "region_digital_twin": "westeurope"}}))
    assert {p.resource_id for p in check_plan(flex)} == {r.id for r in flex.resources if r.kind == "app-service-plan"}
    y1 = plan_for(example_spec("azure-only", clouds={"azure": {"region": "westeurope", "functions_plan": "Y1"}}))
    assert check_plan(y1) == []
