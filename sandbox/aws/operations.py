"""Name the AWS operation of a request, and whether it changes anything (for the request log).

boto3 says which operation it calls in one of three ways, by protocol: the `X-Amz-Target`
header (json: `DynamoDB_20120810.PutItem`), the `Action` form field or query parameter
(query: IAM, STS), or the HTTP method plus the path template of the operation in botocore's
service model (rest-json / rest-xml: Lambda, IoT, S3, TwinMaker ...). The service comes from
the SigV4 signing name. Operations that only read (Get*, List*, Describe*, Query, Scan ...) do
not mutate; everything else does, and an unknown operation falls back to its HTTP method.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote

from aiohttp import web

from sandbox.aws.protocol import describe_request
from sandbox.core.http import REQUEST_BODY_KEY
from sandbox.core.requestlog import MUTATING_METHODS

# SigV4 signing name -> botocore service model name, where they differ.
MODEL_BY_SIGNING_NAME = {"iotdata": "iot-data", "states": "stepfunctions", "execute-api": "apigateway"}
READ_PREFIXES = ("Get", "List", "Describe", "Head", "Query", "Scan", "BatchGet", "Search", "Lookup", "Check",
                 "Select", "Preview", "Test", "Simulate", "Estimate", "Validate")
# Paths our proxy serves itself (not AWS APIs): (prefix, operation name).
PROXY_PATHS = (("/lambda-url/", "InvokeFunctionUrl"), ("/moto-api/", "MotoApi"))


@dataclass(frozen=True)
class Operation:
    name: str  # e.g. "PutItem"; "" when it cannot be told
    mutating: bool


@dataclass(frozen=True)
class _Template:
    operation: str
    method: str
    pattern: re.Pattern[str]
    query: tuple[tuple[str, str | None], ...]  # required query keys (and values)
    headers: tuple[str, ...]  # required request headers (S3 CopyObject: x-amz-copy-source)
    score: int


def _compile(uri: str) -> tuple[re.Pattern[str], tuple[tuple[str, str | None], ...], int]:
    path, _, query = uri.partition("?")
    regex = ""
    literal = 0
    for part in re.split(r"(\{[^}]+\})", path):
        if part.startswith("{") and part.endswith("}"):
            regex += "(.+)" if part.endswith("+}") else "([^/]+)"
        else:
            regex += re.escape(part)
            literal += len(part)
    required: list[tuple[str, str | None]] = []
    for item in query.split("&") if query else []:
        key, eq, value = item.partition("=")
        required.append((key, value if eq else None))
    return re.compile("^" + regex.rstrip("/") + "/?$"), tuple(required), literal + 100 * len(required)


@functools.lru_cache(maxsize=64)
def _templates(model_name: str) -> tuple[_Template, ...]:
    import botocore.session
    from botocore.exceptions import UnknownServiceError

    try:
        model = botocore.session.get_session().get_service_model(model_name)
    except UnknownServiceError:
        return ()
    out: list[_Template] = []
    for op_name in model.operation_names:
        op = model.operation_model(op_name)
        if op.deprecated:
            continue  # e.g. S3 PutBucketLifecycle: same URI as its successor
        http = op.http
        pattern, query, score = _compile(str(http.get("requestUri", "/")))
        shape = op.input_shape
        required = set(shape.required_members) if shape is not None else set()
        headers = tuple(
            str(member.serialization.get("name", name)).lower()
            for name, member in (shape.members.items() if shape is not None else ())
            if name in required and member.serialization.get("location") == "header"
        )
        # Required query members not in the URI (S3 AbortMultipartUpload: uploadId) tell operations apart too.
        extra = tuple(
            (str(member.serialization.get("name", name)), None)
            for name, member in (shape.members.items() if shape is not None else ())
            if name in required and member.serialization.get("location") == "querystring"
            and str(member.serialization.get("name", name)) not in {k for k, _ in query}
        )
        out.append(_Template(op_name, str(http.get("method", "POST")).upper(), pattern, query + extra, headers,
                             score + 50 * len(headers) + 100 * len(extra)))
    return tuple(sorted(out, key=lambda t: -t.score))


def is_mutating(operation: str, method: str) -> bool:
    if not operation:
        return method.upper() in MUTATING_METHODS
    return not operation.startswith(READ_PREFIXES)


def operation_name(service: str, method: str, path: str, query: Mapping[str, str],
                   headers: Mapping[str, str], body: bytes) -> str:
    """The AWS operation of one request ("" when it cannot be told)."""
    for prefix, name in PROXY_PATHS:
        if path.startswith(prefix):
            return name
    target = headers.get("X-Amz-Target", "")
    if target:
        return target.rpartition(".")[2]
    if "Action" in query:
        return query["Action"]
    content_type = headers.get("Content-Type", "").lower()
    if content_type.startswith("application/x-www-form-urlencoded") and service != "s3":
        action = parse_qs(body.decode("utf-8", "replace")).get("Action") if body else None
        # Query protocol: the body names the operation; every template is `POST /`, so without
        # the body any template "match" would name a random operation.
        return action[0] if action else ""
    if not service:
        return ""
    decoded = unquote(path)
    lowered = {k.lower() for k in headers}
    for template in _templates(MODEL_BY_SIGNING_NAME.get(service, service)):
        if template.method != method.upper():
            continue
        if any(key not in query or (value is not None and query[key] != value) for key, value in template.query):
            continue
        if any(h not in lowered for h in template.headers):
            continue
        if template.pattern.match(decoded) or template.pattern.match(path):
            return template.operation
    return ""


def classify(service: str, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str],
             body: bytes) -> Operation:
    name = operation_name(service, method, path, query, headers, body)
    if name == "MotoApi":
        return Operation(name, False)  # test instrumentation, not cloud traffic
    return Operation(name, is_mutating(name, method))


def request_labels(request: web.BaseRequest, body: bytes = b"") -> tuple[str | None, bool | None]:
    """(operation as `service:Name`, mutating) of a proxy request, for the request log.
    Without the body (a request refused before it was read) query-protocol calls stay unnamed."""
    info = describe_request(request)
    body = body or request.get(REQUEST_BODY_KEY, b"")
    query = {k: v for k, v in request.query.items()}
    op = classify(info.service, request.method, request.raw_path.split("?", 1)[0], query, request.headers, body)
    if not op.name:
        return None, op.mutating
    return (f"{info.service}:{op.name}" if info.service else op.name), op.mutating
