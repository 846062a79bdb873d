"""The HTTP API through the local host: validation corpus, 409, the deployment view of a real
spec, destroy, OpenAPI coverage, and a scan for secrets in every response, event, log line
and custom status."""

from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import Engine

from control_plane.openapi import document

pytest_plugins = ["engine_helpers"]  # the `engine` fixtures (no conftest: see engine_helpers)

ROOT = Path(__file__).resolve().parents[2]
BASE = json.loads((ROOT / "examples" / "azure-only" / "twin.json").read_text())


def _with(path: str, value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(BASE)
    node = spec
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last = keys[-1]
    if value is _DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return spec


_DELETE = object()

MALFORMED: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("not json", b"{not json"),
    ("truncated", json.dumps(BASE).encode()[:-5]),
    ("binary", b"\xff\xfe\x00garbage"),
    ("list", b"[]"),
    ("string", b'"spec"'),
    ("number", b"42"),
    ("null", b"null"),
    ("empty object", b"{}"),
]
MUTATIONS: list[tuple[str, Any]] = [
    ("twin", _DELETE),
    ("providers", _DELETE),
    ("devices", _DELETE),
    ("twin.name", _DELETE),
    ("twin.name", ""),
    ("twin.name", "Bad_Name!"),
    ("twin.name", 12),
    ("twin.name", "x" * 80),
    ("twin.hot_storage_days", 0),
    ("twin.hot_storage_days", "thirty"),
    ("twin.cold_storage_days", -1),
    ("twin.mode", "TURBO"),
    ("twin.unknown_field", 1),
    ("providers.layer_1_provider", "oracle"),
    ("providers.layer_2_provider", None),
    ("providers.layer_4_provider", "gcp"),
    ("providers.layer_5_provider", "gcp"),
    ("providers.layer_3_hot_provider", 3),
    ("providers.extra_provider", "aws"),
    ("events.0.action.autoDeploy", True),  # valid spec, but an event action's code cannot come in one
    ("devices", "sensor"),
    ("devices", [{}]),
    ("devices.0.id", ""),
    ("devices.0.properties", "temperature"),
    ("devices.0.properties.0.dataType", "COMPLEX"),
    ("devices.0.properties.0.name", _DELETE),
    ("devices.0.constProperties.0.value", _DELETE),
    ("devices.1.id", "climate-sensor-1"),
]


def _corpus() -> list[tuple[str, bytes]]:
    cases = list(MALFORMED)
    for path, value in MUTATIONS:
        label = f"{path}={'<deleted>' if value is _DELETE else repr(value)[:20]}"
        cases.append((label, json.dumps(_with(path, value)).encode()))
    return cases


CORPUS = _corpus()


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 30


def test_malformed_bodies_get_400_with_paths(engine: Engine) -> None:
    failures = []
    for label, raw in CORPUS:
        reply = engine.api("POST", "deployments", raw=raw)
        body = reply.json() if reply.body.startswith(b"{") else None
        if reply.status != 400 or not body or not body.get("errors"):
            failures.append((label, reply.status, reply.body[:200]))
            continue
        for error in body["errors"]:
            if set(error) != {"path", "message"} or not error["message"]:
                failures.append((label, "bad error shape", error))
            if raw.startswith(b"{") and raw != b"{}" and label not in ("not json", "truncated") and not error["path"]:
                failures.append((label, "no path", error))
        if b"Traceback" in reply.body:
            failures.append((label, "traceback", reply.body[:200]))
    assert failures == []
    assert engine.durable("GET", "instances/").json() == []  # nothing was started


def test_other_routes_validate_input(engine: Engine) -> None:
    assert engine.api("GET", "twins/bad_name!").status == 400
    assert engine.api("GET", "twins/nobody").status == 404
    assert engine.api("DELETE", "twins/nobody").status == 404
    assert engine.api("POST", "twins/nobody/tokens/rotate").status == 404
    assert engine.api("POST", "twins/nobody/tokens/rotate", raw=b"{oops").status == 400
    assert engine.api("POST", "twins/nobody/tokens/rotate", {"grace_seconds": -3}).json()["errors"][0]["path"] == \
        "grace_seconds"
    assert engine.api("POST", "twins/nobody/tokens/rotate", {"graceful": 1}).status == 400
    assert engine.api("GET", "deployments/not-an-operation").status == 404
    assert engine.api("GET", "deployments/twin:x:deploy:000000000000").status == 404
    assert engine.api("GET", "deployments").status in (404, 405)


def _scan(text: str, secrets: list[str]) -> list[str]:
    return [s[:6] + "..." for s in secrets if s and s in text]


