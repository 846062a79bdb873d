"""`serve --sandbox` under the `flaky` profile (issue 12, item 4): startup work (vault, events
topic and subscription, the watch) meets 429s, 503s and operations that fail once, and retries
them; the host is killed in the middle of a deployment and started again, three starts in all,
and the resumed deployment completes: nothing is saved Failed because a host stopped."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from e2e_kit import example, http
from test_e2e_serve_loop import KEY, _serve, _stop

pytestmark = pytest.mark.slow


def _view(base: str, instance: str) -> dict:
    status, view = http("GET", f"{base}/api/deployments/{instance}", headers={"x-functions-key": KEY})
    assert status == 200, view
    return dict(view)


def test_flaky_starts_never_crash_and_a_killed_deployment_resumes(tmp_path: Path) -> None:
    from sandbox.server import Sandbox

    sandbox_dir = (tmp_path / "sandbox").resolve()
    spec = example("azure-only")
    with Sandbox(sandbox_dir, profile="flaky", seed=3, with_aws=False):
        proc, base, lines = _serve(sandbox_dir, tmp_path / "host")
        try:
            status, body = http("POST", f"{base}/api/deployments", spec, headers={"x-functions-key": KEY})
            assert status == 202, body
            instance = body["id"]
            restarts = 0
            for restart in range(2):
                # Kill the host once the deployment has made progress, then start it again.
                deadline = time.monotonic() + 120
                while True:
                    view = _view(base, instance)
                    done = sum(layer["done"] for layer in view["layers"].values())
                    if view["runtimeStatus"] != "Running" or done >= 3 * (restart + 1):
                        break
                    assert time.monotonic() < deadline, json.dumps(view)[:2000]
                    time.sleep(0.2)
                if view["runtimeStatus"] != "Running":
                    break
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                proc, base, lines = _serve(sandbox_dir, tmp_path / "host")
                restarts += 1
                assert not [line for line in lines if "Traceback" in line], "\n".join(lines)
            deadline = time.monotonic() + 300
            while (view := _view(base, instance))["runtimeStatus"] == "Running":
                assert time.monotonic() < deadline, json.dumps(view)[:2000]
                time.sleep(0.5)
            assert view["runtimeStatus"] == "Completed", json.dumps(view)[:3000]
            assert restarts >= 1, "the deployment finished before the host could be killed"
            status, health = http("GET", f"{base}/api/health", headers={"x-functions-key": KEY})
            assert status == 200 and health["healthy"], json.dumps(health["checks"]) + "\n" + "\n".join(lines[-40:])
        finally:
            _stop(proc)
