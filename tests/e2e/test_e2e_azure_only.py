"""Must-show 1 and 7 on `examples/azure-only`: device telemetry over HTTPS to IoT Hub is raised as
`Microsoft.Devices.DeviceTelemetry` into the hub's Event Grid system topic; one subscription runs
the L4 ADT Updater (writes the twin), the other the L1 dispatcher (-> L2 processor -> persister ->
Cosmos DB). Then a redeploy of the unchanged spec makes no mutating call, and destroy leaves no
resource of the twin. One sandbox and deployment for the module, in this order."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_kit import ROOT, Deployment, deployment, example, mutating_calls

from shared.contracts import adt_property_name

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deployment(example("azure-only"), tmp_path_factory.mktemp("azure-only")) as dep:
        yield dep


@pytest.fixture(scope="module")
def report(d: Deployment) -> dict:
    assert d.view["runtimeStatus"] == "Completed", json.dumps(d.view)[:3000]
    return d.simulate(count=1, timeout=10)


def test_iot_hub_telemetry_reaches_the_twin_through_the_adt_updater(d: Deployment, report: dict) -> None:
    assert report["l1"] == "azure" and report["twins"] == "azure"
    assert all(m["twin_at"] for m in report["messages"]), json.dumps(report)[:3000]
    last = {m["device_id"]: m["values"] for m in report["messages"]}
    for device, values in last.items():
        twin = d.digital_twin(device)
        for name, value in values.items():
            assert twin[adt_property_name(name)] == pytest.approx(value), (device, twin)
    from sandbox.eventgrid import deliveries

    updater = [x for x in deliveries(d.sandbox.ctx) if x["subscription"].endswith("adt-updater-sub")]
    assert len(updater) >= len(report["messages"]), updater


def test_iot_hub_telemetry_reaches_hot_storage(d: Deployment, report: dict) -> None:
    assert report["hot_storage"] == "azure"
    missing = [m for m in report["messages"] if m["stored_at"] is None]
    assert missing == [], json.dumps(missing)[:2000]
    from sandbox.eventgrid import dead_letters

    assert dead_letters(d.sandbox.ctx) == []


def test_redeploying_the_unchanged_spec_makes_no_mutating_call(d: Deployment, report: dict) -> None:
    mark = d.seq()
    view = d.deploy()
    d.idle()
    assert view["runtimeStatus"] == "Completed", json.dumps(view)[:3000]
    assert mutating_calls(d.requests(mark, mutating="true")) == []


def test_a_control_plane_that_lost_its_state_redeploys_without_a_write(d: Deployment, tmp_path: Path) -> None:
    """A new control plane (another process, fresh Durable state) deploying the same spec adopts
    what exists: the inter-cloud token is found in the vault rather than generated again, so no
    consumer is rewired."""
    mark = d.seq()
    done = subprocess.run(
        [sys.executable, "-m", "control_plane", "deploy", str(d.spec_file), "--sandbox", str(d.sandbox_dir),
         "--state-dir", str(tmp_path / "fresh-host"), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    view = json.loads(done.stdout)
    assert view["summary"]["counts"]["created"] == 0, view["summary"]
    assert mutating_calls(d.requests(mark, mutating="true")) == []


def test_destroy_leaves_no_resource_of_the_twin(d: Deployment, report: dict) -> None:
    from activities.clouds import clouds_from_environ
    from activities.secrets import secret_name
    from shared.contracts import ControlPlaneSetting
    from twin_cli.infrastructure import ensure_vault

    clouds = clouds_from_environ({ControlPlaneSetting.SANDBOX_DIR: str(d.sandbox_dir)})
    vault = clouds.secret_client(ensure_vault(clouds))
    ours = secret_name(d.twin, "x")[: len("tw-") + len(d.twin)]
    assert [p.name for p in vault.list_properties_of_secrets() if p.name.startswith(ours)], "no secret in the vault"
    status, body = d.api("DELETE", f"twins/{d.twin}")
    assert status == 202, body
    done = d.follow(body["id"])
    d.idle()
    assert done["runtimeStatus"] == "Completed", json.dumps(done)[:3000]
    left = {cloud: [r for r in items if d.twin in json.dumps(r)] for cloud, items in d.resources().items()}
    assert left == {cloud: [] for cloud in left}, json.dumps(left)[:3000]
    # Nor a secret of the twin in the control plane's vault (deleted and purged).
    assert [p.name for p in vault.list_properties_of_secrets() if p.name.startswith(ours)] == []
    assert [p.name for p in vault.list_deleted_secrets() if p.name.startswith(ours)] == []