@pytest.mark.slow
def test_full_spec_deploys_conflicts_rerun_destroy_and_no_secret_leaks(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    engine.configure({"default": {"delay": 0.05}, "resources": {"azure/L4/digital-twins": {"delay": 1.0}}})
    responses: list[str] = []

    started = engine.api("POST", "deployments", BASE)
    assert started.status == 202, started.body
    responses.append(started.body.decode())
    payload = started.json()
    instance = payload["id"]
    assert started.headers["Location"] == payload["statusQueryGetUri"]
    assert instance.startswith("twin:greenhouse-az:deploy:")

    second = engine.api("POST", "deployments", BASE)
    assert second.status == 409, second.body
    assert second.json()["errors"][0]["path"] == "twin" and instance in second.json()["errors"][0]["message"]
    responses.append(second.body.decode())

    while True:
        view = engine.api("GET", f"deployments/{instance}")
        responses.append(view.body.decode())
        if view.json()["runtimeStatus"] in ("Completed", "Failed"):
            break
        time.sleep(0.1)
    view_json = view.json()
    assert view_json["runtimeStatus"] == "Completed", view_json
    total = len(view_json["resources"])
    assert view_json["summary"]["text"] == f"{total} created, 0 updated, 0 unchanged"
    assert all(layer["state"] == "done" for layer in view_json["layers"].values())
    assert view_json["outputs"]["INTER_CLOUD_TOKEN"]["value"] == "***"
    # Durable's own status URL keeps working.
    durable_status = engine.durable("GET", "instances/" + instance)
    assert durable_status.status == 200 and durable_status.json()["runtimeStatus"] == "Completed"
    # The API built the plan once and handed it over: the orchestration builds none.
    started_with = engine.durable("GET", f"instances/{instance}?showInput=true&showHistory=true").json()
    given = started_with["input"] if isinstance(started_with["input"], dict) else json.loads(started_with["input"])
    assert len(given["plan"]["resources"]) == total and "spec" not in given and "spec" not in started_with["input"]
    assert not [e for e in started_with["historyEvents"] if "plan" in str(e.get("FunctionName") or e.get("Name") or "")]
    responses.append(durable_status.body.decode())
    engine.wait_idle("greenhouse-az")

    engine.configure({})
    rerun = engine.api("POST", "deployments", BASE)
    assert rerun.status == 202, rerun.body
    engine.wait(rerun.json()["id"])
    rerun_view = engine.api("GET", f"deployments/{rerun.json()['id']}")
    assert rerun_view.json()["summary"]["text"] == f"0 created, 0 updated, {total} unchanged"
    responses += [rerun.body.decode(), rerun_view.body.decode()]
    twin = engine.api("GET", "twins/greenhouse-az")
    assert twin.status == 200
    responses.append(twin.body.decode())
    engine.wait_idle("greenhouse-az")

    rotate = engine.api("POST", "twins/greenhouse-az/tokens/rotate", {"grace_seconds": 0})
    assert rotate.status == 202
    assert engine.wait(rotate.json()["id"])["runtimeStatus"] == "Completed"
    responses.append(engine.api("GET", f"deployments/{rotate.json()['id']}").body.decode())
    engine.wait_idle("greenhouse-az")

    # Every secret the fake clouds and the token generator produced, old and new.
    with engine.db() as db:
        outputs = [json.loads(r[0]) for r in db.execute("SELECT outputs FROM resources")]
        settings = [json.loads(r[0]) for r in db.execute("SELECT settings FROM resources")]
    secrets = sorted({v for o in outputs for k, v in o.items() if "s3cr3t" in v}
                     | {v for s in settings for k, v in s.items() if "TOKEN" in k and v})
    assert len(secrets) >= 3

    destroy = engine.api("DELETE", "twins/greenhouse-az")
    assert destroy.status == 202, destroy.body
    destroyed = engine.wait(destroy.json()["id"])
    assert destroyed["runtimeStatus"] == "Completed", destroyed
    assert destroyed["output"]["summary"]["deleted"] == total
    # The view agrees with the result, though the state no longer records what was deleted.
    destroy_view = engine.view(destroy.json()["id"])
    assert destroy_view["summary"]["text"] == f"{total} deleted, 0 already gone", destroy_view["summary"]
    assert destroy_view["summary"]["counts"]["deleted"] == total
    assert engine.api("GET", "twins/greenhouse-az").status == 404
    with engine.db() as db:
        assert db.execute("SELECT COUNT(*) FROM resources").fetchone()[0] == 0

    statuses = engine.durable("GET", "instances/?instanceIdPrefix=twin:greenhouse-az:").json()
    top = [s for s in statuses if s["instanceId"].count(":") == 3]
    custom = json.dumps([s.get("customStatus") for s in statuses]) + json.dumps([s.get("output") for s in top])
    events = json.dumps(engine.events())
    logs = "\n".join(r.getMessage() for r in caplog.records)
    assert any(e["type"] == "twin.output.changed" and e["data"]["secret"] for e in engine.events())
    assert _scan("\n".join(responses), secrets) == []
    assert _scan(custom, secrets) == []
    assert _scan(events, secrets) == []
    assert _scan(logs, secrets) == []


def test_openapi_documents_exactly_the_registered_routes(engine: Engine) -> None:
    import sys

    reply = engine.api("GET", "openapi.json")
    assert reply.status == 200
    doc = reply.json()
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    app_module = next(m for n, m in sys.modules.items() if getattr(m, "__file__", "") and
                      m.__file__.endswith("tests/engine/app/function_app.py"))
    app_module.app.functions_bindings = None
    registered = set()
    for fn in app_module.app.get_functions():
        trigger = fn.get_trigger()
        if type(trigger).__name__ == "HttpTrigger":
            for method in trigger.methods or []:
                registered.add((method.value if hasattr(method, "value") else str(method), f"/api/{trigger.route}"))
    assert documented == registered
    assert doc == document()
    for path, ops in doc["paths"].items():
        for op in ops.values():
            assert op["summary"] and op["responses"]
            params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert params == {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}
