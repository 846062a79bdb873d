"""What every sandbox HTTP server shares: TLS from a local CA, and the request middleware.

The middleware (contract 4) records each request in `ctx.request_log` and, before the handler
runs, asks the fault injector whether to answer 429/503 instead. Handlers that must never be
refused (LRO status polls, control calls) are marked with `no_faults`.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import trustme
from aiohttp import web

from sandbox.core.context import SandboxContext

log = logging.getLogger("sandbox.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Builds the 429/503 answer in the service's own error shape: (request, status, retry_after) -> response.
FaultResponder = Callable[[web.Request, int, int], web.StreamResponse]

# A sub-application can set this key to answer injected faults in its own error shape.
FAULT_RESPONDER_KEY: web.AppKey[FaultResponder] = web.AppKey("sandbox_fault_responder")

_NO_FAULTS_ATTR = "_sandbox_no_faults"


F = TypeVar("F", bound=Callable[..., Any])


def no_faults(handler: F) -> F:
    """Mark a handler (an LRO status poll, a control call) as exempt from injected 429/503."""
    setattr(handler, _NO_FAULTS_ATTR, True)
    return handler


# How a request is labelled in the request log beyond method and URL: a service names the
# operation (e.g. "lambda:GetFunction") and says whether it changes state where the HTTP method
# does not tell (AWS JSON/query protocols POST their reads). Either a handler sets these request
# keys (`label_request`), or an app sets a classifier that sees every request, even one refused by
# an injected fault before any handler ran.
OPERATION_KEY: web.RequestKey[str] = web.RequestKey("sandbox_operation", str)
MUTATING_KEY: web.RequestKey[bool] = web.RequestKey("sandbox_mutating", bool)
RequestClassifier = Callable[[web.Request], tuple[str | None, bool | None]]
REQUEST_CLASSIFIER_KEY: web.AppKey[RequestClassifier] = web.AppKey("sandbox_request_classifier")
REQUEST_BODY_KEY: web.RequestKey[bytes] = web.RequestKey("sandbox_request_body", bytes)
"""The body of a request refused by fault injection (read so that the classifier can name it)."""


def label_request(request: web.Request, operation: str | None = None, mutating: bool | None = None) -> None:
    """Name this request's operation and/or say whether it mutates, for the request log."""
    if operation is not None:
        request[OPERATION_KEY] = operation
    if mutating is not None:
        request[MUTATING_KEY] = mutating


def _labels(request: web.Request) -> tuple[str | None, bool | None]:
    operation: str | None = None
    mutating: bool | None = None
    classifier = _lookup(request, REQUEST_CLASSIFIER_KEY)
    if classifier is not None:
        try:
            operation, mutating = classifier(request)
        except Exception:  # a classifier bug must not lose the log record
            log.exception("request classifier failed for %s %s", request.method, request.path)
    operation = request.get(OPERATION_KEY, operation)
    mutating = request.get(MUTATING_KEY, mutating)
    return operation, mutating


# A sub-application (or the root) can set a predicate deciding, from the request alone, that it is
# an LRO poll (catch-all handlers such as ARM's cannot be marked per route).
FAULT_EXEMPT_PREDICATE_KEY: web.AppKey[Callable[[web.Request], bool]] = web.AppKey("sandbox_fault_exempt")


# Query parameters that carry secrets (function keys, SAS signatures, tokens): never logged.
SECRET_QUERY_PARAMS = frozenset(
    {"code", "sig", "signature", "key", "token", "access_token", "password", "secret", "x-functions-key"}
)


def loggable_url(request: web.Request) -> str:
    """The request URL with secret query values replaced, for the request log."""
    url = request.url
    if not any(k.lower() in SECRET_QUERY_PARAMS for k in url.query):
        return str(url)
    query = [(k, "REDACTED" if k.lower() in SECRET_QUERY_PARAMS else v) for k, v in url.query.items()]
    return str(url.with_query(query))


def arm_error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(body).encode(), status=status, headers=headers, content_type="application/json"
    )


