"""What every REST API of the GCP sandbox shares: Google's error shape, route labels, strict
request parsing through the installed proto types, timestamps and identity tokens.

Google's REST clients map an error by HTTP status alone (404 -> NotFound, 409 -> Conflict, 429 ->
TooManyRequests, ...) and read `error.message`; the body is `{"error": {"code", "message",
"status"}}`. Request bodies are parsed with the proto message the client serialised from
(`ignore_unknown_fields=False`), so an unknown field is a 400 naming it, and integer enums (what
GAPIC REST clients send) become their names: the stored JSON is what the service would answer.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from sandbox.core.http import json_response

log = logging.getLogger("sandbox.gcp")

PROJECT_ID = "twin-sandbox"
PROJECT_NUMBER = "100000000001"
DEFAULT_REGION = "us-central1"
# The default service account every Cloud Functions / Cloud Run revision runs as when none is
# given; on a new project it holds roles/editor (which includes run.routes.invoke).
DEFAULT_COMPUTE_SA = f"{PROJECT_NUMBER}-compute@developer.gserviceaccount.com"

# google.rpc.Code: (number, HTTP status) by name.
RPC_CODES: dict[str, tuple[int, int]] = {
    "OK": (0, 200),
    "CANCELLED": (1, 499),
    "UNKNOWN": (2, 500),
    "INVALID_ARGUMENT": (3, 400),
    "DEADLINE_EXCEEDED": (4, 504),
    "NOT_FOUND": (5, 404),
    "ALREADY_EXISTS": (6, 409),
    "PERMISSION_DENIED": (7, 403),
    "RESOURCE_EXHAUSTED": (8, 429),
    "FAILED_PRECONDITION": (9, 400),
    "ABORTED": (10, 409),
    "OUT_OF_RANGE": (11, 400),
    "UNIMPLEMENTED": (12, 501),
    "INTERNAL": (13, 500),
    "UNAVAILABLE": (14, 503),
    "DATA_LOSS": (15, 500),
    "UNAUTHENTICATED": (16, 401),
}


class GoogleError(Exception):
    """A failed call, by google.rpc.Code name: `GoogleError("NOT_FOUND", "Function x not found")`."""

    def __init__(self, status: str, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        if status not in RPC_CODES:
            raise ValueError(f"unknown google.rpc.Code {status!r}")
        self.status = status
        self.message = message
        self.code = RPC_CODES[status][0]
        self.http_status = http_status or RPC_CODES[status][1]

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.http_status, "message": self.message, "status": self.status}}

    def rpc_status(self) -> dict[str, Any]:
        """As a google.rpc.Status (the `error` of a failed long-running operation)."""
        return {"code": self.code, "message": self.message}


def error_response(error: GoogleError) -> web.Response:
    return json_response(error.body(), error.http_status)


def fault_response(request: web.Request, status: int, retry_after: int) -> web.StreamResponse:
    """An injected 429/503 as Google answers it (the clients retry these by HTTP status)."""
    if status == 429:
        err = GoogleError("RESOURCE_EXHAUSTED", "Quota exceeded: too many requests. Retry later.")
    else:
        err = GoogleError("UNAVAILABLE", "The service is currently unavailable.")
    response = error_response(err)
    if retry_after:
        response.headers["Retry-After"] = str(retry_after)
    return response


# --- routes: each handler knows its operation name and whether it changes state -------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def api(operation: str, mutating: bool) -> Callable[[Handler], Handler]:
    """Mark a REST handler with its request-log label and turn GoogleError into Google's shape.

    The label is read by `classify` (also for a call refused by an injected fault before any
    handler ran), so every GCP call in the request log names its operation.
    """

    def wrap(handler: Handler) -> Handler:
        async def run(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except GoogleError as exc:
                return error_response(exc)
            except Exception:
                log.exception("GCP sandbox failed on %s %s", request.method, request.path)
                return error_response(GoogleError("INTERNAL", f"{request.method} {request.path} failed in the sandbox."))

        run.gcp_operation = operation  # type: ignore[attr-defined]
        run.gcp_mutating = mutating  # type: ignore[attr-defined]
        run.__name__ = getattr(handler, "__name__", "handler")
        return run

    return wrap


def classify(request: web.Request) -> tuple[str | None, bool | None]:
    handler = getattr(request.match_info, "handler", None)
    return getattr(handler, "gcp_operation", None), getattr(handler, "gcp_mutating", None)


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object (an empty body is `{}`); 400 otherwise."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise GoogleError("INVALID_ARGUMENT", f"Invalid JSON payload received. {exc}") from exc
    if not isinstance(body, dict):
        raise GoogleError("INVALID_ARGUMENT", "Invalid JSON payload received. Expected an object at the top level.")
    return body


def parse_message(message_cls: Any, body: Any, path: str) -> dict[str, Any]:
    """Validate `body` against a proto-plus or protobuf message class; return it as canonical JSON
    (camelCase, enums by name). A field the API does not have is a 400 naming `path`."""
    from google.protobuf import json_format

    try:
        if hasattr(message_cls, "pb"):  # proto-plus
            pb = message_cls.pb(message_cls.from_json(json.dumps(body), ignore_unknown_fields=False))
        else:
            pb = json_format.Parse(json.dumps(body), message_cls(), ignore_unknown_fields=False)
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise GoogleError("INVALID_ARGUMENT", f"Invalid JSON payload received at '{path}': {exc}") from exc
    return message_json(pb)


def message_json(pb: Any) -> dict[str, Any]:
    from google.protobuf import json_format

    out: dict[str, Any] = json_format.MessageToDict(pb, preserving_proto_field_name=False)
    return out


def update_mask(request: web.Request, body_mask: str | None = None) -> list[str] | None:
    """The `updateMask` paths (query or body), or None when none was given."""
    raw = request.query.get("updateMask", body_mask)
    if raw is None or raw == "":
        return None
    return [p.strip() for p in raw.split(",") if p.strip()]


def apply_mask(target: dict[str, Any], patch: dict[str, Any], paths: list[str] | None) -> dict[str, Any]:
    """`target` with `patch` applied: each mask path copied (absent in `patch` = cleared), or with no
    mask every field `patch` has (maps and lists replaced, messages merged)."""
    out = json.loads(json.dumps(target))
    if paths is None:
        _merge(out, patch)
        return out
    for path in paths:
        parts = path.split(".")
        src: Any = patch
        for part in parts:
            src = src.get(part) if isinstance(src, dict) else None
        dst = out
        for part in parts[:-1]:
            dst = dst.setdefault(part, {})
        if src is None:
            dst.pop(parts[-1], None)
        else:
            dst[parts[-1]] = json.loads(json.dumps(src))
    return out


def _merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict) and not _is_map_field(key):
            _merge(dst[key], value)
        else:
            dst[key] = json.loads(json.dumps(value))


def _is_map_field(key: str) -> bool:
    # Map fields are replaced whole by an update, as the API does.
    return key in {"environmentVariables", "labels", "headers", "attributes", "buildEnvironmentVariables"}


def now_rfc3339(moment: float | None = None) -> str:
    t = datetime.fromtimestamp(time.time() if moment is None else moment, UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def identity_token(email: str, audience: str) -> str:
    """An unsigned Google-style OIDC ID token (`alg: none`) naming `email`, for `audience`: what
    Pub/Sub push, Eventarc and Cloud Scheduler attach, and what the sandbox's Cloud Run front door
    reads to apply `roles/run.invoker`."""
    now = int(time.time())
    header = {"alg": "none", "typ": "JWT"}
    claims = {"iss": "https://accounts.google.com", "aud": audience, "email": email, "email_verified": True,
              "sub": email, "iat": now, "exp": now + 3600}

    def enc(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).rstrip(b"=").decode()

    return f"{enc(header)}.{enc(claims)}."


def token_email(authorization: str) -> str | None:
    """The `email` of an unexpired ID token in an `Authorization: Bearer` header, else None."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    parts = token.strip().split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(claims, dict) or not isinstance(claims.get("email"), str):
        return None
    exp = claims.get("exp")
    if isinstance(exp, int | float) and exp < time.time():
        return None
    return str(claims["email"])


def duration_seconds(text: str | None, default: float) -> float:
    """A protobuf Duration in JSON (`"10s"`, `"0.5s"`) in seconds."""
    if not text:
        return default
    try:
        return float(str(text).rstrip("s"))
    except ValueError:
        return default


def page(items: list[Any], request: web.Request, default_size: int = 100) -> tuple[list[Any], str]:
    """One page of `items` by `pageSize` / `pageToken` (an offset here); the next token or ''."""
    try:
        size = int(request.query.get("pageSize") or default_size)
        start = int(request.query.get("pageToken") or 0)
    except ValueError as exc:
        raise GoogleError("INVALID_ARGUMENT", "pageSize and pageToken must be integers") from exc
    size = max(1, min(size, 1000))
    chunk = items[start : start + size]
    return chunk, str(start + size) if start + size < len(items) else ""
