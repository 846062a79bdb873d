"""IoT Core resource tags, which moto lacks: it ignores the tags given to `CreateTopicRule`
(`x-amz-tagging` header) and `CreatePolicy` (`tags`), and has no `TagResource`,
`UntagResource` or `ListTagsForResource`. AWS tags topic rules and policies (and more IoT
resources we do not create); a deployer reads them to tell whose a rule or policy is.

The proxy answers the three tag operations here and shows this store every successful create
and delete, so tags live and die with their resource. Existence comes from moto's in-process
IoT backend (a tag call on an ARN of nothing is `ResourceNotFoundException`, as on AWS).
"""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import parse_qsl, unquote

from aiohttp import web

from sandbox.aws.protocol import AwsRequestInfo, error_response

TAG_OPERATIONS = frozenset({"TagResource", "UntagResource", "ListTagsForResource"})
MAX_TAGS = 50


def _arn(info: AwsRequestInfo, account: str, kind: str, name: str) -> str:
    return f"arn:aws:iot:{info.region}:{account}:{kind}/{name}"


def _exists(arn: str) -> bool:
    from moto.iot.models import iot_backends

    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[2] != "iot":
        return False
    region, account, resource = parts[3], parts[4], parts[5]
    kind, _, name = resource.partition("/")
    try:
        backend = iot_backends[account][region]
    except KeyError:
        return False
    if kind == "rule":
        return name in backend.rules
    if kind == "policy":
        return name in backend.policies
    return False


class IotTags:
    """Tags of IoT topic rules and policies, by ARN."""

    def __init__(self, account: str) -> None:
        self._account = account
        self._lock = threading.Lock()
        self._tags: dict[str, dict[str, str]] = {}

    def reset(self) -> None:
        with self._lock:
            self._tags.clear()

    # --- the tag operations ----------------------------------------------------------------

    def answer(self, request: web.Request, info: AwsRequestInfo, operation: str, body: bytes) -> web.Response:
        if operation == "ListTagsForResource":
            arn = unquote(request.query.get("resourceArn", ""))
        else:
            doc = json.loads(body or b"{}")
            arn = str(doc.get("resourceArn") or "")
        if not _exists(arn):
            return error_response(info, 404, "ResourceNotFoundException", f"{arn or 'resourceArn'} does not exist")
        with self._lock:
            held = self._tags.setdefault(arn, {})
            if operation == "ListTagsForResource":
                listed = [{"Key": k, "Value": v} for k, v in sorted(held.items())]
                return web.json_response({"tags": listed})
            if operation == "TagResource":
                new = {str(t["Key"]): str(t.get("Value", "")) for t in doc.get("tags") or []}
                if len({**held, **new}) > MAX_TAGS:
                    return error_response(info, 400, "InvalidRequestException", f"a resource has at most {MAX_TAGS} tags")
                held.update(new)
            else:
                for key in doc.get("tagKeys") or []:
                    held.pop(str(key), None)
        return web.json_response({})

    # --- creates and deletes moto answered ------------------------------------------------

    def observe(self, request: web.Request, info: AwsRequestInfo, operation: str | None, body: bytes,
                status: int) -> None:
        if status >= 300 or operation not in ("CreateTopicRule", "CreatePolicy", "DeleteTopicRule", "DeletePolicy"):
            return
        kind = "rule" if "TopicRule" in operation else "policy"
        name = unquote(request.path.rstrip("/").rsplit("/", 1)[-1])
        arn = _arn(info, self._account, kind, name)
        with self._lock:
            if operation.startswith("Delete"):
                self._tags.pop(arn, None)
                return
            self._tags[arn] = _given_tags(request, operation, body)


def _given_tags(request: web.Request, operation: str, body: bytes) -> dict[str, str]:
    if operation == "CreateTopicRule":
        return dict(parse_qsl(request.headers.get("x-amz-tagging", ""), keep_blank_values=True))
    try:
        doc: Any = json.loads(body or b"{}")
    except ValueError:
        return {}
    return {str(t["Key"]): str(t.get("Value", "")) for t in doc.get("tags") or [] if isinstance(t, dict)}
