"""End to end: the engine (the project's blueprints on the local host, real Durable replay) deploys
the whole of `examples/azure-only` with these providers against the sandbox; a second deploy
makes zero mutating ARM calls; adding one device makes only the calls that device needs; destroy
leaves the sandbox with no resource of the twin.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from providers_kit import ROOT, example_spec, plan_for, unique_twin

from local_host import LocalHost

APP = ROOT / "tests" / "engine" / "app"
KEY = "azure-e2e-key"
FAST = {"retry_first_seconds": 0.2, "retry_max_seconds": 1.0, "poll_timeout_seconds": 120, "grace_seconds": 0.5,
        "lock_wait_seconds": 30}
TERMINAL = {"Completed", "Failed", "Terminated", "Canceled"}


def deployable_plan(spec: dict[str, Any]) -> dict[str, Any]:
    plan = plan_for(spec).to_json(include_config=True)
    plan["problems"] = []
    return plan


def _http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(), method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, json.loads(raw) if raw else None


class Host:
    def __init__(self, base: str) -> None:
        self.base = base

    def durable(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        sep = "&" if "?" in path else "?"
        return _http(method, f"{self.base}/runtime/webhooks/durabletask/{path}{sep}code={KEY}", body)

    def api(self, method: str, route: str) -> tuple[int, Any]:
        return _http(method, f"{self.base}/api/{route}?code={KEY}")

    def wait(self, instance: str, timeout: float = 240) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status, body = self.durable("GET", f"instances/{instance}")
            if body and body.get("runtimeStatus") in TERMINAL:
                return dict(body)
            assert time.monotonic() < deadline, f"{instance}: {body}"
            time.sleep(0.2)

    def idle(self, twin: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            status, body = self.durable("GET", f"instances/?instanceIdPrefix=twin:{twin}:&runtimeStatus=Running,Pending")
            if status == 200 and not body:
                return
            assert time.monotonic() < deadline, f"twin {twin} still busy"
            time.sleep(0.2)

    def deploy(self, plan: dict[str, Any], n: int) -> dict[str, Any]:
        instance = f"twin:{plan['twin']}:deploy:{n}"
        status, body = self.durable("POST", f"orchestrators/deploy_twin/{instance}", {"plan": plan, "options": FAST})
        assert status == 202, body
        return self.wait(instance)


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["instant", "flaky"])
def test_engine_deploys_redeploys_and_destroys_the_azure_twin(sandbox: Any, tmp_path: Path, profile: str) -> None:
    from providers_kit import mutating_calls

    sandbox.profile(profile, seed=3)
    twin = unique_twin()
    plan = deployable_plan(example_spec("azure-only", twin))
    kinds = {r["kind"] for r in plan["resources"] if r["provider"] == "azure"}
    assert {"function-app", "digital-twins", "dtdl-models", "twin-graph", "cosmos-container", "event-subscription",
            "role-assignment", "grafana"} <= kinds
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    webhook = f"http://127.0.0.1:{port}/runtime/webhooks/eventgrid?code={KEY}&functionName="
    environ = {
        "TWIN_PROVIDER_MODULES": "activities.providers.control,activities.providers.azure",
        "TWIN_SANDBOX_DIR": str(sandbox.sb.state_dir),
        "ENGINE_EVENTS_LOG": str(tmp_path / "events.jsonl"),
        "TWIN_EVENTS_ENDPOINT": f"{webhook}twin_events,{webhook}record_event",
        "TWIN_ENGINE_OPTIONS": json.dumps(FAST),
    }
    host = LocalHost(app_dir=APP, state_dir=tmp_path / "host", port=port, function_key=KEY, environ=environ)
    host.start()
    try:
        h = Host(host.base_url)
        first = h.deploy(plan, 1)
        assert first["runtimeStatus"] == "Completed", json.dumps(first)[:3000]
        h.idle(twin)
        deployed = [r for r in sandbox.sb.list_resources()["azure"] if twin in json.dumps(r)]
        assert len(deployed) >= len([r for r in plan["resources"] if r["provider"] == "azure"]) - 4

        sandbox.profile("instant")  # the no-op redeploy is measured on a quiet cloud
        mark = sandbox.seq()
        second = h.deploy(plan, 2)
        assert second["runtimeStatus"] == "Completed", json.dumps(second)[:3000]
        h.idle(twin)
        azure = [r for r in sandbox.requests(mark) if r["cloud"] == "azure"]
        assert mutating_calls(azure) == []

        # One more device: only its own resources are written (a registry identity in the IoT
        # Hub; its twin is not in the hierarchy, so the graph stays as it is).
        spec = example_spec("azure-only", twin)
        extra = {**spec["devices"][0], "id": "climate-sensor-9"}
        spec["devices"].append(extra)
        grown = deployable_plan(spec)
        mark = sandbox.seq()
        third = h.deploy(grown, 3)
        assert third["runtimeStatus"] == "Completed", json.dumps(third)[:3000]
        h.idle(twin)
        writes = mutating_calls([r for r in sandbox.requests(mark) if r["cloud"] == "azure"])
        assert writes and all("climate-sensor-9" in w for w in writes), writes

        status, body = h.api("DELETE", f"twins/{twin}")
        assert status == 202, body
        done = h.wait(body["id"])
        assert done["runtimeStatus"] == "Completed", json.dumps(done)[:3000]
        left = [r for r in sandbox.sb.list_resources()["azure"] if twin in json.dumps(r)]
        assert left == []
    finally:
        host.stop()
