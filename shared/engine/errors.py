"""Error classification that survives the activity boundary.

Durable's Python SDK hands an activity failure to the orchestrator as a plain `Exception` whose
text is the host's `Reason` ("Activity function 'X' failed: ..."). So the classification travels
in the text: `[transient] ...` (429, 503, timeouts, eventual consistency: retry with backoff) or
`[permanent] ...` (bad configuration, missing permission: fail fast with an actionable message).
`encode` writes that marker, `decode` reads it back on the orchestrator side.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

TRANSIENT = "transient"
PERMANENT = "permanent"

_MARKER = re.compile(r"\[(transient|permanent)\]\s*(.*)", re.DOTALL)
# Credentials that may appear inside SDK error text (URLs with keys, connection strings, bearer tokens).
_SECRET_PATTERNS = (
    re.compile(r"(?i)((?:code|sig|key|token|secret|password)=)[^&\s;\"']+"),
    re.compile(r"(?i)(AccountKey=|SharedAccessKey=)[^;\s\"']+"),
    re.compile(r"(?i)(Bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)(x-inter-cloud-token[\"']?\s*[:=]\s*[\"']?)[^\"'\s,}]+"),
)
REDACTED = "***"
# A 409 is usually "another operation is in progress" (retry), except a globally taken name.
_NAME_TAKEN = re.compile(r"(?i)AlreadyTaken|NameNotAvailable|NameUnavailable")

_TRANSIENT_HTTP = {408, 409, 423, 425, 429, 500, 502, 503, 504}
_TRANSIENT_AWS_CODES = {
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "ResourceConflictException",  # Lambda: an update is still in progress
    "ResourceInUseException",
    "OperationAborted",
    "SlowDown",
}


class ProviderError(Exception):
    """Base of the classified errors a provider raises (message must be safe to show)."""

    kind = PERMANENT


class TransientError(ProviderError):
    """Retry later: throttling, a busy service, or a change that has not propagated yet."""

    kind = TRANSIENT


class PermanentError(ProviderError):
    """Do not retry: a person has to change the spec, a permission or a quota."""

    kind = PERMANENT


@dataclass(frozen=True)
class Failure:
    """A decoded activity failure, as the orchestrator sees it."""

    kind: str
    message: str

    @property
    def transient(self) -> bool:
        return self.kind == TRANSIENT


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every known secret value and every credential-looking fragment replaced."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text


def classify(exc: BaseException) -> ProviderError:
    """Map any exception (ours, azure-core, botocore, google-api-core, socket) to a classified
    provider error."""
    if isinstance(exc, ProviderError):
        return exc
    status = _http_status(exc) or _google_status(exc)
    name = type(exc).__name__
    aws_code = _aws_code(exc)
    text = str(exc).strip() or name
    if aws_code is not None:
        if aws_code in _TRANSIENT_AWS_CODES or (status is not None and status >= 500) or status == 429:
            return TransientError(f"AWS {aws_code}: {text}")
        return PermanentError(f"AWS {aws_code}: {text}{_hint(status)}")
    if status is not None:
        if status == 409 and _NAME_TAKEN.search(text):
            return PermanentError(f"HTTP 409: {text} (the name is taken: choose another twin name)")
        if status in _TRANSIENT_HTTP:
            return TransientError(f"HTTP {status}: {text}")
        return PermanentError(f"HTTP {status}: {text}{_hint(status)}")
    if isinstance(exc, TimeoutError | ConnectionError) or name in {
        "ServiceRequestError",
        "ServiceResponseError",
        "ServiceRequestTimeoutError",
        "ServiceResponseTimeoutError",
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionClosedError",
    }:
        return TransientError(f"{name}: {text}")
    return PermanentError(f"{name}: {text}")


def encode(error: ProviderError, resource_id: str = "", secrets: Iterable[str] = ()) -> str:
    """The activity failure text: `[kind] resource: message`, with secrets redacted."""
    where = f"{resource_id}: " if resource_id else ""
    return f"[{error.kind}] {where}{redact(str(error), secrets)}"


def decode(text: str) -> Failure:
    """Read the marker back from the `Exception` text an orchestrator receives.

    Text without a marker (a host-level failure, an unexpected crash) counts as permanent so a
    bug never turns into an endless retry loop.
    """
    match = _MARKER.search(text)
    if match is None:
        return Failure(PERMANENT, redact(text.strip()))
    message = match.group(2).strip()
    # The host appends "\n <Details>" (often a traceback); the first line is the message.
    message = message.split("\n", 1)[0].strip()
    return Failure(match.group(1), redact(message))


def _http_status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        meta = response.get("ResponseMetadata") or {}
        code = meta.get("HTTPStatusCode")
        return int(code) if isinstance(code, int) else None
    code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else None


def _google_status(exc: BaseException) -> int | None:
    """google-api-core errors carry their HTTP status as `code` (over gRPC too: UNAVAILABLE is 503)."""
    code = getattr(exc, "code", None)
    if type(exc).__module__.startswith("google.api_core") and isinstance(code, int):
        return code
    return None


def _aws_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = (response.get("Error") or {}).get("Code")
        return str(code) if code else None
    return None


def _hint(status: int | None) -> str:
    if status == 401:
        return " (the control plane's credential was rejected: check its identity / credential chain)"
    if status == 403:
        return " (the control plane's identity lacks a permission: grant the role named above and re-run)"
    if status == 404:
        return " (a resource this one depends on does not exist: check the spec's regions and names)"
    return ""
