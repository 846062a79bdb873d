"""Provisioning time for moto's Lambda functions and DynamoDB tables.

moto makes a function `Active` and a table `ACTIVE` at once. Real AWS takes a while, and a
deployer must wait (boto3's `function_active_v2` / `function_updated_v2` / `table_exists`
waiters) or it meets the errors AWS gives meanwhile. When the profile gives `aws/lambda` or
`aws/dynamodb` a provisioning time, the proxy tracks when each function or table becomes ready
and, until then, rewrites moto's answers and refuses what AWS refuses:
- Lambda: `State: Pending` after create and `LastUpdateStatus: InProgress` after an update;
  invoking a Pending function, or updating one whose update is in progress, gets
  `ResourceConflictException` (409);
- DynamoDB: `TableStatus: CREATING`; item operations on it get `ResourceNotFoundException` and
  `UpdateTimeToLive` gets `ResourceInUseException` (400).
- IAM is eventually consistent: for the profile's `rbac_propagation_seconds` after a role is
  created, Lambda cannot assume it and `CreateFunction` with it gets
  `InvalidParameterValueException` (400), the error real deployers retry on.
With the instant profile nothing is tracked or changed.
"""

from __future__ import annotations

import json
import re
import threading
import time
import zlib
from typing import Any
from urllib.parse import parse_qs, unquote

from aiohttp import web

from sandbox.aws.protocol import AwsRequestInfo, error_response
from sandbox.core.profiles import Faults

LAMBDA_KIND = "aws/lambda"
DYNAMODB_KIND = "aws/dynamodb"

_FUNCTION_PATH = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)(?P<rest>/.*)?$")
_DDB_ITEM_OPS = frozenset(
    {"PutItem", "GetItem", "UpdateItem", "DeleteItem", "Query", "Scan", "BatchWriteItem", "BatchGetItem"}
)


def _function_name(raw: str) -> str:
    """`my-fn`, `my-fn:live` or a function ARN -> `my-fn`."""
    name = unquote(raw)
    if name.startswith("arn:"):
        parts = name.split(":")
        return parts[6] if len(parts) > 6 else name
    return name.split(":", 1)[0]


