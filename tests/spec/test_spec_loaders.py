"""Loaders: the reference template folder, the examples, JSON files, and the errors of each."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from spec_helpers import EXAMPLE_NAMES, EXAMPLES, TEMPLATE, example_dict

from shared.loaders import json_path, load_spec, spec_from_dict
from shared.spec import TwinSpec
from shared.validation import Problem, SpecError, validate_spec


def _problems(call: object, *args: object) -> list[Problem]:
    assert callable(call)
    with pytest.raises(SpecError) as info:
        call(*args)
    assert info.value.problems
    return info.value.problems


def _has(problems: list[Problem], path: str, text: str) -> bool:
    return any(p.path == path and text in p.message for p in problems)


# --- the reference template ------------------------------------------------------------------


def test_template_folder_loads_with_google_normalised() -> None:
    spec = load_spec(TEMPLATE)
    assert spec.twin.name == "digital-twin-xx"
    assert (spec.twin.hot_storage_days, spec.twin.cold_storage_days, spec.twin.mode) == (30, 90, "DEBUG")
    assert spec.providers.layer_1_provider == "gcp"
    assert spec.providers.layer_3_cold_provider == "gcp"
    assert spec.providers.layer_4_provider == "azure"
    assert spec.providers.layer_5_provider == "aws"
    assert [d.id for d in spec.devices] == ["temperature-sensor-1", "temperature-sensor-2", "pressure-sensor-1"]
    assert spec.hierarchy.azure is not None and len(spec.hierarchy.azure.twins) == 6
    assert spec.hierarchy.aws is not None and [n.id for n in spec.hierarchy.aws] == ["room-1", "room-2"]
    assert len(spec.events) == 2
    # config_optimization.json flags under result.inputParamsUsed (the original read the top level).
    assert spec.options.trigger_notification_workflow is True
    assert spec.options.return_feedback_to_device is True
    assert spec.options.integrate_error_handling is False
    assert validate_spec(spec) == []


def test_template_credentials_and_inter_cloud_files_are_not_read(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    shutil.copytree(TEMPLATE, folder)
    # Unreadable JSON in both: loading still works because neither file is opened.
    (folder / "config_credentials.json").write_text("{ this is not json")
    (folder / "config_inter_cloud.json").write_text("{ nor is this")
    spec = load_spec(folder)
    assert spec.clouds.azure.region == "westeurope"  # defaults from shared/spec.py, not the credentials example


def _copy_template(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    shutil.copytree(TEMPLATE, folder)
    return folder


def test_legacy_folder_problems_name_the_file(tmp_path: Path) -> None:
    folder = _copy_template(tmp_path)
    providers = json.loads((folder / "config_providers.json").read_text())
    providers["layer_4_provider"] = "google"
    (folder / "config_providers.json").write_text(json.dumps(providers))
    config = json.loads((folder / "config.json").read_text())
    config["hot_storage_size_in_days"] = "a month"
    config["digital_twin_nmae"] = config.pop("digital_twin_name")
    (folder / "config.json").write_text(json.dumps(config))
    devices = json.loads((folder / "config_iot_devices.json").read_text())
    devices[2]["id"] = devices[0]["id"]
    (folder / "config_iot_devices.json").write_text(json.dumps(devices))
    problems = _problems(load_spec, folder)
    assert _has(problems, "config.json:hot_storage_size_in_days", "must be a whole number")
    assert _has(problems, "config.json:digital_twin_nmae", "unknown field")
    assert _has(problems, "config.json:digital_twin_name", "is missing")
    # Structural problems stop before semantic checks; fix them and the semantic ones show.
    config["digital_twin_name"] = config.pop("digital_twin_nmae")
    config["hot_storage_size_in_days"] = 30
    (folder / "config.json").write_text(json.dumps(config))
    problems = _problems(load_spec, folder)
    assert _has(problems, "config_providers.json:layer_4_provider", "cannot run on gcp")
    assert _has(problems, "config_iot_devices.json:[2].id", "already used by devices[0]")


def test_legacy_folder_semantic_paths_in_hierarchy_and_events(tmp_path: Path) -> None:
    folder = _copy_template(tmp_path)
    hierarchy = json.loads((folder / "twin_hierarchy" / "azure_hierarchy.json").read_text())
    hierarchy["twins"][0]["$metadata"]["$model"] = "dtmi:twin2clouds:Barn;1"
    (folder / "twin_hierarchy" / "azure_hierarchy.json").write_text(json.dumps(hierarchy))
    events = json.loads((folder / "config_events.json").read_text())
    events[1]["condition"] = "x.y.z => DOUBLE(1)"
    (folder / "config_events.json").write_text(json.dumps(events))
    (folder / "config_optimization.json").write_text(json.dumps({"result": {"inputParamsUsed": {"useEventChecking": "often"}}}))
    problems = _problems(load_spec, folder)
    assert _has(problems, "config_optimization.json:result.inputParamsUsed.useEventChecking", "true or false")
    (folder / "config_optimization.json").unlink()
    problems = _problems(load_spec, folder)
    assert _has(problems, "twin_hierarchy/azure_hierarchy.json:twins[0].$metadata.$model", "not among")
    assert _has(problems, "config_events.json:[1].condition", "unknown operator")


def test_legacy_folder_bad_json_and_missing_files(tmp_path: Path) -> None:
    folder = _copy_template(tmp_path)
    (folder / "config_providers.json").write_text('{\n  "layer_1_provider": "aws",\n  oops\n}')
    (folder / "config_iot_devices.json").unlink()
    (folder / "twin_hierarchy" / "azure_hierarchy.json").unlink()
    problems = _problems(load_spec, folder)
    assert _has(problems, "config_providers.json", "line 3, column 3")
    assert _has(problems, "config_iot_devices.json", "is missing")
    # The unreadable/missing files are reported once, not again as missing sections.
    assert [p.path for p in problems].count("config_providers.json") == 1
    assert not any(p.message.startswith("required section") for p in problems)


def test_legacy_folder_without_hierarchy_for_l4(tmp_path: Path) -> None:
    folder = _copy_template(tmp_path)
    (folder / "twin_hierarchy" / "azure_hierarchy.json").unlink()
    problems = _problems(load_spec, folder)
    assert _has(problems, "twin_hierarchy/azure_hierarchy.json", "layer 4 runs on azure")


def test_legacy_config_not_an_object(tmp_path: Path) -> None:
    folder = _copy_template(tmp_path)
    (folder / "config.json").write_text("[]")
    (folder / "config_optimization.json").write_text('{"result": 3}')
    problems = _problems(load_spec, folder)
    assert _has(problems, "config.json", "must be a JSON object, not a list")
    assert _has(problems, "config_optimization.json", "result.inputParamsUsed")


# --- examples ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_example_loads_and_validates_clean(name: str) -> None:
    from_file = load_spec(EXAMPLES / name / "twin.json")
    from_folder = load_spec(EXAMPLES / name)  # a folder with a twin.json loads that file
    from_dict = spec_from_dict(example_dict(name))
    assert from_file == from_folder == from_dict
    assert validate_spec(from_file) == []
    assert (EXAMPLES / name / "README.md").is_file()


def test_examples_cover_the_issue() -> None:
    specs = {name: load_spec(EXAMPLES / name / "twin.json") for name in EXAMPLE_NAMES}
    assert set(specs["azure-only"].providers.model_dump().values()) == {"azure"}
    assert set(specs["aws-only"].providers.model_dump().values()) == {"aws"}
    p = specs["aws-to-azure"].providers
    assert {p.layer_1_provider, p.layer_2_provider, p.layer_3_hot_provider, p.layer_3_cold_provider, p.layer_3_archive_provider} == {"aws"}
    assert (p.layer_4_provider, p.layer_5_provider) == ("azure", "azure")
    m = specs["mixed"]
    tiers = {m.providers.layer_3_hot_provider, m.providers.layer_3_cold_provider, m.providers.layer_3_archive_provider}
    assert len(tiers) == 3
    template_devices = json.loads((TEMPLATE / "config_iot_devices.json").read_text())
    assert [d.model_dump(by_alias=True, exclude_defaults=True) for d in m.devices] == [
        TwinSpec.model_validate({**example_dict("mixed"), "devices": template_devices}).devices[i].model_dump(by_alias=True, exclude_defaults=True)
        for i in range(len(template_devices))
    ]


# --- JSON files -------------------------------------------------------------------------------


def test_bad_json_file_reports_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "twin.json"
    path.write_text('{\n  "twin": {"name": "x",}\n}\n')
    (problem,) = _problems(load_spec, path)
    assert problem.path == ""
    assert "line 2, column" in problem.message and "twin.json" in problem.message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b'{"twin": NaN}', "NaN is not valid JSON"),
        (b"[1, 2, 3]", "must be a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "nests too deeply"),
    ],
)
def test_unusable_json_files(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "twin.json"
    path.write_bytes(content)
    problems = _problems(load_spec, path)
    assert any(expected in p.message for p in problems), problems


def test_missing_path_and_empty_folder(tmp_path: Path) -> None:
    (problem,) = _problems(load_spec, tmp_path / "nope.json")
    assert problem.path == "" and "no spec at" in problem.message
    problems = _problems(load_spec, tmp_path)
    assert _has(problems, "config.json", "is missing")
    (problem,) = _problems(load_spec, "bad\x00path")
    assert problem.path == ""


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "twin.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(example_dict("azure-only")).encode())
    assert load_spec(path).twin.name == "greenhouse-az"


# --- Problem / SpecError / paths --------------------------------------------------------------


def test_problem_and_spec_error_render() -> None:
    problem = Problem("devices[2].id", "device id 'x' is already used by devices[0]")
    assert problem.to_json() == {"path": "devices[2].id", "message": "device id 'x' is already used by devices[0]"}
    assert str(problem) == "devices[2].id: device id 'x' is already used by devices[0]"
    assert str(Problem("", "the spec must be a JSON object")) == "the spec must be a JSON object"
    error = SpecError([problem, Problem("", "root")])
    assert "devices[2].id: device id" in str(error) and "2 problems" in str(error)
    assert error.to_json()[0]["path"] == "devices[2].id"
    assert SpecError([]).problems  # never empty


def test_json_path() -> None:
    assert json_path(("devices", 2, "id")) == "devices[2].id"
    assert json_path(("hierarchy", "azure", "twins", 3, "$metadata", "$model")) == "hierarchy.azure.twins[3].$metadata.$model"
    assert json_path(("models", 0, "my key")) == 'models[0]["my key"]'
    assert json_path(()) == ""


def test_http_body_with_string_provider_alias_and_case() -> None:
    body = example_dict("aws-to-azure")
    body["providers"]["layer_1_provider"] = " AWS "
    body["providers"]["layer_3_cold_provider"] = "Google"
    body["twin"]["mode"] = "debug"
    spec = spec_from_dict(body)
    assert spec.providers.layer_1_provider == "aws"
    assert spec.providers.layer_3_cold_provider == "gcp"
    assert spec.twin.mode == "DEBUG"


def test_non_string_keys_are_reported() -> None:
    body: dict[Any, Any] = dict(example_dict("azure-only"))
    body[3] = "x"
    problems = _problems(spec_from_dict, body)
    assert _has(problems, "", "keys must be strings")


def test_deep_twinmaker_tree_is_a_problem_not_a_crash() -> None:
    doc = example_dict("aws-only")
    node: dict[str, object] = {"type": "entity", "id": "e0"}
    root = node
    for i in range(1, 900):
        child: dict[str, object] = {"type": "entity", "id": f"e{i}"}
        node["children"] = [child]
        node = child
    doc["hierarchy"]["aws"] = [root]
    problems = _problems(spec_from_dict, doc)
    assert any("nests too deeply" in p.message for p in problems)


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_dump_and_reload_round_trips(name: str) -> None:
    spec = load_spec(EXAMPLES / name)
    assert spec_from_dict(spec.model_dump(by_alias=True)) == spec
    assert spec_from_dict(json.loads(spec.model_dump_json(by_alias=True))) == spec


def test_template_round_trips() -> None:
    spec = load_spec(TEMPLATE)
    assert spec_from_dict(spec.model_dump(by_alias=True)) == spec
