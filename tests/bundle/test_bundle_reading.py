"""Reading a bundle: entries checked (paths, links, counts, sizes), Python checked with `ast` (file
and line), the spec found (twin.json or the original layout), code folders resolved per cloud,
and the canonical form content-addressed."""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import zipfile
from pathlib import Path

import pytest
from bundle_helpers import EXAMPLE, WITHOUT_GCP, example_copy, folder_files, make_zip, twin_json_bundle

from shared.bundle import (
    MAX_BUNDLE_BYTES,
    MAX_ENTRIES,
    MAX_UNCOMPRESSED_BYTES,
    BundleError,
    bundle_from_files,
    folder_digest,
    load_bundle_folder,
    open_bundle,
    read_zip,
    zip_folder,
)
from shared.contracts import Output, Setting, keyed_output, keyed_setting
from shared.plan import build_plan
from shared.resources.aws import LambdaConfig
from shared.resources.azure import FunctionAppConfig
from shared.resources.gcp import CloudFunctionConfig
from shared.validation import SpecError

ROOT = Path(__file__).resolve().parents[2]
AWS_ONLY = json.loads((ROOT / "examples" / "aws-only" / "twin.json").read_text())
PROCESS = "def process(event):\n    event['seen'] = True\n    return event\n"


def _problems(exc: pytest.ExceptionInfo[SpecError]) -> dict[str, str]:
    return {p.path: p.message for p in exc.value.problems}


# --- entries ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "fragment"), [
    ("../escape.py", "climbs out of the bundle"),
    ("code/../../escape.py", "climbs out of the bundle"),
    ("/etc/passwd", "absolute path"),
    ("C:/windows/x.py", "absolute path"),
    ("code\\x.py", "backslash"),
    ("code/./x.py", "'.' part"),
    ("code//x.py", "empty or '.' part"),
    ("code/x\x01.py", "control characters"),
    ("a/" * 20 + "x.py", "folders deep"),
    ("x" * 300, "characters"),
])
def test_entry_paths_that_could_escape_or_mislead_are_refused_by_name(name: str, fragment: str) -> None:
    with pytest.raises(BundleError) as exc:
        read_zip(make_zip({"twin.json": "{}", name: "x = 1\n"}))
    assert not exc.value.too_large
    [(path, message)] = _problems(exc).items()
    assert fragment in message
    assert len(path) <= 63 and path.isprintable()


def test_links_are_refused_and_named() -> None:
    with pytest.raises(BundleError) as exc:
        read_zip(make_zip({"twin.json": "{}"}, links={"lambda_functions/processors/s1/process.py": "/etc/passwd"}))
    assert _problems(exc) == {"lambda_functions/processors/s1/process.py":
                              "the entry is a symbolic link; links are not accepted"}


def test_duplicate_paths_and_file_folder_clashes_are_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, pytest.warns(UserWarning, match="Duplicate name"):
        archive.writestr("twin.json", "{}")
        archive.writestr("twin.json", "{}")
    with pytest.raises(BundleError, match="holds this path twice"):
        read_zip(buffer.getvalue())
    with pytest.raises(BundleError, match="both a file and a folder"):
        read_zip(make_zip({"code": "x", "code/a.py": "x = 1\n"}))


def test_ten_thousand_entries_are_refused_before_reading_any() -> None:
    files = {f"f/{i}.txt": b"" for i in range(10_000)}
    with pytest.raises(BundleError) as exc:
        read_zip(make_zip(files))
    assert exc.value.too_large
    assert f"10,000 entries; at most {MAX_ENTRIES:,}" in exc.value.problems[0].message


