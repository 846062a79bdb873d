"""Names that collide before anything is deployed: the plan refuses a spec whose own cloud names
are equal up to case (each problem at the spec path that chose the name), and the API refuses a
twin name equal to an existing twin's up to case (409), either way round."""

from __future__ import annotations

import copy
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ownership_kit import ROOT, example, renamed

from local_host import LocalHost
from shared.loaders import spec_from_dict
from shared.plan import build_plan
from shared.validation import SpecError

KEY = "ownership-names-key"


def _problems(spec: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as failure:
        build_plan(spec_from_dict(spec))
    return [(p.path, p.message) for p in failure.value.problems]


def test_device_ids_equal_up_to_case_are_refused() -> None:
    spec = example("aws-only")
    twin_device = copy.deepcopy(spec["devices"][0])
    twin_device["id"] = spec["devices"][0]["id"].upper()
    spec["devices"].append(twin_device)
    problems = _problems(spec)
    assert {path for path, _ in problems} == {f"devices[{len(spec['devices']) - 1}].id"}, problems
    assert any("iam-role" in message or "iot-device" in message for _, message in problems), problems
    assert all("without case" in message for _, message in problems)


def test_an_event_action_taking_a_role_of_the_twin_is_refused() -> None:
    """An AWS event action `{twin}-{functionName}` brings a role of that name, which the state
    machine's role already takes (IAM role names ignore case)."""
    spec = example("aws-only")
    spec["options"] = {**spec.get("options", {}), "use_event_checking": True, "trigger_notification_workflow": True}
    spec["events"] = [{"condition": spec["events"][0]["condition"] if spec.get("events") else
                       "room-1.temperature-sensor-1.temperature > DOUBLE(30)",
                       "action": {"type": "lambda", "functionName": "Lambda-Chain", "autoDeploy": True}}]
    problems = _problems(spec)
    assert [path for path, _ in problems] == ["events[0].action.functionName"], problems
    assert "lambda-chain" in problems[0][1].lower() and "iam-role" in problems[0][1]


# --- the API -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _api(base: str, method: str, route: str, body: Any = None) -> tuple[int, Any]:
    request = urllib.request.Request(f"{base}/api/{route}?code={KEY}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


@pytest.fixture
def host(tmp_path: Path) -> Iterator[str]:
    """The control plane on the local host, with the engine tests' fake cloud provider."""
    port = _free_port()
    environ = {
        "TWIN_PROVIDER_MODULES": "activities.providers.control,engine_fake_provider",
        "ENGINE_FAKE_DB": str(tmp_path / "fake.sqlite"),
        "ENGINE_FAKE_CONFIG": str(tmp_path / "fake.json"),
        "ENGINE_EVENTS_LOG": str(tmp_path / "events.jsonl"),
        "TWIN_ENGINE_OPTIONS": json.dumps({"retry_first_seconds": 0.2, "poll_timeout_seconds": 60}),
    }
    local = LocalHost(app_dir=ROOT / "tests" / "engine" / "app", state_dir=tmp_path / "host", port=port,
                      function_key=KEY, environ=environ)
    local.start()
    try:
        yield local.base_url
    finally:
        local.stop()


def _finished(base: str, instance: str) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while True:
        status, view = _api(base, "GET", f"deployments/{instance}")
        assert status == 200, view
        if view["runtimeStatus"] in ("Completed", "Failed"):
            return dict(view)
        assert time.monotonic() < deadline, view
        time.sleep(0.1)


def test_a_twin_name_equal_to_another_up_to_case_is_a_conflict(host: str) -> None:
    spec = example("azure-only")
    for existing, newcomer in (("greenhouse-x", "GREENHOUSE-X"), ("Greenhouse-Y", "greenhouse-y")):
        status, body = _api(host, "POST", "deployments", renamed(spec, existing))
        assert status == 202, body
        assert _finished(host, body["id"])["runtimeStatus"] == "Completed"
        status, body = _api(host, "POST", "deployments", renamed(spec, newcomer))
        assert status == 409, body
        error = body["errors"][0]
        assert error["path"] == "twin.name" and f"twin {existing} exists" in error["message"], error
    # Once the twin is destroyed its name is free, in any case.
    status, body = _api(host, "DELETE", "twins/greenhouse-x")
    assert status == 202, body
    assert _finished(host, body["id"])["runtimeStatus"] == "Completed"
    status, body = _api(host, "POST", "deployments", renamed(spec, "GREENHOUSE-X"))
    assert status == 202, body
    assert _finished(host, body["id"])["runtimeStatus"] == "Completed"


# --- GCP names across twins ----------------------------------------------------------------------


def _gcp_names(spec: dict[str, Any]) -> set[tuple[str, str]]:
    """(namespace, name) of every GCP object the twin's plan manages, compared without case where
    GCP lowercases names (not Pub/Sub topic ids, which keep case); device accounts share the
    service accounts' namespace."""
    out: set[tuple[str, str]] = set()
    for r in build_plan(spec_from_dict(spec)).resources:
        if r.provider != "gcp":
            continue
        if r.kind == "iot-device":
            out.add(("service-account", str(r.config.service_account).casefold()))
        else:
            name = str(r.config.name)
            out.add((r.kind, name if r.kind == "pubsub-topic" else name.casefold()))
    return out


def test_gcp_names_collide_across_twins_only_up_to_case() -> None:
    """The issue's shape on GCP (`gh` with devices `x-...` against `gh-x`, and twin names that
    end like a name's suffix; short: L5 on Azure keeps twin names to 15 characters): distinct twins never share a GCP name (one processor
    function for every device; device accounts hash twin and device), so only twins equal up to
    case collide, which the API refuses (above) and, for a twin of another control plane, the
    owner check (tests/ownership/test_ownership_gcp.py)."""
    base = example("gcp-to-azure")
    devices = {"climate-sensor-1": "x-climate-sensor-1", "soil-probe-1": "x-hot"}
    twins = ("gh", "gh-x", "gh-hot", "gh-cold", "gh-functions", "gh-hot-to-cold", "gh-cold-to", "gh-x-climate")
    names = {twin: _gcp_names(renamed(base, twin, devices if twin == "gh" else None)) for twin in twins}
    for i, a in enumerate(twins):
        for b in twins[i + 1:]:
            assert not names[a] & names[b], (a, b, names[a] & names[b])
    upper = _gcp_names(renamed(base, "GH-X"))
    shared = {kind for kind, _ in upper & names["gh-x"]}
    assert shared == {"service-account", "gcs-bucket", "firestore", "cloud-function", "scheduler-job"}, shared
