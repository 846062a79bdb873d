"""JSON POST between functions and clouds, retrying only what can succeed on a retry.

429 and 5xx answers and connection failures are retried (bounded count, exponential backoff,
`Retry-After` honoured up to a cap); any other 4xx is final. Receivers are idempotent (storage
keys are `device_id` + `timestamp`), so a retried POST that had in fact landed does no harm.
Error text names the URL without its query string and never the token.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from payload_functions.common.errors import UpstreamError
from shared.contracts import INTER_CLOUD_TOKEN_HEADER

DEFAULT_RETRIES = 3
DEFAULT_BASE_DELAY = 0.5
DEFAULT_TIMEOUT = 30.0
MAX_DELAY = 10.0


@dataclass(frozen=True)
class HttpResult:
    status: int
    body: Any


class PostFailed(UpstreamError):
    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.upstream_status = status


def safe_url(url: str) -> str:
    """The URL without query or fragment (a function key may ride in `?code=`)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def post_json(
    url: str,
    body: Any,
    *,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
    retries: int = DEFAULT_RETRIES,
    base_delay: float = DEFAULT_BASE_DELAY,
    timeout: float = DEFAULT_TIMEOUT,
    sleep: Callable[[float], None] = time.sleep,
    retry_on: Callable[[int], bool] = _retryable,
) -> HttpResult:
    """POST `body` as JSON; return the 2xx answer or raise PostFailed after the retries.
    `retry_on` says which answers are retried (default: 429 and 5xx)."""
    data = json.dumps(body, separators=(",", ":")).encode("utf-8")
    all_headers = {"Content-Type": "application/json", "Accept": "application/json", **(headers or {})}
    if token is not None:
        all_headers[INTER_CLOUD_TOKEN_HEADER] = token
    # The default context honours SSL_CERT_FILE, which is how a local CA is trusted in tests.
    context = ssl.create_default_context() if url.lower().startswith("https") else None
    shown = safe_url(url)
    attempt = 0
    while True:
        attempt += 1
        request = urllib.request.Request(url, data=data, headers=all_headers, method="POST")
        delay = min(MAX_DELAY, base_delay * (2 ** (attempt - 1)))
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
                return HttpResult(response.status, _decode(response.read()))
        except urllib.error.HTTPError as exc:
            status = exc.code
            detail = _decode(exc.read())
            if not retry_on(status) or attempt > retries:
                summary = detail.get("error") if isinstance(detail, dict) else None
                extra = f": {summary}" if isinstance(summary, str) else ""
                raise PostFailed(f"POST {shown} answered {status} after {attempt} attempt(s){extra}", status) from None
            hinted = _retry_after(exc.headers.get("Retry-After"))
            delay = min(MAX_DELAY, hinted if hinted is not None else delay)
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            if attempt > retries:
                reason = getattr(exc, "reason", exc)
                raise PostFailed(f"POST {shown} failed after {attempt} attempt(s): {reason}", None) from None
        sleep(delay)
