"""A host killed (SIGKILL) mid-deployment resumes on restart and completes; no resource is
created twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from engine_helpers import APP, KEY, Engine, engine_environ, free_port, http, plan, resource

ROOT = Path(__file__).resolve().parents[2]


def _serve(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, **engine_environ(tmp, port)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "control_plane", "serve", "--app", str(APP), "--state-dir", str(tmp / "host"),
         "--port", str(port), "--function-key", KEY],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=(tmp / "host.log").open("ab"),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if http("GET", f"http://127.0.0.1:{port}/runtime/webhooks/durabletask/instances/?code={KEY}").status == 200:
                return proc
        except OSError:
            pass
        if proc.poll() is not None:
            raise AssertionError((tmp / "host.log").read_text())
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("host did not start")


@pytest.mark.slow
def test_killed_host_resumes_without_creating_anything_twice(tmp_path: Path) -> None:
    port = free_port()
    engine = Engine(f"http://127.0.0.1:{port}", KEY, tmp_path / "fake.sqlite", tmp_path / "fake.json",
                    tmp_path / "events.jsonl")
    engine.configure({"default": {"delay": 0.4}, "resources": {"azure/L4/adt": {"long": 1.5, "poll_after": 0.3}}})
    resources = [resource("azure/setup/rg")]
    resources += [resource(f"azure/L1/dev{i}", ["azure/setup/rg"]) for i in range(8)]
    resources += [resource("azure/L4/adt", ["azure/setup/rg"], ["ADT_INSTANCE_URL"]),
                  resource("azure/L4/app", ["azure/L4/adt", "azure/L1/dev0"])]
    p = plan("crash", resources, wires=[("ADT_INSTANCE_URL", "azure/L4/app", "ADT_INSTANCE_URL")])
    proc = _serve(tmp_path, port)
    try:
        engine.start("deploy_twin", "twin:crash:deploy:1", {"plan": p, "options": {"max_parallel": 3}})
        deadline = time.monotonic() + 30
        while (engine.db_path.exists() and len(engine.calls("create")) < 4) or not engine.db_path.exists():
            assert time.monotonic() < deadline, "deployment made no progress"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        created_before = len(engine.calls("create"))
        assert created_before < len(resources)
        proc = _serve(tmp_path, port)
        status = engine.wait("twin:crash:deploy:1", timeout=90)
        assert status["runtimeStatus"] == "Completed", status
        creates = [rid for _, rid, *_ in engine.calls("create")]
        assert sorted(creates) == sorted(r["id"] for r in resources), "a resource was created twice or not at all"
        engine.wait_idle("crash")
        assert engine.settings("azure/L4/app")["ADT_INSTANCE_URL"].startswith("https://azure.L4.adt")
    finally:
        proc.kill()
        proc.wait(timeout=10)
