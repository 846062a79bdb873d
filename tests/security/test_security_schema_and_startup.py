"""`docs/spec.schema.json` accepts nothing the validator rejects for a single field or a twin
name (issue 12 item 8), and the app's start-up refusal without a vault on Azure."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control_plane.startup import StartupError, check_vault_setting
from local_host import AppLoadError, load_app
from shared.loaders import spec_problems
from shared.spec import TWIN_NAME_LIMITS, TWIN_NAME_MAX_LENGTH, render_json_schema
from shared.validation import twin_name_rule_problems

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "spec.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
EXAMPLES = {name: json.loads((ROOT / "examples" / name / "twin.json").read_text())
            for name in ("azure-only", "aws-only", "mixed", "aws-to-azure")}


def _with(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    node: Any = doc
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[int(keys[-1]) if isinstance(node, list) else keys[-1]] = value
    return doc


SINGLE_FIELD_MUTATIONS = [
    ("twin.name", ""), ("twin.name", "-greenhouse"), ("twin.name", "green_house"), ("twin.name", "green.house"),
    ("twin.name", "x" * 43), ("twin.name", "gr\u00fcn"), ("providers.layer_4_provider", "gcp"),
    ("providers.layer_5_provider", "google"), ("devices.0.id", ""), ("devices.0.id", "bad id"),
    ("devices.0.id", "-x"), ("devices.0.properties.0.name", " "), ("devices.0.properties", []), ("devices", []),
    ("twin.hot_storage_days", 0),
]


def test_the_committed_schema_is_current() -> None:
    assert (ROOT / "docs" / "spec.schema.json").read_text() == render_json_schema()


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_the_examples_are_valid_for_both(example: str) -> None:
    assert list(VALIDATOR.iter_errors(EXAMPLES[example])) == []
    assert spec_problems(EXAMPLES[example])[1] == []


@pytest.mark.parametrize("example", sorted(EXAMPLES))
@pytest.mark.parametrize(("path", "value"), SINGLE_FIELD_MUTATIONS)
def test_what_the_validator_rejects_the_schema_rejects(example: str, path: str, value: Any) -> None:
    doc = _with(EXAMPLES[example], path, value)
    assert spec_problems(doc)[1], "the validator accepts it: not a case for this test"
    assert list(VALIDATOR.iter_errors(doc)), f"the schema accepts {path}={value!r} in {example}"


def test_layer_4_needs_its_hierarchy_in_the_schema_too() -> None:
    doc = copy.deepcopy(EXAMPLES["azure-only"])
    del doc["hierarchy"]
    assert spec_problems(doc)[1] and list(VALIDATOR.iter_errors(doc))


@settings(max_examples=300, deadline=None)
@given(name=st.from_regex(r"[A-Za-z0-9_.-]{0,50}", fullmatch=True), example=st.sampled_from(sorted(EXAMPLES)))
def test_twin_names_the_schema_accepts_pass_the_validator(name: str, example: str) -> None:
    doc = _with(EXAMPLES[example], "twin.name", name)
    if not list(VALIDATOR.iter_errors(doc)):
        assert [p for p in spec_problems(doc)[1] if p.path == "twin.name"] == [], name


@pytest.mark.parametrize("cloud", sorted(TWIN_NAME_LIMITS))
def test_the_per_cloud_twin_name_limits_are_the_validators(cloud: str) -> None:
    max_length, pattern = TWIN_NAME_LIMITS[cloud]
    assert not twin_name_rule_problems("a" * max_length, [cloud])
    assert twin_name_rule_problems("a" * (max_length + 1), [cloud])
    assert max_length <= TWIN_NAME_MAX_LENGTH
    assert bool(twin_name_rule_problems("9a", [cloud])) == pattern.startswith("^[A-Za-z][")


def test_no_vault_warns_and_on_azure_refuses_unless_opted_out(caplog: pytest.LogCaptureFixture) -> None:
    assert check_vault_setting({"TWIN_KEY_VAULT_URL": "https://v.vault.azure.net/"}) is None
    assert "is empty" in (check_vault_setting({"TWIN_KEY_VAULT_URL": " "}) or "")
    assert any("TWIN_KEY_VAULT_URL" in r.getMessage() for r in caplog.records)
    with pytest.raises(StartupError, match="TWIN_ALLOW_INLINE_SECRETS"):
        check_vault_setting({"WEBSITE_INSTANCE_ID": "abc", "TWIN_KEY_VAULT_URL": ""})
    assert check_vault_setting({"WEBSITE_INSTANCE_ID": "abc", "TWIN_ALLOW_INLINE_SECRETS": "true"})


def test_the_function_app_does_not_load_on_azure_without_a_vault(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBSITE_INSTANCE_ID", "instance-1")
    monkeypatch.delenv("TWIN_KEY_VAULT_URL", raising=False)
    monkeypatch.delenv("TWIN_ALLOW_INLINE_SECRETS", raising=False)
    with pytest.raises(AppLoadError, match="TWIN_KEY_VAULT_URL is not set"):
        load_app(ROOT)
    monkeypatch.setenv("TWIN_ALLOW_INLINE_SECRETS", "true")
    assert "deployments_start" in {r.function_name for r in load_app(ROOT).http_routes}
