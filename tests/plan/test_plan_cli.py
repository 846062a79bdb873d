"""`python -m control_plane plan SPEC [--json | --mermaid]`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from plan_specs import spec_dict

from twin_cli.cli import main

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT.parent / "shared" / "reference" / "seed-template"  # the shared folder beside the repository
EXAMPLES = ROOT / "examples"


def write_spec(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "twin.json"
    path.write_text(json.dumps(data))
    return path


def test_json_output_has_the_issue_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_spec(tmp_path, spec_dict(("aws", "aws", "aws", "aws", "aws", "azure", "azure")))
    assert main(["plan", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["twin"] == "plant-a"
    assert {"id", "layer", "provider", "kind", "needs", "produces"} == set(doc["resources"][0])
    assert {"name", "producer", "secret"} == set(doc["outputs"][0])
    assert {"output", "producer", "consumer", "setting"} == set(doc["wires"][0])
    wire = {"output": "ADT_PUSHER_URL", "producer": "azure/L0/function-app",
            "consumer": "aws/L2/persister", "setting": "REMOTE_ADT_PUSHER_URL"}
    assert wire in doc["wires"]
    token = next(o for o in doc["outputs"] if o["name"] == "INTER_CLOUD_TOKEN")
    assert token == {"name": "INTER_CLOUD_TOKEN", "producer": "control/setup/inter-cloud-token", "secret": True}


def test_mermaid_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_spec(tmp_path, spec_dict(("aws", "aws", "aws", "aws", "aws", "azure", "azure")))
    assert main(["plan", str(path), "--mermaid"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "flowchart LR"
    assert "  subgraph aws[aws]" in lines and "  subgraph azure[azure]" in lines
    # Late-bound wires are dotted: propagation fills them in, they do not order the deployment.
    assert any("ADT_PUSHER_URL as REMOTE_ADT_PUSHER_URL" in line and "-.->|" in line for line in lines)
    assert out.count("subgraph") == out.count("\n  end")


def test_human_output_names_wires_and_reapplied_consumers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_spec(tmp_path, spec_dict(("aws", "aws", "aws", "aws", "aws", "azure", "azure")))
    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Layers" in out and "  L4          azure" in out
    assert "Resources in deployment order" in out
    cross = out.split("Cross-cloud wires", 1)[1].split("\n\n", 1)[0]
    assert "ADT_PUSHER_URL (azure/L0/function-app) -> aws/L2/persister as REMOTE_ADT_PUSHER_URL" in cross
    reapplied = out.split("Re-applied when an output changes", 1)[1]
    assert "ADT_PUSHER_URL from azure/L0/function-app: aws/L2/persister [REMOTE_ADT_PUSHER_URL]" in reapplied
    assert "ADT_INSTANCE_URL from azure/L4/digital-twins: azure/L0/function-app [ADT_INSTANCE_URL]" in reapplied
    assert "Deployable: yes" in out
    # Resources are listed after everything they need.
    listed = [line.split(". ", 1)[1].split(" ", 1)[0] for line in out.splitlines() if line[:7].strip().endswith(".")]
    assert listed.index("azure/setup/identity") < listed.index("azure/L0/function-app")
    assert listed.index("aws/L3_hot/hot-table") < listed.index("aws/L2/persister")


def test_seed_template_folder_plans_and_says_why_not_deployable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(SEED)]) == 0
    out = capsys.readouterr().out
    assert "Twin digital-twin-xx" in out
    assert "Deployable: no" in out and "the bundle has no code at" in out


@pytest.mark.parametrize("example", ["azure-only", "aws-only", "aws-to-azure", "gcp-to-azure", "mixed"])
def test_examples_plan(example: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = EXAMPLES / example / "twin.json"
    if not path.is_file():
        pytest.fail(f"example {path} is missing")
    assert main(["plan", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    providers = {r["provider"] for r in doc["resources"]}
    if example == "azure-only":
        assert providers == {"control", "azure"} and doc["twin_update"] == "event-grid-adt-updater"
    if example == "aws-only":
        assert providers == {"control", "aws"} and doc["twin_update"] == "pull"
    if example == "aws-to-azure":
        assert doc["twin_update"] == "remote-adt-pusher"
        assert {"output": "ADT_PUSHER_URL", "producer": "azure/L0/function-app",
                "consumer": "aws/L2/persister", "setting": "REMOTE_ADT_PUSHER_URL"} in doc["wires"]
    if example == "gcp-to-azure":
        assert providers == {"control", "gcp", "azure"} and doc["twin_update"] == "remote-adt-pusher"
        assert {"output": "ADT_PUSHER_URL", "producer": "azure/L0/function-app",
                "consumer": "gcp/L2/persister", "setting": "REMOTE_ADT_PUSHER_URL"} in doc["wires"]
    if example == "mixed":
        p = doc["placement"]
        assert len({p["L3_hot"], p["L3_cold"], p["L3_archive"]}) == 3
    assert doc["deployable"] is True, doc["blockers"]


def test_mermaid_draws_the_gcp_side(capsys: pytest.CaptureFixture[str]) -> None:
    """`plan --mermaid` of gcp-to-azure: the GCP resources in their own subgraph, the topic feeding
    the dispatcher, and the late-bound wire that carries the Pusher's URL to the GCP persister."""
    assert main(["plan", str(EXAMPLES / "gcp-to-azure" / "twin.json"), "--mermaid"]) == 0
    out = capsys.readouterr().out
    assert "subgraph gcp[gcp]" in out and "subgraph azure[azure]" in out
    nodes = {label.split("<br/>")[0]: node for node, label in
             (line.strip().split("[", 1) for line in out.splitlines() if line.startswith("    r"))}
    for name in ("L1/telemetry-topic", "L1/dispatcher", "L2/persister", "L3_hot/firestore",
                 "L3_hot/hot-to-cold-mover-schedule", "L1/device-soil-probe-1"):
        assert f'"{name}' in nodes, name
    assert f'  {nodes[chr(34) + "L1/telemetry-topic"]} --> {nodes[chr(34) + "L1/dispatcher"]}' in out
    pusher, persister = nodes['"L0/function-app'], nodes['"L2/persister']
    assert f'  {pusher} -.->|"ADT_PUSHER_URL as REMOTE_ADT_PUSHER_URL"| {persister}' in out


def test_invalid_spec_exits_2_with_path_message_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = spec_dict()
    data["providers"]["layer_4_provider"] = "gcp"
    data["devices"].append(dict(data["devices"][0]))
    path = write_spec(tmp_path, data)
    assert main(["plan", str(path), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert lines and all(": " in line for line in lines)
    paths = [line.split(": ", 1)[0] for line in lines]
    assert "providers.layer_4_provider" in paths
    assert any(p.startswith("devices[2]") for p in paths), lines


def test_missing_file_is_exit_2_at_root(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["plan", str(tmp_path / "nope.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("(root): ") and "nope.json" in err
    assert "Traceback" not in err


def test_subprocess_exit_codes(tmp_path: Path) -> None:
    good = write_spec(tmp_path, spec_dict())
    run = subprocess.run([sys.executable, "-m", "control_plane", "plan", str(good), "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["twin"] == "plant-a"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    run = subprocess.run([sys.executable, "-m", "control_plane", "plan", str(bad)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert run.stdout == "" and "Traceback" not in run.stderr and ": " in run.stderr


def test_json_and_mermaid_are_exclusive(tmp_path: Path) -> None:
    path = write_spec(tmp_path, spec_dict())
    with pytest.raises(SystemExit) as exc:
        main(["plan", str(path), "--json", "--mermaid"])
    assert exc.value.code == 2
