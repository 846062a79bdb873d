"""The AWS provider under the real engine: the local host runs `deploy_twin` / `destroy_twin`
(real Durable SDK replay) with the AWS providers against the sandbox.

The plan is the engine's plan of `examples/aws-only` without the Grafana datasource (the sandbox
has no Grafana HTTP API, see test_twin_and_grafana), passed to `deploy_twin` directly.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from control_plane.operations import instance_id
from local_host import LocalHost
from shared.engine.plan import engine_plan

APP = Path(__file__).resolve().parents[1] / "engine" / "app"
KEY = "aws-engine-test-key"
OPTIONS = {"retry_first_seconds": 0.2, "retry_max_seconds": 1.0, "poll_timeout_seconds": 120, "grace_seconds": 0.5,
           "lock_wait_seconds": 30}
TERMINAL = {"Completed", "Failed", "Terminated", "Canceled"}
LEFT_OUT = {"grafana-datasource"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
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

    def children(self, instance: str) -> list[dict[str, Any]]:
        """Sub-orchestrations of `instance` that have not finished (for a timeout's message)."""
        status, body = _http("GET", f"{self.base}/runtime/webhooks/durabletask/instances/?instanceIdPrefix="
                                    f"{urllib.parse.quote(instance)}&code={KEY}&showHistory=true")
        if status != 200 or not isinstance(body, list):
            return [{"error": status}]
        out = []
        for c in body:
            if c.get("runtimeStatus") in TERMINAL or c.get("instanceId") == instance:
                continue
            _, one = _http("GET", f"{self.base}/runtime/webhooks/durabletask/instances/"
                                  f"{urllib.parse.quote(str(c['instanceId']), safe='')}?code={KEY}&showHistory=true")
            history = (one or {}).get("historyEvents") or []
            out.append({"id": c.get("instanceId"), "status": c.get("runtimeStatus"), "events": len(history),
                        "last": history[-4:]})
        return out

    def start(self, orchestrator: str, instance: str, payload: Any) -> None:
        status, body = _http("POST", f"{self.base}/runtime/webhooks/durabletask/orchestrators/{orchestrator}/"
                                     f"{instance}?code={KEY}", payload)
        assert status == 202, body

    def wait(self, instance: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status, body = _http("GET", f"{self.base}/runtime/webhooks/durabletask/instances/{instance}?code={KEY}")
            assert status in (200, 202), body
            if body["runtimeStatus"] in TERMINAL:
                return dict(body)
            if time.monotonic() > deadline:
                raise AssertionError(f"{instance} still {body['runtimeStatus']}: {body.get('customStatus')}; "
                                     f"unfinished children: {self.children(instance)}")
            time.sleep(0.1)


@pytest.fixture
def host(aws_sandbox: Any, tmp_path: Path) -> Iterator[Host]:
    port = _free_port()
    webhook = f"http://127.0.0.1:{port}/runtime/webhooks/eventgrid?code={KEY}&functionName="
    env = {
        "TWIN_PROVIDER_MODULES": "activities.providers.control,activities.providers.aws",
        "TWIN_SANDBOX_DIR": str(aws_sandbox.sb.state_dir),
        "ENGINE_EVENTS_LOG": str(tmp_path / "events.jsonl"),
        "TWIN_EVENTS_ENDPOINT": f"{webhook}twin_events,{webhook}record_event",
        "TWIN_ENGINE_OPTIONS": json.dumps(OPTIONS),
    }
    local = LocalHost(app_dir=APP, state_dir=tmp_path / "host", port=port, function_key=KEY, activity_concurrency=8,
                      environ=env)
    local.start()
    try:
        yield Host(local.base_url)
    finally:
        local.stop()


def _plan(specs: Any, twin: str) -> dict[str, Any]:
    # Without event feedback: moto's DescribeEndpoint answers a new random IoT endpoint on every
    # call (AWS's is stable), which would change the feedback Lambda's IOT_ENDPOINT on each run.
    spec = specs.example("aws-only", twin, options={"use_event_checking": True, "return_feedback_to_device": False})
    plan = engine_plan(spec)
    dropped = {r["id"] for r in plan["resources"] if r["kind"] in LEFT_OUT}
    plan["resources"] = [r for r in plan["resources"] if r["id"] not in dropped]
    plan["wires"] = [w for w in plan["wires"] if w["consumer"] not in dropped]
    assert not plan["problems"], plan["problems"]
    return plan


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["instant", "realistic"])
def test_engine_deploys_redeploys_without_writes_and_destroys(profile: str, host: Host, aws_sandbox: Any, ops: Any,
                                                              specs: Any) -> None:
    # realistic: Lambda Pending, tables CREATING, component types and Grafana taking their
    # (scaled) time, so the engine polls through durable timers.
    aws_sandbox.profile(profile)
    twin = specs.unique_twin()
    plan = _plan(specs, twin)
    first = instance_id(twin, "deploy")
    host.start("deploy_twin", first, {"plan": plan, "options": OPTIONS})
    done = host.wait(first)
    assert done["runtimeStatus"] == "Completed", done.get("output") or done.get("customStatus")
    aws_sandbox.profile("instant")
    names = {r["type"] for r in aws_sandbox.resources() if twin in r["id"]}
    assert {"lambda:function", "iam:role", "dynamodb:table", "s3:bucket", "iot:thing", "iot:topic-rule",
            "events:rule"} <= names
    mark, seq = ops.mark(), aws_sandbox.seq()
    second = instance_id(twin, "deploy")
    host.start("deploy_twin", second, {"plan": plan, "options": OPTIONS})
    again = host.wait(second)
    assert again["runtimeStatus"] == "Completed", again.get("output")
    writes = [r["url"] for r in aws_sandbox.requests(seq) if r.get("mutating")]
    assert ops.writes(mark) == [], writes
    assert aws_sandbox.wire_mutations(seq) == []
    gone = instance_id(twin, "destroy")
    host.start("destroy_twin", gone, {"twin": twin, "options": OPTIONS})
    destroyed = host.wait(gone)
    assert destroyed["runtimeStatus"] == "Completed", destroyed.get("output")
    assert [r for r in aws_sandbox.resources() if twin in r["id"]] == []


@pytest.fixture(autouse=True)
def _instant_after(aws_sandbox: Any) -> Any:
    yield
    aws_sandbox.profile("instant")
