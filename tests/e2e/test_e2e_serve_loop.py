"""The change loop under `python -m control_plane serve --sandbox DIR`, with no variable set by hand
(issue 14, item 1): `serve` routes `twin.*` events through an Event Grid topic and subscription of
the sandbox and watches Azure Resource Manager. Recreating the Digital Twins instance (as a user
would, with azure-mgmt-digitaltwins) rewires the ADT Pusher; with the `twin_events` subscription
deleted, `GET /api/health` names the problem and the next change still reaches the Pusher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from e2e_kit import ROOT, example, http

from shared.contracts import Setting
from shared.engine.infrastructure import EVENTS_SUBSCRIPTION, EVENTS_TOPIC, RESOURCE_GROUP

pytestmark = pytest.mark.slow
KEY = "serve-loop-key"


@dataclass
class Served:
    base: str
    sandbox_dir: Path
    startup: list[str]
    proc: subprocess.Popen[str]
    twin: str = ""
    log: list[str] = field(default_factory=list)

    def api(self, method: str, route: str, body: Any = None, key: str | None = KEY) -> tuple[int, Any]:
        headers = {"x-functions-key": key} if key else {}
        return http(method, f"{self.base}/api/{route}", body, headers=headers)

    def follow(self, instance: str, timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status, view = self.api("GET", f"deployments/{instance}")
            assert status == 200, view
            if view["runtimeStatus"] in ("Completed", "Failed", "Terminated"):
                return dict(view)
            assert time.monotonic() < deadline, json.dumps(view)[:2000]
            time.sleep(0.5)

    def operations(self, operation: str) -> list[dict[str, Any]]:
        status, body = http("GET", f"{self.base}/runtime/webhooks/durabletask/instances/"
                                   f"?instanceIdPrefix=twin:{self.twin}:{operation}:&code={KEY}")
        assert status == 200, body
        return [s for s in body if s["instanceId"].count(":") == 3]

    def health(self) -> dict[str, dict[str, Any]]:
        status, body = self.api("GET", "health")
        assert status == 200, body
        return {c["name"]: c for c in body["checks"]}


def _serve(sandbox_dir: Path, state_dir: Path) -> tuple[subprocess.Popen[str], str, list[str]]:
    # Nothing set by hand: no TWIN_* variable reaches the control plane from this environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "control_plane", "serve", "--sandbox", str(sandbox_dir), "--port", "0",
         "--state-dir", str(state_dir), "--function-key", KEY],
        cwd=ROOT, env=dict(env, PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line.rstrip())
        if line.startswith("READY "):
            # Keep reading: a full pipe would block the host's logging, and with it the host.
            threading.Thread(target=lambda: lines.extend(raw.rstrip() for raw in proc.stdout or ()),
                             daemon=True).start()
            return proc, line.split()[1], lines
    proc.kill()
    raise AssertionError("serve did not get ready:\n" + "\n".join(lines[-60:]))


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from sandbox.server import Sandbox

    tmp = tmp_path_factory.mktemp("serve-loop")
    sandbox_dir = (tmp / "sandbox").resolve()
    with Sandbox(sandbox_dir):
        proc, base, output = _serve(sandbox_dir, tmp / "host")
        try:
            yield Served(base, sandbox_dir, list(output), proc, log=output)
        finally:
            _stop(proc)


def _azure(s: Served) -> Any:
    from twin_cli.commands.simulate import Azure, Endpoints

    return Azure(Endpoints(s.sandbox_dir), s.twin)


def _recreate_adt_and_wait_for_the_pusher(s: Served) -> str:
    from azure.mgmt.digitaltwins import AzureDigitalTwinsManagementClient
    from azure.mgmt.digitaltwins.models import DigitalTwinsDescription
    from azure.mgmt.web import WebSiteManagementClient

    az = _azure(s)
    adt = AzureDigitalTwinsManagementClient(az.cred, az.sub, **az.kw)
    web = WebSiteManagementClient(az.cred, az.sub, **az.kw)
    name, pusher = az.naming.digital_twins(), az.naming.function_app("L0")
    old = adt.digital_twins.get(az.rg, name)
    adt.digital_twins.begin_delete(az.rg, name).result()
    new = adt.digital_twins.begin_create_or_update(az.rg, name, DigitalTwinsDescription(location=old.location)).result()
    assert new.host_name and new.host_name != old.host_name
    wanted = "https://" + str(new.host_name)
    deadline = time.monotonic() + 90
    while web.web_apps.list_application_settings(az.rg, pusher).properties.get(Setting.ADT_INSTANCE_URL) != wanted:
        assert time.monotonic() < deadline, f"the Pusher never got {wanted}"
        time.sleep(0.3)
    return wanted


def test_serve_routes_events_through_a_topic_and_reports_health(served: Served) -> None:
    text = "\n".join(served.startup)
    assert "Routing twin events through" in text and EVENTS_TOPIC in text, text
    assert "Watching Azure Resource Manager events" in text, text
    assert served.api("GET", "health", key=None)[0] == 401
    checks = served.health()
    assert all(c["ok"] for c in checks.values()), checks
    assert set(checks) == {"events", "vault", "watch", "identity"}


def test_a_recreated_instance_reaches_the_pusher_through_the_routed_events(served: Served) -> None:
    spec = example("aws-to-azure")
    served.twin = str(spec["twin"]["name"])
    status, body = served.api("POST", "deployments", spec)
    assert status == 202, body
    view = served.follow(body["id"])
    assert view["runtimeStatus"] == "Completed", json.dumps(view)[:3000]
    propagations_before = len(served.operations("propagate"))

    wanted = _recreate_adt_and_wait_for_the_pusher(served)
    _, twin = served.api("GET", f"twins/{served.twin}")
    assert twin["outputs"]["ADT_INSTANCE_URL"]["value"] == wanted and twin["behind"] == []
    refreshes = served.operations("refresh")
    assert any(r["runtimeStatus"] == "Completed" and r["output"]["changed"] == ["ADT_INSTANCE_URL"] for r in refreshes)
    # The routed twin.output.changed reached twin_events, which started a propagation of its own
    # (it found the Pusher already current: the refresh had applied the change).
    deadline = time.monotonic() + 30
    while len(served.operations("propagate")) <= propagations_before:
        assert time.monotonic() < deadline, "no event-triggered propagation: the events route delivers nothing"
        time.sleep(0.3)


def test_without_the_twin_events_subscription_health_says_so_and_changes_still_arrive(served: Served) -> None:
    from azure.mgmt.eventgrid import EventGridManagementClient

    assert served.twin, "needs the deployment of the previous test"
    az = _azure(served)
    eventgrid = EventGridManagementClient(az.cred, az.sub, **az.kw)
    topic = eventgrid.topics.get(RESOURCE_GROUP, EVENTS_TOPIC)
    eventgrid.event_subscriptions.begin_delete(str(topic.id), EVENTS_SUBSCRIPTION).result()

    events = served.health()["events"]
    assert not events["ok"] and EVENTS_SUBSCRIPTION in events["reason"] and "twin_events" in events["reason"], events

    wanted = _recreate_adt_and_wait_for_the_pusher(served)
    _, twin = served.api("GET", f"twins/{served.twin}")
    assert twin["outputs"]["ADT_INSTANCE_URL"]["value"] == wanted and twin["behind"] == []