def test_a_zip_bomb_stops_at_the_uncompressed_limit() -> None:
    zeros = bytes(MAX_UNCOMPRESSED_BYTES // 2 + 1)
    bomb = make_zip({"twin.json": "{}", "a.bin": zeros, "b.bin": zeros})
    assert len(bomb) < 200_000  # a few hundred KB that would expand beyond 64 MiB
    with pytest.raises(BundleError) as exc:
        read_zip(bomb)
    assert exc.value.too_large and "uncompressed" in exc.value.problems[0].message


def test_sizes_a_header_understates_are_not_believed() -> None:
    """A central directory claiming 1,000 bytes for 1 MiB of data: reading stops at what was
    declared and the entry is refused (its checksum does not match), never expanded."""
    data = make_zip({"twin.json": "{}", "big.bin": bytes(1 << 20)})
    at = data.rfind(b"PK\x01\x02")  # the last central directory header: big.bin
    lying = data[:at + 24] + struct.pack("<I", 1000) + data[at + 28:]
    with pytest.raises(BundleError, match="cannot be read"):
        read_zip(lying)


def test_a_bundle_over_the_byte_limit_and_garbage_are_refused() -> None:
    with pytest.raises(BundleError) as exc:
        read_zip(b"PK" + bytes(MAX_BUNDLE_BYTES))
    assert exc.value.too_large
    with pytest.raises(BundleError, match="not a readable zip archive"):
        read_zip(b"not a zip at all")


def test_encrypted_entries_are_refused() -> None:
    data = bytearray(make_zip({"twin.json": "{}"}))
    at = data.rfind(b"PK\x01\x02")
    data[at + 8] |= 0x1  # general purpose flag bit 0: encrypted
    with pytest.raises(BundleError, match="encrypted"):
        read_zip(bytes(data))


# --- spec and Python -----------------------------------------------------------------------------


def test_python_syntax_errors_name_file_and_line_and_nothing_is_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    code = {
        "lambda_functions/processors/s1/process.py": f"open({str(marker)!r}, 'w')\ndef process(event:\n",
        "lambda_functions/processors/s2/process.py": "def process(e):\n\treturn e\n        return e\n",
        "lambda_functions/processors/s3/process.py": b"x = '\xff'\n",
    }
    with pytest.raises(BundleError) as exc:
        open_bundle(twin_json_bundle(AWS_ONLY, code))
    found = _problems(exc)
    assert found["lambda_functions/processors/s1/process.py"].startswith("line 2, column 12: ")
    assert "Python syntax error" in found["lambda_functions/processors/s1/process.py"]
    assert found["lambda_functions/processors/s2/process.py"].startswith("line 3")
    assert found["lambda_functions/processors/s3/process.py"].startswith("not UTF-8 text")
    assert not marker.exists()  # checked with ast only: the code never ran


def test_the_spec_is_twin_json_or_the_original_layout_even_inside_a_wrapping_folder() -> None:
    twin = open_bundle(twin_json_bundle(AWS_ONLY, {}))
    assert twin.spec.twin.name == AWS_ONLY["twin"]["name"]
    files = folder_files(EXAMPLE)
    wrapped = make_zip({f"my-project/{k}": v for k, v in files.items()}, dirs=("my-project",))
    bundle = open_bundle(wrapped)
    assert bundle.spec.twin.name == "digital-twin-xx"
    assert bundle.code.has_folder("azure_functions/processors/temperature-sensor-1")
    with pytest.raises(SpecError, match="neither twin.json nor the original layout"):
        open_bundle(make_zip({"README.md": "hello"}))
    with pytest.raises(SpecError) as exc:
        open_bundle(make_zip({"twin.json": '{"twin": {"name": "x"}}'}))
    assert "twin.json:providers" in _problems(exc)
    with pytest.raises(SpecError) as exc:
        open_bundle(make_zip({**files, "config_providers.json": '{"layer_1_provider": "mars"}'}))
    assert any(path.startswith("config_providers.json") for path in _problems(exc))


def test_the_stored_form_is_canonical_whatever_tool_zipped_it(tmp_path: Path) -> None:
    files = folder_files(EXAMPLE)
    a = open_bundle(make_zip(files, date=(2020, 1, 1, 0, 0, 0)))
    b = open_bundle(make_zip(dict(reversed(list(files.items()))), dirs=("azure_functions",), date=(2025, 7, 7, 7, 7, 7)))
    assert a.sha256 == b.sha256 == hashlib.sha256(a.data).hexdigest()
    assert a.sha256 == load_bundle_folder(EXAMPLE).sha256
    changed = open_bundle(make_zip({**files, "azure_functions/processors/temperature-sensor-1/calibration.py":
                                    files["azure_functions/processors/temperature-sensor-1/calibration.py"] + b"# v2\n"}))
    assert changed.sha256 != a.sha256


def test_deploy_folder_zips_files_only_and_refuses_links(tmp_path: Path) -> None:
    project = example_copy(tmp_path)
    (project / "azure_functions" / "processors" / "temperature-sensor-1" / "__pycache__").mkdir()
    (project / "azure_functions" / "processors" / "temperature-sensor-1" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    names = zipfile.ZipFile(io.BytesIO(zip_folder(project))).namelist()
    assert "config.json" in names and not any("__pycache__" in n for n in names)
    os.symlink("/etc/hostname", project / "azure_functions" / "processors" / "pressure-sensor-1" / "notes.txt")
    with pytest.raises(BundleError) as exc:
        zip_folder(project)
    assert "azure_functions/processors/pressure-sensor-1/notes.txt" in _problems(exc)


# --- code folders in the plan --------------------------------------------------------------------


def test_processors_and_actions_become_references_in_the_plan(tmp_path: Path) -> None:
    bundle = load_bundle_folder(example_copy(tmp_path))
    plan = build_plan(bundle.spec, bundle.code)
    assert plan.deployable() == []
    user_app = plan.resource("azure/L2/user-function-app")
    assert isinstance(user_app.config, FunctionAppConfig)
    refs = {(r.kind, r.name): r for r in user_app.config.user_code}
    assert set(refs) == {("processor", "temperature-sensor-1"), ("processor", "temperature-sensor-2"),
                         ("processor", "pressure-sensor-1"), ("event-action", "high-temperature-callback"),
                         ("event-action", "high-temperature-callback-2")}
    t1 = refs[("processor", "temperature-sensor-1")]
    assert (t1.path, t1.module, t1.function, t1.bundle) == (
        "azure_functions/processors/temperature-sensor-1", "process", "process", bundle.sha256)
    assert t1.digest == folder_digest(bundle.code.files, t1.path)
    # pathToCode is taken as given, and the original Lambda form runs on Azure too.
    cb2 = refs[("event-action", "high-temperature-callback-2")]
    assert (cb2.path, cb2.module, cb2.function) == (
        "lambda_functions/event_actions/high-temperature-callback-2", "lambda_function", "lambda_handler")
    l2 = plan.resource("azure/L2/function-app")
    assert isinstance(l2.config, FunctionAppConfig) and not l2.config.user_code
    assert json.loads(l2.config.app_settings["USER_PROCESSOR_DEVICES"]) == sorted(
        ["temperature-sensor-1", "temperature-sensor-2", "pressure-sensor-1"])
    # Only references travel: no file content in the plan's JSON form.
    text = json.dumps(plan.to_json(include_config=True))
    assert "OFFSET_C" not in text and "def process" not in text


def test_on_aws_each_device_has_its_processor_lambda_and_each_action_its_own(tmp_path: Path) -> None:
    providers = {**WITHOUT_GCP, "layer_2_provider": "aws"}
    bundle = load_bundle_folder(example_copy(tmp_path, providers))
    plan = build_plan(bundle.spec, bundle.code)
    assert plan.deployable() == []
    for device in ("temperature-sensor-1", "temperature-sensor-2", "pressure-sensor-1"):
        config = plan.resource(f"aws/L2/processor-{device}").config
        assert isinstance(config, LambdaConfig)
        [ref] = config.user_code
        assert ref.path == f"lambda_functions/processors/{device}" and ref.name == device
    action = plan.resource("aws/L2/event-action-high-temperature-callback").config
    assert isinstance(action, LambdaConfig) and action.package == "event-action"
    assert action.user_code[0].path == "lambda_functions/event_actions/high-temperature-callback"


def test_gcp_configurations_carry_the_code_for_the_gcp_provider(tmp_path: Path) -> None:
    import shutil

    project = example_copy(tmp_path, {**WITHOUT_GCP, "layer_2_provider": "gcp"})
    for device in ("pressure-sensor-1", "temperature-sensor-2"):  # these two get the default processor
        shutil.rmtree(project / "cloud_functions" / "processors" / device)
    bundle = load_bundle_folder(project)
    plan = build_plan(bundle.spec, bundle.code)
    # One function per device: only temperature-sensor-1's carries code.
    processor = plan.resource("gcp/L2/processor-temperature-sensor-1").config
    assert isinstance(processor, CloudFunctionConfig)
    assert [r.name for r in processor.user_code] == ["temperature-sensor-1"]
    others = [r.config for r in plan.resources if r.id.startswith("gcp/L2/processor-") and r.config is not processor]
    assert others and all(isinstance(c, CloudFunctionConfig) and not c.user_code for c in others)
    action = plan.resource("gcp/L2/event-action-high-temperature-callback").config
    assert isinstance(action, CloudFunctionConfig) and action.user_code[0].module == "action"
    # The plan no longer refuses actions on GCP: the event checker gets each action's URL, keyed.
    assert not plan.deployable() and not plan.code_problems
    wired = plan.settings_of("gcp/L2/event-checker")
    key = keyed_setting(Setting.EVENT_ACTION_URL, "high-temperature-callback")
    assert wired[key] == keyed_output(Output.EVENT_ACTION_URL, "high-temperature-callback")
    assert plan.resource("gcp/L2/event-action-high-temperature-callback").produces == (wired[key],)


def test_a_default_processor_serves_devices_without_their_own(tmp_path: Path) -> None:
    code = {"lambda_functions/processors/default_processor/process.py": PROCESS}
    bundle = open_bundle(twin_json_bundle(AWS_ONLY, code))
    plan = build_plan(bundle.spec, bundle.code)
    for r in plan.resources:
        if r.id.startswith("aws/L2/processor-"):
            assert isinstance(r.config, LambdaConfig)
            assert r.config.user_code[0].path == "lambda_functions/processors/default_processor"


def test_one_changed_processor_changes_exactly_one_configuration(tmp_path: Path) -> None:
    providers = {**WITHOUT_GCP, "layer_2_provider": "aws"}
    project = example_copy(tmp_path, providers)
    before = load_bundle_folder(project)
    first = build_plan(before.spec, before.code)
    (project / "lambda_functions" / "processors" / "temperature-sensor-1" / "calibration.py").write_text(
        "OFFSET_C = 2.0\n\n\ndef corrected(celsius: float) -> float:\n    return round(celsius + OFFSET_C, 3)\n")
    after = load_bundle_folder(project)
    second = build_plan(after.spec, after.code)
    digests = {r.id: [(c.name, c.digest) for c in getattr(r.config, "user_code", ())] for r in first.resources}
    changed = [r.id for r in second.resources if [(c.name, c.digest) for c in getattr(r.config, "user_code", ())]
               != digests[r.id]]
    assert changed == ["aws/L2/processor-temperature-sensor-1"]


@pytest.mark.parametrize(("code", "path", "fragment"), [
    ({"lambda_functions/processors/s1/process.py": "def handle(event):\n    return event\n"},
     "lambda_functions/processors/s1/process.py", "needs process.py defining process(event)"),
    ({"lambda_functions/processors/s1/process.py": "import numpy\ndef process(e):\n    return e\n"},
     "lambda_functions/processors/s1/process.py", "imports 'numpy', which is neither in"),
    ({"lambda_functions/processors/s1/process.py": "import helpers\ndef process(e):\n    return e\n",
      "lambda_functions/processors/s1/helpers.py": "X = 1\n"},
     "lambda_functions/processors/s1/process.py", "relatively (from . import helpers)"),
    ({"lambda_functions/processors/s1/process.py": "from .. import secrets\ndef process(e):\n    return e\n"},
     "lambda_functions/processors/s1/process.py", "climbs out of the code folder"),
])
def test_a_broken_processor_folder_blocks_the_deployment_naming_its_file(code: dict[str, str], path: str,
                                                                           fragment: str) -> None:
    spec = {**AWS_ONLY, "devices": [{**AWS_ONLY["devices"][0], "id": "s1"}], "events": [], "hierarchy": {"aws": [
        {"type": "entity", "id": "room", "children": [{"type": "component", "name": "s1", "iotDeviceId": "s1"}]}]}}
    bundle = open_bundle(twin_json_bundle(spec, code))
    plan = build_plan(bundle.spec, bundle.code)
    [problem] = plan.code_problems
    assert problem.path == path and fragment in problem.message, problem
    assert plan.to_json()["deployable"] is False


def test_an_action_without_its_code_is_refused_at_its_path() -> None:
    spec = json.loads(json.dumps(AWS_ONLY))
    device = spec["devices"][0]
    spec["events"] = [
        {"condition": f"room.{device['id']}.{device['properties'][0]['name']} > DOUBLE(1)",
         "action": {"type": "lambda", "functionName": "alert", "autoDeploy": True,
                    "pathToCode": "lambda_functions/event_actions/missing"}},
        {"condition": f"room.{device['id']}.{device['properties'][0]['name']} > DOUBLE(2)",
         "action": {"type": "lambda", "functionName": "notify", "autoDeploy": True}},
    ]
    bundle = open_bundle(twin_json_bundle(spec, {"lambda_functions/event_actions/notify/other.py": "x = 1\n"}))
    problems = {p.path: p.message for p in build_plan(bundle.spec, bundle.code).code_problems}
    assert "'lambda_functions/event_actions/missing'" in problems["events[0].action.pathToCode"]
    assert "needs action.py defining action(event)" in problems["lambda_functions/event_actions/notify/action.py"]
    # A plain spec (no bundle) cannot carry the code: the same path says so.
    plain = build_plan(bundle.spec)
    assert {p.path for p in plain.code_problems} == {"events[0].action.pathToCode", "events[1].action.functionName"}


def test_bundle_from_files_is_what_a_folder_gives() -> None:
    assert bundle_from_files(folder_files(EXAMPLE)).sha256 == load_bundle_folder(EXAMPLE).sha256
