"""The HTTP API's one way of reading requests and writing answers, and `POST /api/plan`.

Every route of the control plane (DESIGN.md section 6) is auth level FUNCTION and speaks JSON.
Bodies are read by `read_json_body` only: `Content-Type: application/json` (415 otherwise), at
most `MAX_DOCUMENT_BYTES` (413), then `shared.loaders.parse_json_document`, the same strict
reading the CLI applies to files (UTF-8, no NaN/Infinity, no duplicate keys, nesting and number
limits). Every 4xx answers `{"errors": [{"path", "message"}, ...]}`, at most `MAX_PROBLEMS_SHOWN`
entries, each quoting at most a short prefix of a value.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from shared.loaders import MAX_DOCUMENT_BYTES, DocumentError, parse_json_document, spec_from_dict
from shared.plan import build_plan
from shared.validation import Problem, SpecError

bp = df.Blueprint()

JSON_TYPE = "application/json"
MAX_PROBLEMS_SHOWN = 100
"""A 400 lists at most this many problems (the last entry says how many more there are)."""


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype=JSON_TYPE, headers=headers)


def errors_response(problems: Iterable[Problem], status: int = 400) -> func.HttpResponse:
    """`{"errors": [...]}`; beyond `MAX_PROBLEMS_SHOWN` problems one entry counts the rest."""
    listed = list(problems) or [Problem("", "the request is invalid")]
    shown = [p.to_json() for p in listed[:MAX_PROBLEMS_SHOWN]]
    if len(listed) > MAX_PROBLEMS_SHOWN:
        shown.append({"path": "", "message": f"and {len(listed) - MAX_PROBLEMS_SHOWN} more problems not listed; "
                                             "fix these first"})
    return json_response({"errors": shown}, status)


def error(status: int, path: str, message: str) -> func.HttpResponse:
    return errors_response([Problem(path, message)], status)


def _json_content_type(value: str) -> str | None:
    """Why `value` is not a JSON content type in UTF-8, or None when it is."""
    media, _, params = value.partition(";")
    media = media.strip().lower()
    if media != JSON_TYPE and not (media.startswith("application/") and media.endswith("+json")):
        shown = media[:60] or "none"
        return f"the request body must be sent as {JSON_TYPE} (Content-Type was {shown})"
    for param in params.split(";"):
        name, _, charset = param.partition("=")
        if name.strip().lower() == "charset" and charset.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return "the request body must be UTF-8 (charset=utf-8 or no charset)"
    return None


def read_json_body(req: func.HttpRequest, *, required: bool,
                   what: str = "the request body") -> tuple[Any, func.HttpResponse | None]:
    """The body as strict JSON, or the 400/413/415 answer saying why not. An absent optional
    body is `None`. Call it off the event loop (`asyncio.to_thread`) from async routes: parsing
    a 4 MiB body takes tens of milliseconds."""
    raw = req.get_body() or b""
    if not raw:
        if required:
            return None, error(400, "", f"{what} is empty; send it as JSON")
        return None, None
    if len(raw) > MAX_DOCUMENT_BYTES:
        return None, error(413, "", f"{what} is {len(raw):,} bytes; the limit is {MAX_DOCUMENT_BYTES:,} bytes")
    problem = _json_content_type(req.headers.get("content-type") or "")
    if problem is not None:
        return None, error(415, "", problem)
    try:
        return parse_json_document(raw, what=what), None
    except DocumentError as exc:
        return None, errors_response(exc.problems, 413 if exc.too_large else 400)


def plan_for_body(req: func.HttpRequest) -> func.HttpResponse:
    """`POST /api/plan`: the plan document for the spec in the body; no side effects."""
    data, answer = read_json_body(req, required=True, what="the deployment spec")
    if answer is not None:
        return answer
    try:
        plan = build_plan(spec_from_dict(data))
    except SpecError as exc:
        return errors_response(exc.problems)
    return json_response(plan.to_json())


# A plain (not async) function: the worker runs it on its thread pool, so validating a large
# spec never blocks the event loop other requests are served on.
@bp.function_name("plan")
@bp.route(route="plan", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def plan_http(req: func.HttpRequest) -> func.HttpResponse:
    return plan_for_body(req)
