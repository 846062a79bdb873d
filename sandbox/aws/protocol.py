"""What an AWS request is (service, region, wire protocol) and how that service shapes errors.

boto3 signs every request with SigV4, so the credential scope in the `Authorization` header
(`Credential=AKID/20260101/eu-central-1/iottwinmaker/aws4_request`) names the service and
region even when every service shares one endpoint URL. botocore parses errors per protocol,
so an injected 429 must look like that protocol's throttling error for the standard retry mode
to recognise it (it retries on error codes such as `ThrottlingException`, and on 500/502/503/504).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from xml.sax.saxutils import escape

from aiohttp import web

DEFAULT_REGION = "us-east-1"
# moto's default account; our own services use the same one so ARNs agree across services.
ACCOUNT_ID = "123456789012"

_SCOPE_RE = re.compile(r"Credential=[^/,\s]+/\d{8}/([^/,\s]+)/([^/,\s]+)/aws4_request")


@dataclass(frozen=True)
class AwsRequestInfo:
    service: str  # SigV4 signing name, e.g. "iam", "lambda", "iottwinmaker"; "" if unsigned
    region: str
    protocol: str  # "query" | "json" | "rest-json" | "rest-xml" | "rpc-v2-cbor"


def describe_request(request: web.BaseRequest) -> AwsRequestInfo:
    """Service, region and wire protocol of a boto3 request, from its headers alone."""
    service, region = "", DEFAULT_REGION
    m = _SCOPE_RE.search(request.headers.get("Authorization", ""))
    if m is None:
        # Presigned URLs carry the scope in the query string instead.
        m = _SCOPE_RE.search("Credential=" + request.query.get("X-Amz-Credential", ""))
    if m is not None:
        region, service = m.group(1), m.group(2)
    content_type = request.headers.get("Content-Type", "").lower()
    if request.headers.get("smithy-protocol", "").lower() == "rpc-v2-cbor":
        protocol = "rpc-v2-cbor"
    elif "X-Amz-Target" in request.headers or content_type.startswith("application/x-amz-json"):
        protocol = "json"
    elif content_type.startswith("application/x-www-form-urlencoded") and service != "s3":
        protocol = "query"
    elif service == "s3" or (not service and not content_type):
        protocol = "rest-xml"
    else:
        protocol = "rest-json"
    return AwsRequestInfo(service=service, region=region, protocol=protocol)


# Error codes botocore's standard retry mode treats as throttling, per service where AWS uses
# its own name (Lambda: TooManyRequestsException, S3: SlowDown, query services: Throttling).
_THROTTLE_CODE_BY_SERVICE = {"lambda": "TooManyRequestsException", "s3": "SlowDown"}
_THROTTLE_CODE_BY_PROTOCOL = {
    "query": "Throttling",
    "json": "ThrottlingException",
    "rest-json": "ThrottlingException",
    "rest-xml": "SlowDown",
    "rpc-v2-cbor": "ThrottlingException",
}
_UNAVAILABLE_CODE_BY_PROTOCOL = {
    "query": "ServiceUnavailable",
    "json": "ServiceUnavailableException",
    "rest-json": "ServiceUnavailableException",
    "rest-xml": "ServiceUnavailable",
    "rpc-v2-cbor": "ServiceUnavailableException",
}


def fault_code(info: AwsRequestInfo, status: int) -> str:
    if status == 429:
        return _THROTTLE_CODE_BY_SERVICE.get(info.service) or _THROTTLE_CODE_BY_PROTOCOL[info.protocol]
    return _UNAVAILABLE_CODE_BY_PROTOCOL[info.protocol]


def error_response(
    info: AwsRequestInfo, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """An error exactly as botocore's parser for `info.protocol` expects it."""
    request_id = str(uuid.uuid4())
    out = {"x-amzn-RequestId": request_id, **(headers or {})}
    if info.protocol == "query":
        body = (
            "<ErrorResponse><Error>"
            f"<Type>{'Sender' if status < 500 else 'Receiver'}</Type>"
            f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
            f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        return web.Response(status=status, text=body, content_type="text/xml", headers=out)
    if info.protocol == "rest-xml":
        out["x-amz-request-id"] = request_id
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        )
        return web.Response(status=status, text=body, content_type="application/xml", headers=out)
    if info.protocol == "rpc-v2-cbor":
        out["smithy-protocol"] = "rpc-v2-cbor"
        return web.Response(
            status=status, body=_cbor_text_map({"__type": code, "message": message}), content_type="application/cbor", headers=out
        )
    if info.protocol == "json":
        payload = {"__type": code, "message": message}
        return web.Response(
            status=status, text=json.dumps(payload), content_type="application/x-amz-json-1.1", headers=out
        )
    out["x-amzn-ErrorType"] = code
    return web.Response(
        status=status, text=json.dumps({"message": message}), content_type="application/json", headers=out
    )


def _cbor_text(text: str) -> bytes:
    data = text.encode()
    n = len(data)
    if n < 24:
        head = bytes([0x60 | n])
    elif n < 0x100:
        head = bytes([0x78, n])
    elif n < 0x10000:
        head = bytes([0x79]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x7A]) + n.to_bytes(4, "big")
    return head + data


def _cbor_text_map(fields: dict[str, str]) -> bytes:
    """A CBOR map of text strings (RFC 8949 major types 3 and 5): all an error body needs."""
    if len(fields) >= 24:
        raise ValueError("too many fields for a short CBOR map")
    return bytes([0xA0 | len(fields)]) + b"".join(_cbor_text(k) + _cbor_text(v) for k, v in fields.items())


def fault_response(request: web.BaseRequest, status: int, retry_after_seconds: int) -> web.Response:
    """The service-shaped answer to an injected 429 or 503."""
    info = describe_request(request)
    message = "Rate exceeded" if status == 429 else "Service unavailable, please try again"
    return error_response(
        info, status, fault_code(info, status), message, headers={"Retry-After": str(retry_after_seconds)}
    )
