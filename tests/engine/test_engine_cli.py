"""The deploy/status/rotate-token/destroy commands, in-process host and `--url` modes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from engine_helpers import APP, Engine, engine_environ, free_port

from twin_cli.commands import deploy, destroy, rotate_token, status

pytest_plugins = ["engine_helpers"]  # the `engine` fixtures (no conftest: see engine_helpers)

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "examples" / "aws-only" / "twin.json"


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (deploy, status, destroy, rotate_token):
        module.register(sub)
    args = parser.parse_args(list(argv))
    return int(args.func(args))


@pytest.fixture
def local_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key, value in engine_environ(tmp_path, free_port()).items():
        if key != "TWIN_EVENTS_ENDPOINT":  # the command points events at its own host
            monkeypatch.setenv(key, value)
    return tmp_path


@pytest.mark.slow
def test_deploy_status_rotate_destroy_in_process(local_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--app", str(APP), "--no-sandbox", "--state-dir", str(local_env / "cli-state")]
    assert cli("deploy", str(SPEC), "--json", *common) == 0
    view = json.loads(capsys.readouterr().out)
    assert view["runtimeStatus"] == "Completed" and view["summary"]["counts"]["created"] == len(view["resources"])
    assert view["outputs"]["INTER_CLOUD_TOKEN"]["value"] == "***"

    twin = view["twin"]
    assert cli("status", twin, "--json", *common) == 0
    assert json.loads(capsys.readouterr().out)["twin"] == twin
    assert cli("status", view["instanceId"], *common) == 0
    assert "0 updated" in capsys.readouterr().out

    assert cli("rotate-token", twin, "--grace-seconds", "0", "--json", *common) == 0
    assert json.loads(capsys.readouterr().out)["runtimeStatus"] == "Completed"
    assert cli("destroy", twin, *common) == 0
    capsys.readouterr()
    assert cli("status", twin, *common) == 1
    assert "no recorded resources" in capsys.readouterr().err


def test_invalid_spec_exits_2_with_paths(local_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = local_env / "bad.json"
    spec = json.loads(SPEC.read_text())
    spec["twin"]["name"] = "Bad_Name!"
    spec["providers"]["layer_4_provider"] = "gcp"
    bad.write_text(json.dumps(spec))
    assert cli("deploy", str(bad), "--app", str(APP), "--no-sandbox") == 2
    err = capsys.readouterr().err
    assert "twin.name" in err and "providers.layer_4_provider" in err
    assert cli("deploy", str(local_env / "missing.json"), "--no-sandbox") == 2
    assert cli("deploy", str(SPEC), "--url", "http://127.0.0.1:9") == 2  # --url without --key


def test_failed_deployment_exits_1_against_a_running_control_plane(engine: Engine,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    engine.configure({"resources": {"aws/L3_hot/hot-table": {"permanent": "table quota reached"}}})
    assert cli("deploy", str(SPEC), "--url", engine.base, "--key", engine.key) == 1
    captured = capsys.readouterr()
    assert "aws/L3_hot/hot-table" in captured.out and "table quota reached" in captured.out
