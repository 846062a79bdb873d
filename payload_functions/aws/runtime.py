"""Lambda plumbing: Function URL events <-> `Request`/`Response`, direct invokes, boto3 clients.

boto3 is imported inside functions: it is in the Lambda runtime, and tests point it at moto
through the standard `AWS_ENDPOINT_URL` variable, so no code path differs between them.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from payload_functions.common.errors import PayloadError, UpstreamError
from payload_functions.common.settings import Settings
from payload_functions.core.api import Request, Response, answer, failure
from shared.naming import AwsNaming

PROVIDER = "aws"
log = logging.getLogger("payload_functions")


class InvocationFailed(Exception):
    """Raised from a directly invoked handler so Lambda records the invocation as failed
    (async invokes are then retried and reach the failure destination)."""


def is_function_url_event(event: Any) -> bool:
    return isinstance(event, Mapping) and "requestContext" in event and "rawPath" in event


def to_request(event: Mapping[str, Any]) -> Request:
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else str(body).encode("utf-8")
    method = ((event.get("requestContext") or {}).get("http") or {}).get("method", "POST")
    headers = {str(k): str(v) for k, v in (event.get("headers") or {}).items()}
    query = {str(k): str(v) for k, v in (event.get("queryStringParameters") or {}).items()}
    return Request(method=method, headers=headers, body=raw, query=query)


def to_result(response: Response) -> dict[str, Any]:
    return {"statusCode": response.status, "headers": {"Content-Type": "application/json"}, "body": response.text()}


def http(name: str, event: Any, work: Callable[[Request], Any]) -> dict[str, Any]:
    """A Function URL receiver."""
    if not is_function_url_event(event):
        return to_result(Response(400, {"error": f"{name} is called through its Function URL (HTTP POST)"}))
    return to_result(answer(name, lambda: work(to_request(event))))


def direct(name: str, event: Any, work: Callable[[Any], Any]) -> Any:
    """A directly invoked function (IoT rule, another Lambda, EventBridge, TwinMaker)."""
    try:
        return work(event)
    except PayloadError as exc:
        failure(name, exc)
        raise InvocationFailed(f"{name}: {exc.message}") from None


def either(name: str, event: Any, work: Callable[[Any], Any], http_work: Callable[[Request], Any]) -> Any:
    """Direct invoke (TwinMaker) or Function URL (a remote reader), by the event's shape."""
    if is_function_url_event(event):
        return http(name, event, http_work)
    return direct(name, event, work)


def client(service: str) -> Any:
    import boto3

    return boto3.client(service)


def naming(settings: Settings) -> AwsNaming:
    return AwsNaming(settings.twin_info().twin_name)


def invoke_async(function_name: str, payload: Mapping[str, Any]) -> None:
    """Fire-and-forget Lambda invoke (`InvocationType=Event`)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        answer_ = client("lambda").invoke(FunctionName=function_name, InvocationType="Event",
                                          Payload=json.dumps(payload, separators=(",", ":")).encode("utf-8"))
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise UpstreamError(f"invoking Lambda {function_name} failed: {code}") from None
    except BotoCoreError as exc:
        raise UpstreamError(f"invoking Lambda {function_name} failed: {type(exc).__name__}") from None
    if answer_.get("StatusCode") not in (200, 202):
        raise UpstreamError(f"invoking Lambda {function_name} answered {answer_.get('StatusCode')}")