class Lifecycle:
    def __init__(self, faults: Faults) -> None:
        self._faults = faults
        self._lock = threading.Lock()
        # (region, name) -> time from which the function is Active / its last update done.
        self._function_ready: dict[tuple[str, str], float] = {}
        self._update_ready: dict[tuple[str, str], float] = {}
        self._table_ready: dict[tuple[str, str], float] = {}
        # role name -> time from which Lambda can assume it (IAM is global: no region).
        self._role_ready: dict[str, float] = {}

    def reset(self) -> None:
        with self._lock:
            self._function_ready.clear()
            self._update_ready.clear()
            self._table_ready.clear()
            self._role_ready.clear()

    @staticmethod
    def _pending(ready: dict[tuple[str, str], float], key: tuple[str, str], now: float) -> bool:
        return ready.get(key, 0.0) > now

    # --- before forwarding -------------------------------------------------------------------

    def refuse(self, request: web.Request, info: AwsRequestInfo, body: bytes) -> web.Response | None:
        """AWS's refusal of an operation on a resource that is not ready yet, else None."""
        now = time.time()
        if info.service == "lambda":
            role_refusal = self._refuse_unpropagated_role(request, info, body, now)
            if role_refusal is not None:
                return role_refusal
            m = _FUNCTION_PATH.match(request.path)
            if m is None:
                return None
            key = (info.region, _function_name(m.group("name")))
            rest = m.group("rest") or ""
            with self._lock:
                creating = self._pending(self._function_ready, key, now)
                updating = self._pending(self._update_ready, key, now)
            if request.method == "POST" and rest == "/invocations" and creating:
                return error_response(
                    info,
                    409,
                    "ResourceConflictException",
                    "The operation cannot be performed at this time. The function is currently in the following state: Pending",
                )
            if request.method == "PUT" and rest in ("/configuration", "/code") and (creating or updating):
                return error_response(
                    info,
                    409,
                    "ResourceConflictException",
                    f"The operation cannot be performed at this time. An update is in progress for resource: {key[1]}",
                )
            return None
        if info.service == "dynamodb":
            op = request.headers.get("X-Amz-Target", "").rpartition(".")[2]
            if op not in _DDB_ITEM_OPS and op != "UpdateTimeToLive":
                return None
            tables = _table_names(op, body)
            with self._lock:
                not_ready = [t for t in tables if self._pending(self._table_ready, (info.region, t), now)]
            if not not_ready:
                return None
            if op == "UpdateTimeToLive":
                return error_response(
                    info,
                    400,
                    "ResourceInUseException",
                    f"Attempt to change a resource which is still in use: Table is being created: {not_ready[0]}",
                )
            return error_response(info, 400, "ResourceNotFoundException", "Requested resource not found")
        return None

    def _refuse_unpropagated_role(
        self, request: web.Request, info: AwsRequestInfo, body: bytes, now: float
    ) -> web.Response | None:
        path = request.path.rstrip("/")
        creates = request.method == "POST" and path == "/2015-03-31/functions"
        updates = request.method == "PUT" and path.endswith("/configuration") and _FUNCTION_PATH.match(path)
        if not (creates or updates):
            return None
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            return None
        role = payload.get("Role") if isinstance(payload, dict) else None
        if not isinstance(role, str):
            return None
        with self._lock:
            pending = self._role_ready.get(role.rsplit("/", 1)[-1], 0.0) > now
        if not pending:
            return None
        return error_response(
            info, 400, "InvalidParameterValueException", "The role defined for the function cannot be assumed by Lambda."
        )

    # --- after forwarding --------------------------------------------------------------------

    def observe(self, request: web.Request, info: AwsRequestInfo, body: bytes, response: web.Response) -> None:
        """Record new functions/tables/updates and rewrite moto's answer while they are not ready."""
        if response.status >= 300 or response.headers.get("Content-Encoding"):
            return
        if info.service == "lambda":
            self._observe_lambda(request, info, response)
        elif info.service == "dynamodb":
            self._observe_dynamodb(request, info, body, response)
        elif info.service == "iam" and info.protocol == "query":
            self._observe_iam(body)

    def _observe_iam(self, body: bytes) -> None:
        form = parse_qs(body.decode("utf-8", "replace"))
        if form.get("Action") != ["CreateRole"] or not form.get("RoleName"):
            return
        delay = self._faults.profile.rbac_propagation_seconds
        with self._lock:
            if delay > 0:
                self._role_ready[form["RoleName"][0]] = time.time() + delay
            else:
                self._role_ready.pop(form["RoleName"][0], None)

    def _observe_lambda(self, request: web.Request, info: AwsRequestInfo, response: web.Response) -> None:
        now = time.time()
        delay = self._faults.provisioning_seconds(LAMBDA_KIND)
        path = request.path.rstrip("/")
        if request.method == "POST" and path == "/2015-03-31/functions":
            payload = _json(response)
            if payload is None or "FunctionName" not in payload:
                return
            key = (info.region, str(payload["FunctionName"]))
            with self._lock:
                self._update_ready.pop(key, None)
                if delay > 0:
                    self._function_ready[key] = now + delay
                else:
                    self._function_ready.pop(key, None)
            self._rewrite_function(response, payload, key, now)
            return
        m = _FUNCTION_PATH.match(path)
        if m is None:
            return
        key = (info.region, _function_name(m.group("name")))
        rest = m.group("rest") or ""
        if request.method == "DELETE" and not rest:
            with self._lock:
                self._function_ready.pop(key, None)
                self._update_ready.pop(key, None)
            return
        if request.method == "PUT" and rest in ("/configuration", "/code"):
            with self._lock:
                if delay > 0:
                    self._update_ready[key] = now + delay
                else:
                    self._update_ready.pop(key, None)
        if request.method in ("GET", "PUT") and rest in ("", "/configuration", "/code"):
            payload = _json(response)
            if payload is not None:
                self._rewrite_function(response, payload, key, now)

    def _rewrite_function(self, response: web.Response, payload: dict[str, Any], key: tuple[str, str], now: float) -> None:
        with self._lock:
            creating = self._pending(self._function_ready, key, now)
            updating = self._pending(self._update_ready, key, now)
        if not (creating or updating):
            return
        # GetFunction nests the configuration; the other operations return it at the top level.
        conf = payload.get("Configuration") if isinstance(payload.get("Configuration"), dict) else payload
        assert isinstance(conf, dict)
        if creating:
            conf.update(State="Pending", StateReason="The function is being created.", StateReasonCode="Creating")
            conf.pop("LastUpdateStatus", None)
        elif updating:
            conf.update(
                LastUpdateStatus="InProgress",
                LastUpdateStatusReason="The function is being updated.",
                LastUpdateStatusReasonCode="Updating",
            )
        _set_body(response, payload)

    def _observe_dynamodb(self, request: web.Request, info: AwsRequestInfo, body: bytes, response: web.Response) -> None:
        op = request.headers.get("X-Amz-Target", "").rpartition(".")[2]
        now = time.time()
        if op == "CreateTable":
            delay = self._faults.provisioning_seconds(DYNAMODB_KIND)
            names = _table_names(op, body)
            if not names:
                return
            key = (info.region, names[0])
            with self._lock:
                if delay > 0:
                    self._table_ready[key] = now + delay
                else:
                    self._table_ready.pop(key, None)
            self._rewrite_table(response, "TableDescription", key, now)
        elif op == "DescribeTable":
            names = _table_names(op, body)
            if names:
                self._rewrite_table(response, "Table", (info.region, names[0]), now)
        elif op == "DeleteTable":
            with self._lock:
                for name in _table_names(op, body):
                    self._table_ready.pop((info.region, name), None)

    def _rewrite_table(self, response: web.Response, field: str, key: tuple[str, str], now: float) -> None:
        with self._lock:
            creating = self._pending(self._table_ready, key, now)
        if not creating:
            return
        payload = _json(response)
        if payload is None or not isinstance(payload.get(field), dict):
            return
        payload[field]["TableStatus"] = "CREATING"
        _set_body(response, payload)


def _set_body(response: web.Response, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    response.body = body
    # botocore checks DynamoDB's body checksum and retries on a mismatch.
    if "x-amz-crc32" in response.headers:
        response.headers["x-amz-crc32"] = str(zlib.crc32(body) & 0xFFFFFFFF)


def _json(response: web.Response) -> dict[str, Any] | None:
    raw = response.body
    if not isinstance(raw, bytes | bytearray) or not raw:
        return None
    try:
        payload = json.loads(raw)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def _table_names(op: str, body: bytes) -> list[str]:
    try:
        payload = json.loads(body) if body else {}
    except ValueError:
        return []
    if not isinstance(payload, dict):
        return []
    if op in ("BatchWriteItem", "BatchGetItem"):
        return [str(t) for t in (payload.get("RequestItems") or {})]
    name = payload.get("TableName")
    if not isinstance(name, str):
        return []
    # TableName may be a table ARN.
    return [name.rsplit("/", 1)[-1] if name.startswith("arn:") else name]
