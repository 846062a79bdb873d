"""`POST /api/plan` through the registered function itself (no host)."""

from __future__ import annotations

import json
from collections.abc import Callable

import azure.durable_functions as df
import azure.functions as func
import pytest
from plan_specs import spec_dict

from control_plane.api import bp
from shared.loaders import spec_from_dict
from shared.plan import build_plan

Handler = Callable[[func.HttpRequest], func.HttpResponse]


@pytest.fixture(scope="module")
def plan_function() -> tuple[Handler, dict]:
    # get_functions() may run once per app; index the blueprint in a private app once per module.
    app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
    app.register_functions(bp)
    functions = {f.get_function_name(): f for f in app.get_functions()}
    fn = functions["plan"]
    return fn.get_user_function(), json.loads(fn.get_function_json())


def post(handler: Handler, body: bytes | str) -> func.HttpResponse:
    raw = body.encode() if isinstance(body, str) else body
    req = func.HttpRequest(method="POST", url="https://localhost/api/plan", headers={"Content-Type": "application/json"},
                           params={}, route_params={}, body=raw)
    return handler(req)


def test_binding_is_post_plan_with_function_auth(plan_function: tuple[Handler, dict]) -> None:
    _, function_json = plan_function
    trigger = next(b for b in function_json["bindings"] if b["type"] == "httpTrigger")
    assert trigger["route"] == "plan"
    assert trigger["methods"] == ["POST"]
    assert trigger["authLevel"] == "FUNCTION"


def test_valid_spec_answers_the_plan_document(plan_function: tuple[Handler, dict]) -> None:
    handler, _ = plan_function
    data = spec_dict(("aws", "aws", "aws", "aws", "aws", "azure", "azure"))
    resp = post(handler, json.dumps(data))
    assert resp.status_code == 200
    assert resp.mimetype == "application/json"
    body = json.loads(resp.get_body())
    assert body == build_plan(spec_from_dict(data)).to_json()
    assert "REMOTE_ADT_PUSHER_URL" in {w["setting"] for w in body["wires"]}


def test_plan_has_no_secret_values(plan_function: tuple[Handler, dict]) -> None:
    handler, _ = plan_function
    body = json.loads(post(handler, json.dumps(spec_dict())).get_body())
    # Outputs are names only; the response never carries a value for any of them.
    assert all(set(o) == {"name", "producer", "secret"} for o in body["outputs"])


@pytest.mark.parametrize(
    ("body", "path", "fragment"),
    [
        ("", "", "empty"),
        ("{not json", "", "not valid JSON"),
        (b"\xff\xfe\x00", "", "not"),
        ("[]", "", ""),
        ("null", "", ""),
    ],
)
def test_unusable_body_is_400(plan_function: tuple[Handler, dict], body: str | bytes, path: str, fragment: str) -> None:
    handler, _ = plan_function
    resp = post(handler, body)
    assert resp.status_code == 400
    errors = json.loads(resp.get_body())["errors"]
    assert errors and all(set(e) == {"path", "message"} for e in errors)
    assert errors[0]["path"] == path
    assert fragment in errors[0]["message"]


def test_invalid_spec_lists_every_problem(plan_function: tuple[Handler, dict]) -> None:
    handler, _ = plan_function
    data = spec_dict()
    data["providers"]["layer_5_provider"] = "gcp"
    data["providers"]["layer_2_provider"] = "oracle"
    data["devices"].append(dict(data["devices"][0]))
    resp = post(handler, json.dumps(data))
    assert resp.status_code == 400
    errors = json.loads(resp.get_body())["errors"]
    paths = {e["path"] for e in errors}
    assert "providers.layer_2_provider" in paths
    assert all(e["message"] for e in errors)


def test_semantic_problems_are_all_reported(plan_function: tuple[Handler, dict]) -> None:
    handler, _ = plan_function
    data = spec_dict()
    data["providers"]["layer_5_provider"] = "google"
    data["devices"].append(dict(data["devices"][0]))
    resp = post(handler, json.dumps(data))
    assert resp.status_code == 400
    paths = [e["path"] for e in json.loads(resp.get_body())["errors"]]
    assert "providers.layer_5_provider" in paths
    assert any(p.startswith("devices[2]") for p in paths), paths
