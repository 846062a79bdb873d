"""The control plane's HTTP API (DESIGN.md section 6), as a Durable Functions blueprint.

`function_app.py` registers `bp`. Every route is auth level FUNCTION on Azure and speaks JSON.
Invalid input answers 400 with `{"errors": [{"path", "message"}, ...]}` listing every problem.
"""

from __future__ import annotations

import json
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from shared.loaders import spec_from_dict
from shared.plan import build_plan
from shared.validation import Problem, SpecError

bp = df.Blueprint()

JSON_TYPE = "application/json"


def json_response(body: Any, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype=JSON_TYPE)


def errors_response(problems: list[Problem], status: int = 400) -> func.HttpResponse:
    return json_response({"errors": [p.to_json() for p in problems]}, status)


def read_json_body(req: func.HttpRequest) -> tuple[Any, list[Problem]]:
    """The request body as JSON, or a problem saying why it is not."""
    raw = req.get_body()
    if not raw:
        return None, [Problem("", "the request body is empty; send the deployment spec as JSON")]
    try:
        return json.loads(raw), []
    except UnicodeDecodeError:
        return None, [Problem("", "the request body is not UTF-8 text; send the deployment spec as JSON")]
    except json.JSONDecodeError as exc:
        return None, [Problem("", f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")]


def plan_for_body(req: func.HttpRequest) -> func.HttpResponse:
    """`POST /api/plan`: the plan document for the spec in the body; no side effects."""
    data, problems = read_json_body(req)
    if problems:
        return errors_response(problems)
    try:
        plan = build_plan(spec_from_dict(data))
    except SpecError as exc:
        return errors_response(exc.problems)
    return json_response(plan.to_json())


@bp.function_name("plan")
@bp.route(route="plan", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def plan_http(req: func.HttpRequest) -> func.HttpResponse:
    return plan_for_body(req)
