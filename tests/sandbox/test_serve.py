"""`python -m sandbox serve` as a subprocess: endpoints.json, every endpoint answers, SIGTERM
stops it and every child (Azurite, moto) with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from azure.mgmt.resource.resources import ResourceManagementClient

from sandbox.core.auth import SandboxCredential

ROOT = Path(__file__).resolve().parents[2]


def _descendants(pid: int) -> set[int]:
    """Every live process below `pid`, from /proc (no psutil needed)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces; fields resume after its closing parenthesis.
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] == "Z":
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2 :].split()[0] != "Z"


@pytest.mark.slow
def test_serve_writes_endpoints_answers_and_stops_cleanly(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox",
            "serve",
            "--state-dir",
            str(state),
            "--profile",
            "instant",
            "--seed",
            "3",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        endpoints_file = state / "endpoints.json"
        deadline = time.time() + 60
        while not endpoints_file.exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.time() < deadline, "endpoints.json was not written within 60 s"
            time.sleep(0.1)
        endpoints = json.loads(endpoints_file.read_text())
        azure = endpoints["azure"]
        assert set(azure) == {"arm", "subscription_id", "tenant_id", "ca_file", "deployer_principal_id"}
        assert azure["arm"].startswith("https://127.0.0.1:") and Path(azure["ca_file"]).is_file()
        assert endpoints["control"].startswith("http://127.0.0.1:")
        # ARM through the real SDK and the written CA.
        rm = ResourceManagementClient(
            SandboxCredential(azure["deployer_principal_id"]),
            azure["subscription_id"],
            base_url=azure["arm"],
            connection_verify=azure["ca_file"],
            polling_interval=0,
        )
        assert (
            rm.resource_groups.create_or_update(
                "rg-serve", {"location": "westeurope"}
            ).properties.provisioning_state
            == "Succeeded"
        )
        log = requests.get(endpoints["control"] + "/requests", timeout=10).json()
        assert [(r["method"], r["status"]) for r in log] == [("PUT", 201)]
        profile = requests.get(endpoints["control"] + "/profile", timeout=10).json()
        assert profile["name"] == "instant" and profile["seed"] == 3
        if "aws" in endpoints:
            assert requests.get(endpoints["aws"]["endpoint_url"], timeout=10).status_code < 500
        if "blob" in endpoints:
            # Azurite answers (400/403 without auth) on its account URL.
            assert requests.get(endpoints["blob"]["account_url"] + "?comp=list", timeout=10).status_code < 500
        children = _descendants(proc.pid)
        if "blob" in endpoints:
            assert children, "Azurite should run as a child process"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        time.sleep(0.2)
        left = {pid for pid in children if _alive(pid)}
        assert left == set(), f"processes left behind: {left}"
        for url in (azure["arm"], endpoints["control"]):
            with pytest.raises(requests.ConnectionError):
                requests.get(url, timeout=2, verify=azure["ca_file"])
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()


def test_serve_rejects_bad_arguments(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "sandbox", "serve", "--state-dir", str(tmp_path), "--profile", "chaos"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "invalid choice: 'chaos'" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "sandbox"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_state_dir_keeps_its_ca_across_restarts(tmp_path: Path) -> None:
    from sandbox.server import Sandbox

    with Sandbox(tmp_path, with_blob=False, with_aws=False) as first:
        ca = Path(first.ca_file).read_bytes()
        assert (tmp_path / "endpoints.json").is_file()
    with Sandbox(tmp_path, with_blob=False, with_aws=False) as second:
        assert Path(second.ca_file).read_bytes() == ca
        # A client that trusted the first run's ca.pem trusts the restarted server.
        r = requests.get(f"{second.control_url}/profile", timeout=10)
        assert r.status_code == 200
        r = requests.get(f"{second.arm_url}/subscriptions", verify=str(tmp_path / "ca.pem"), timeout=10)
        assert r.status_code == 401  # TLS verified; no token
        assert json.loads((tmp_path / "endpoints.json").read_text())["azure"]["arm"] == second.arm_url
    assert oct((tmp_path / "ca.key.pem").stat().st_mode & 0o777) == "0o600"
