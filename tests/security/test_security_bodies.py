"""Hostile bodies and racing requests against the API (issue 12 items 6 and 7), through the local
host with the project's blueprints and the fake provider."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from security_helpers import KEY, ROOT, Engine, api_engine, http

from shared.loaders import MAX_DOCUMENT_BYTES

BASE = json.loads((ROOT / "examples" / "azure-only" / "twin.json").read_text())
BODY_ROUTES = ("plan", "deployments", "twins/greenhouse-az/refresh", "twins/greenhouse-az/tokens/rotate")


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    with api_engine(tmp_path_factory.mktemp("bodies")) as running:
        yield running


def _post(engine: Engine, route: str, raw: bytes, content_type: str = "application/json") -> tuple[int, Any, bytes]:
    reply = http("POST", f"{engine.base}/api/{route}", raw=raw,
                 headers={"x-functions-key": KEY, "Content-Type": content_type})
    body = json.loads(reply.body) if reply.body[:1] == b"{" else None
    return reply.status, body, reply.body


def _assert_errors(status: int, body: Any, expected_status: int, fragment: str) -> None:
    assert status == expected_status, (status, body)
    messages = " | ".join(e["message"] for e in body["errors"])
    assert fragment in messages, messages


@pytest.mark.parametrize("route", BODY_ROUTES)
@pytest.mark.parametrize(("label", "raw", "fragment"), [
    ("nested 2,000 deep", b"[" * 2000 + b"]" * 2000, "nests too deeply"),
    ("nested objects 150 deep", b'{"a":' * 150 + b"1" + b"}" * 150, "nests too deeply"),
    ("5,000-digit integer", b'{"twin": {"hot_storage_days": ' + b"9" * 5000 + b"}}", "digits"),
    ("1e999", b'{"grace_seconds": 1e999}', "too large"),
    ("NaN", b'{"grace_seconds": NaN}', "NaN"),
    ("Infinity", b'{"grace_seconds": -Infinity}', "Infinity"),
    ("duplicate keys", b'{"resources": [], "resources": ["x"]}', "duplicate key 'resources'"),
    ("UTF-16", json.dumps({"resources": []}).encode("utf-16"), "UTF-8"),
    ("Latin-1", '{"resources": ["caf\u00e9"]}'.encode("latin-1"), "UTF-8"),
    ("lone surrogate", b'{"resources": ["\\ud800"]}', "surrogate"),
])
def test_hostile_json_gets_400_with_errors(engine: Engine, route: str, label: str, raw: bytes, fragment: str) -> None:
    status, body, _ = _post(engine, route, raw)
    _assert_errors(status, body, 400, fragment)


@pytest.mark.parametrize("route", BODY_ROUTES)
def test_bodies_must_be_json_in_utf8(engine: Engine, route: str) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/json; charset=utf-16"):
        status, body, _ = _post(engine, route, b"{}", content_type)
        assert status == 415, (content_type, status, body)
        assert body["errors"][0]["message"]


@pytest.mark.parametrize("route", BODY_ROUTES)
def test_bodies_over_the_limit_get_413(engine: Engine, route: str) -> None:
    raw = json.dumps({"twin": {"name": "x" * MAX_DOCUMENT_BYTES}}).encode()
    status, body, answer = _post(engine, route, raw)
    _assert_errors(status, body, 413, f"{MAX_DOCUMENT_BYTES:,} bytes")
    assert len(answer) < 1000


def test_a_huge_value_is_quoted_by_a_short_prefix_only(engine: Engine) -> None:
    """A 3 MB twin name broke 24 rules and each message quoted it whole (350 MB answers)."""
    huge_key = {"clouds": {"azure": {"x" * 3_000_000: 1}}, "twin": {"name": "ok", "x" * 3_000_000: 1}}
    for route in ("plan", "deployments"):
        for extra in huge_key.values():
            spec = {**copy.deepcopy(BASE), **({"clouds": extra} if "azure" in extra else {})}
            if "azure" not in extra:
                spec["twin"] = extra
            status, _, answer = _post(engine, route, json.dumps(spec).encode())
            assert status == 400 and len(answer) < 20_000, (route, status, len(answer), answer[:300])
    for path in ("twin.name", "devices.0.id", "devices.0.properties.0.name", "events"):
        spec = copy.deepcopy(BASE)
        node: Any = spec
        keys = path.split(".")
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[keys[-1]] = ("Bad_" + "x" * 3_000_000) if path != "events" else [{"condition": "x" * 3_000_000,
                                                                                "action": {"type": "lambda",
                                                                                           "functionName": "f"}}]
        for route in ("plan", "deployments"):
            status, body, answer = _post(engine, route, json.dumps(spec).encode())
            assert status == 400, (path, status)
            assert len(answer) < 20_000, (path, route, len(answer), answer[:300])


def test_many_problems_are_listed_up_to_a_limit(engine: Engine) -> None:
    spec = copy.deepcopy(BASE)
    spec["devices"] = [{"id": f"bad id {i}", "properties": [{"name": "t", "dataType": "DOUBLE"}]} for i in range(500)]
    status, body, _ = _post(engine, "plan", json.dumps(spec).encode())
    assert status == 400 and len(body["errors"]) == 101
    assert "more problems not listed" in body["errors"][-1]["message"]


def test_validating_a_large_spec_does_not_block_other_requests(engine: Engine) -> None:
    """Validating a spec near the body limit takes a while (POST /api/deployments is an async
    function, run on the host's event loop): other requests are served meanwhile. Light requests
    are sent one after another while the heavy one runs; with validation on the event loop they
    would all wait for it, so at most one could finish before it."""
    spec = copy.deepcopy(BASE)
    device = spec["devices"][0]
    spec["devices"] = [dict(copy.deepcopy(device), id=f"dev-{i}") for i in range(15_000)]
    spec["devices"].append(copy.deepcopy(spec["devices"][0]))  # invalid at the very end: nothing starts
    raw = json.dumps(spec).encode()
    assert len(raw) < MAX_DOCUMENT_BYTES
    heavy: dict[str, Any] = {}

    def send_heavy() -> None:
        heavy["status"] = _post(engine, "deployments", raw)[0]
        heavy["done"] = time.monotonic()

    thread = threading.Thread(target=send_heavy)
    thread.start()
    time.sleep(0.05)  # the heavy request is on its way
    answered: list[tuple[float, int]] = []  # (when it finished, status)
    while thread.is_alive() and len(answered) < 200:
        reply = http("GET", f"{engine.base}/api/twins/nobody", headers={"x-functions-key": KEY})
        answered.append((time.monotonic(), reply.status))
    thread.join(120)
    assert heavy["status"] == 400
    assert {status for _, status in answered} <= {404}
    during = [t for t, _ in answered if t < heavy["done"]]
    assert len(during) >= 3, f"only {len(during)} light request(s) finished while the heavy one ran"


def test_two_simultaneous_deployments_of_an_idle_twin_get_one_202_and_one_409(engine: Engine) -> None:
    engine.configure({"default": {"delay": 0.3}})
    try:
        for round_ in range(3):
            spec = copy.deepcopy(BASE)
            spec["twin"]["name"] = f"race{round_}"
            raw = json.dumps(spec).encode()
            statuses: list[int] = []
            barrier = threading.Barrier(2)

            def post(raw: bytes = raw, barrier: threading.Barrier = barrier, statuses: list[int] = statuses) -> None:
                barrier.wait()
                statuses.append(_post(engine, "deployments", raw)[0])

            threads = [threading.Thread(target=post) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert sorted(statuses) == [202, 409], (round_, statuses)
    finally:
        engine.configure({})


def test_delete_during_the_first_deployment_is_409_not_404(engine: Engine) -> None:
    engine.configure({"default": {"delay": 0.5}})
    try:
        spec = copy.deepcopy(BASE)
        spec["twin"]["name"] = "first-deploy"
        status, body, _ = _post(engine, "deployments", json.dumps(spec).encode())
        assert status == 202, body
        reply = http("DELETE", f"{engine.base}/api/twins/first-deploy", headers={"x-functions-key": KEY})
        assert reply.status == 409, (reply.status, reply.body)
        assert body["id"] in reply.json()["errors"][0]["message"]
        engine.wait(body["id"], timeout=120)
    finally:
        engine.configure({})
