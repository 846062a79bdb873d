"""The JSON Schema export: the committed `docs/spec.schema.json` is current, the `schema` command
prints it, and every example (and the template, converted) conforms to it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from spec_helpers import EXAMPLE_NAMES, ROOT, TEMPLATE, example_dict

from shared.loaders import load_spec
from shared.spec import render_json_schema, spec_json_schema
from twin_cli.commands import schema as schema_command

SCHEMA_FILE = ROOT / "docs" / "spec.schema.json"


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    schema_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["schema", *argv])
    return int(args.func(args))


def test_committed_schema_is_current() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == render_json_schema(), (
        "docs/spec.schema.json is stale: run python -m control_plane schema --write docs/spec.schema.json"
    )


def test_schema_command_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run([]) == 0
    assert capsys.readouterr().out == render_json_schema()


def test_schema_command_write_and_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "schema.json"
    assert _run(["--write", str(target)]) == 0
    assert _run(["--check", str(target)]) == 0
    target.write_text("{}\n")
    assert _run(["--check", str(target)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert _run(["--check", str(tmp_path / "missing.json")]) == 1
    assert _run(["--check"]) == 0  # the committed file


def test_schema_describes_the_document() -> None:
    schema = spec_json_schema()
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert set(schema["required"]) == {"twin", "providers", "devices"}
    providers = schema["$defs"]["Providers"]["properties"]["layer_1_provider"]
    assert "google" in providers["enum"] and "gcp" in providers["enum"]
    device_property = schema["$defs"]["DeviceProperty"]["properties"]
    assert "dataType" in device_property and "initValue" in device_property  # aliases, as in the files


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_examples_conform_to_schema(name: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(example_dict(name), json.loads(SCHEMA_FILE.read_text()))


def test_loaded_template_conforms_to_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    spec = load_spec(TEMPLATE)
    document = spec.model_dump(by_alias=True, exclude_none=True)
    jsonschema.validate(document, json.loads(SCHEMA_FILE.read_text()))