def azure_fault_response(request: web.Request, status: int, retry_after: int) -> web.StreamResponse:
    """The ARM / Azure data-plane shape of a throttled or unavailable answer."""
    if status == 429:
        body = arm_error_body(
            "TooManyRequests", "The request is being throttled. Retry after the time given in Retry-After."
        )
    else:
        body = arm_error_body("ServiceUnavailable", "The service is temporarily unavailable. Retry later.")
    return json_response(body, status, {"Retry-After": str(retry_after)})


def _lookup(request: web.Request, key: web.AppKey[Any]) -> Any:
    """The value of `key` in the innermost app that sets it (sub-app first, then its parents)."""
    apps = request.match_info.apps if request.match_info is not None else ()
    for app in reversed(apps):
        if key in app:
            return app[key]
    return None


def _exempt(request: web.Request, handler: Handler) -> bool:
    if getattr(handler, _NO_FAULTS_ATTR, False):
        return True
    route_handler = getattr(request.match_info, "handler", None)
    if route_handler is not None and getattr(route_handler, _NO_FAULTS_ATTR, False):
        return True
    predicate = _lookup(request, FAULT_EXEMPT_PREDICATE_KEY)
    return bool(predicate is not None and predicate(request))


def sandbox_middleware(
    ctx: SandboxContext, cloud: str, *, fault_responder: FaultResponder | None = None
) -> Any:
    """The one middleware every sandbox server uses (contract 4).

    `cloud` is the request log's label ("azure", "aws", "blob"). `cloud="control"` neither records
    nor injects faults: control calls are the test's own instrumentation, not cloud traffic.
    `fault_responder` shapes injected 429/503 answers; a sub-app may override it with
    `FAULT_RESPONDER_KEY`. Unhandled handler errors become a 500 with a JSON body, never a
    traceback on the wire.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if cloud == "control":
            return await _run(request, handler)
        started = time.perf_counter()
        status = 500
        try:
            injected = None if _exempt(request, handler) else ctx.faults.injected_status()
            if injected is not None:
                # Read the body even so: a query-protocol call (AWS IAM, ...) names its operation
                # there, and the request log must say which call was refused.
                request[REQUEST_BODY_KEY] = await request.read()
                responder = _lookup(request, FAULT_RESPONDER_KEY) or fault_responder or azure_fault_response
                response = responder(request, injected, ctx.faults.profile.retry_after_seconds)
            else:
                response = await _run(request, handler)
            status = response.status
            if "x-ms-request-id" not in response.headers and not response.prepared:
                response.headers["x-ms-request-id"] = str(uuid.uuid4())
            return response
        finally:
            operation, mutating = _labels(request)
            ctx.request_log.record(
                cloud,
                request.method,
                loggable_url(request),
                status,
                (time.perf_counter() - started) * 1000,
                operation=operation,
                mutating=mutating,
            )

    return middleware


async def _run(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        # aiohttp's own 404/405 for unknown routes: answer JSON like the services do.
        if exc.status >= 400 and exc.content_type != "application/json":
            code = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status, "BadRequest")
            return json_response(
                arm_error_body(code, f"{request.method} {request.path}: {exc.reason}"), exc.status
            )
        return exc
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return json_response(
            arm_error_body("InternalServerError", f"{request.method} {request.path} failed in the sandbox."),
            500,
        )


# --- TLS -----------------------------------------------------------------------------------------


class SandboxTls:
    """One local CA per state directory (kept across restarts) and a server cert for 127.0.0.1.

    `ca_file` is what clients pass as `connection_verify`. The CA key stays in the state dir so a
    restarted sandbox is still trusted by clients that read `ca.pem` earlier.
    """

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.ca_file = state_dir / "ca.pem"
        key_file = state_dir / "ca.key.pem"
        if self.ca_file.is_file() and key_file.is_file():
            self.ca = trustme.CA.from_pem(self.ca_file.read_bytes(), key_file.read_bytes())
        else:
            self.ca = trustme.CA(organization_name="twin-control-plane sandbox")
            self.ca.private_key_pem.write_to_path(str(key_file))
            key_file.chmod(0o600)
            self.ca.cert_pem.write_to_path(str(self.ca_file))
        self._server_cert = self.ca.issue_cert("127.0.0.1", "localhost")

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server_cert.configure_cert(ctx)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx
