"""Provider-neutral request/response for payload functions, and the error boundary.

Adapters turn `func.HttpRequest` / Lambda Function URL events into `Request` and `Response`
back; `answer` makes every failure a JSON `{"error": ...}` with a status, never a traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from payload_functions.common.errors import BadRequest, PayloadError

log = logging.getLogger("payload_functions")


@dataclass(frozen=True)
class Request:
    method: str = "POST"
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    query: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        if not self.body:
            raise BadRequest("body: expected a JSON document, got an empty body")
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"body: not valid JSON ({exc})") from None


@dataclass(frozen=True)
class Response:
    status: int
    body: Any

    def text(self) -> str:
        return json.dumps(self.body, separators=(",", ":"), sort_keys=True, default=str)


def failure(function: str, exc: BaseException) -> Response:
    if isinstance(exc, PayloadError):
        level = logging.ERROR if exc.status >= 500 else logging.WARNING
        log.log(level, "%s: %s (%s)", function, exc.message, exc.status)
        return Response(exc.status, {"error": exc.message})
    # Unexpected: log the type only; SDK messages can echo request details.
    log.error("%s: unexpected %s", function, type(exc).__name__)
    return Response(500, {"error": f"{function} failed unexpectedly ({type(exc).__name__})"})


def answer(function: str, work: Callable[[], Any], status: int = 200) -> Response:
    """Run `work` and wrap its result (a JSON-able body) or its failure."""
    try:
        return Response(status, work())
    except Exception as exc:  # the boundary: every failure becomes a JSON answer
        return failure(function, exc)
