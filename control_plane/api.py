"""The HTTP API's one way of reading requests and writing answers, and `POST /api/plan`.

Every route of the control plane (DESIGN.md section 6) is auth level FUNCTION and speaks JSON.
Bodies are read by `read_body` only: `Content-Type: application/json` (415 otherwise), at most
`MAX_DOCUMENT_BYTES` (413), then `shared.loaders.parse_json_document`, the same strict reading
the CLI applies to files (UTF-8, no NaN/Infinity, no duplicate keys, nesting and number limits).
The spec routes also take a deployment bundle (`application/zip`: the spec with the users' code
beside it): at most `MAX_BUNDLE_BYTES` (413), then `shared.bundle.open_bundle` (entries, sizes,
Python syntax; 400 / 413 with each problem's file). Every 4xx answers `{"errors": [{"path",
"message"}, ...]}`, at most `MAX_PROBLEMS_SHOWN` entries, each quoting at most a short prefix of a
value.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from shared.bundle import BUNDLE_TYPE, MAX_BUNDLE_BYTES, Bundle, BundleError, open_bundle
from shared.loaders import MAX_DOCUMENT_BYTES, DocumentError, parse_json_document, spec_problems
from shared.plan import Plan, build_plan
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


def _media_type(value: str) -> str:
    return value.partition(";")[0].strip().lower()


def _json_content_type(value: str, also: str = "") -> str | None:
    """Why `value` is not a JSON content type in UTF-8, or None when it is."""
    media, _, params = value.partition(";")
    media = media.strip().lower()
    if media != JSON_TYPE and not (media.startswith("application/") and media.endswith("+json")):
        shown = media[:60] or "none"
        return f"the request body must be sent as {JSON_TYPE}{also} (Content-Type was {shown})"
    for param in params.split(";"):
        name, _, charset = param.partition("=")
        if name.strip().lower() == "charset" and charset.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return "the request body must be UTF-8 (charset=utf-8 or no charset)"
    return None


@dataclass
class Body:
    """A request body as read: a JSON value (`data`), or a deployment bundle (`bundle`)."""

    data: Any = None
    bundle: Bundle | None = None


def read_body(req: func.HttpRequest, *, required: bool, what: str = "the request body",
              bundles: bool = False) -> tuple[Body, func.HttpResponse | None]:
    """The body as strict JSON, or (`bundles`) as a checked deployment bundle when it is sent as
    `application/zip`; or the 400/413/415 answer saying why not. An absent optional body is an
    empty `Body`. Call it off the event loop (`asyncio.to_thread`) from async routes: parsing a
    4 MiB body takes tens of milliseconds, checking a bundle's Python more."""
    raw = req.get_body() or b""
    if not raw:
        if required:
            return Body(), error(400, "", f"{what} is empty; send it as JSON"
                                          f"{f' or as a bundle ({BUNDLE_TYPE})' if bundles else ''}")
        return Body(), None
    content_type = req.headers.get("content-type") or ""
    if bundles and _media_type(content_type) == BUNDLE_TYPE:
        if len(raw) > MAX_BUNDLE_BYTES:
            return Body(), error(413, "", f"the bundle is {len(raw):,} bytes; the limit is {MAX_BUNDLE_BYTES:,} bytes")
        try:
            return Body(bundle=open_bundle(raw)), None
        except BundleError as exc:
            return Body(), errors_response(exc.problems, 413 if exc.too_large else 400)
        except SpecError as exc:
            return Body(), errors_response(exc.problems)
    if len(raw) > MAX_DOCUMENT_BYTES:
        return Body(), error(413, "", f"{what} is {len(raw):,} bytes; the limit is {MAX_DOCUMENT_BYTES:,} bytes")
    problem = _json_content_type(content_type, f" or {BUNDLE_TYPE}" if bundles else "")
    if problem is not None:
        return Body(), error(415, "", problem)
    try:
        return Body(data=parse_json_document(raw, what=what)), None
    except DocumentError as exc:
        return Body(), errors_response(exc.problems, 413 if exc.too_large else 400)


def read_json_body(req: func.HttpRequest, *, required: bool,
                   what: str = "the request body") -> tuple[Any, func.HttpResponse | None]:
    """`read_body` for routes that take JSON only: the parsed value (None when absent)."""
    body, answer = read_body(req, required=required, what=what)
    return body.data, answer


def plan_of_body(body: Body) -> tuple[Plan | None, func.HttpResponse | None]:
    """The plan of a spec body (JSON or bundle: a bundle's code is planned with it), or the 400."""
    if body.bundle is not None:
        spec, code = body.bundle.spec, body.bundle.code
    else:
        found, problems = spec_problems(body.data)
        if found is None or problems:
            return None, errors_response(problems)
        spec, code = found, None
    try:
        return build_plan(spec, code), None
    except SpecError as exc:
        return None, errors_response(exc.problems)


def plan_for_body(req: func.HttpRequest) -> func.HttpResponse:
    """`POST /api/plan`: the plan document for the spec (or bundle) in the body; no side effects
    (a bundle is checked and planned, not stored)."""
    body, answer = read_body(req, required=True, what="the deployment spec", bundles=True)
    if answer is not None:
        return answer
    plan, answer = plan_of_body(body)
    if answer is not None or plan is None:
        return answer or error(400, "", "the deployment spec is invalid")
    return json_response(plan.to_json())


# A plain (not async) function: the worker runs it on its thread pool, so validating a large
# spec never blocks the event loop other requests are served on.
@bp.function_name("plan")
@bp.route(route="plan", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def plan_http(req: func.HttpRequest) -> func.HttpResponse:
    return plan_for_body(req)
