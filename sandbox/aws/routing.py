"""A small route table for our own AWS services, in the style of moto's `urls.py`.

Each service declares `url_paths`: (HTTP method, path regex, handler name on its responses
class). The proxy picks the service by SigV4 signing name, then the route by method and path.
TwinMaker and Grafana both use `/workspaces/...`, so the path alone cannot tell them apart.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import botocore.session
from aiohttp import web
from botocore import xform_name
from botocore.model import OperationModel
from botocore.validate import ParamValidator

from sandbox.aws.protocol import AwsRequestInfo, error_response


class AwsError(Exception):
    """An error answer of a rest-json AWS service: HTTP status, error code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class ValidationException(AwsError):
    def __init__(self, message: str) -> None:
        super().__init__(400, "ValidationException", message)


class ResourceNotFoundException(AwsError):
    def __init__(self, message: str) -> None:
        super().__init__(404, "ResourceNotFoundException", message)


class ConflictException(AwsError):
    def __init__(self, message: str) -> None:
        super().__init__(409, "ConflictException", message)


@dataclass
class AwsCall:
    """One parsed call handed to a responses method."""

    info: AwsRequestInfo
    path_params: dict[str, str]
    query: dict[str, str]  # the last value of each parameter
    body: dict[str, Any]
    query_lists: dict[str, list[str]] = field(default_factory=dict)  # every value (e.g. tagKeys)


Handler = Callable[[AwsCall], Awaitable[tuple[int, dict[str, Any]]]]
UrlPaths = list[tuple[str, str, str]]


class RouteTable:
    """Routes of one service. `service_name` is botocore's model name: each request is checked
    against its operation's input shape, so bad input gets AWS's `ValidationException` naming
    the parameter's path (as the real services do), never a failure inside our models."""

    def __init__(self, url_paths: UrlPaths, responses: object, service_name: str) -> None:
        model = botocore.session.get_session().get_service_model(service_name)
        operations = {xform_name(op): model.operation_model(op) for op in model.operation_names}
        self._routes: list[tuple[str, re.Pattern[str], Handler, OperationModel]] = []
        for method, pattern, name in url_paths:
            handler = getattr(responses, name)
            self._routes.append((method.upper(), re.compile("^" + pattern + "$"), handler, operations[name]))

    async def dispatch(self, request: web.Request, info: AwsRequestInfo) -> web.Response:
        path_matched = False
        # Match the raw path: an ARN in the path (Grafana's /tags/{resourceArn}) arrives with its
        # slashes percent-encoded, and must stay one segment.
        raw_path = request.raw_path.split("?", 1)[0]
        for method, pattern, handler, operation in self._routes:
            m = pattern.match(raw_path)
            if m is None:
                continue
            path_matched = True
            if method != request.method:
                continue
            try:
                body = await _json_body(request)
                params = {k: unquote(v) for k, v in m.groupdict().items()}
                query = {k: request.query.getall(k) for k in request.query}
                _validate(operation, body, params, query)
                call = AwsCall(info, params, {k: v[-1] for k, v in query.items()}, body, query)
                status, payload = await handler(call)
            except AwsError as exc:
                return error_response(info, exc.status, exc.code, exc.message)
            return web.json_response(payload, status=status, headers={"x-amzn-RequestId": _request_id()})
        if path_matched:
            return error_response(info, 405, "MethodNotAllowedException", f"{request.method} {request.path}")
        return error_response(
            info, 404, "UnknownOperationException", f"{info.service}: no operation at {request.method} {request.path}"
        )


def _validate(
    operation: OperationModel, body: dict[str, Any], path: dict[str, str], query: dict[str, list[str]]
) -> None:
    """Check the call against the operation's input shape, with path and query members typed."""
    shape = operation.input_shape
    if shape is None:
        return
    params: dict[str, Any] = dict(body)
    for member_name, member in shape.members.items():
        location = member.serialization.get("location")
        wire_name = member.serialization.get("name", member_name)
        if location == "uri" and member_name in path:
            params[member_name] = path[member_name]
        elif location == "querystring" and wire_name in query:
            values = query[wire_name]
            params[member_name] = _typed(member.type_name, values, f"{member_name} (query)")
    report = ParamValidator().validate(params, shape)
    if report.has_errors():
        raise ValidationException(report.generate_report().replace("\n", "; "))


def _typed(type_name: str, values: list[str], where: str) -> Any:
    if type_name == "list":
        return values
    value = values[-1]
    if type_name == "boolean":
        if value.lower() not in ("true", "false"):
            raise ValidationException(f"{where} must be true or false, not {value!r}")
        return value.lower() == "true"
    if type_name in ("integer", "long"):
        try:
            return int(value)
        except ValueError:
            raise ValidationException(f"{where} must be an integer, not {value!r}") from None
    return value


async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ValidationException(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValidationException("request body must be a JSON object")
    return body


def _request_id() -> str:
    return str(uuid.uuid4())
