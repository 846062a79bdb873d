"""Running Lambda code behind the AWS proxy: `Invoke`, function URLs, and IoT topic rules.

- `POST /2015-03-31/functions/{name}/invocations` for a function with a zip runs the zip's
  handler (`sandbox.runtime.lambdas`): RequestResponse answers the handler's result (or Lambda's
  error shape with `X-Amz-Function-Error: Unhandled`), Event answers 202 and runs it
  asynchronously, DryRun answers 204. A function without code keeps moto's own invoke.
- Function URLs: moto answers with `https://<id>.lambda-url.<region>.on.aws/`, which nothing
  serves; the proxy rewrites it to `http://<proxy>/lambda-url/<id>/` and serves that path by
  turning the HTTP request into the payload-format-2.0 event.
- `iot-data` `Publish` is stored by moto, then the topic rules run (`sandbox.aws.iot_rules`)
  and their Lambda actions are invoked asynchronously.
- EventBridge rules with a `ScheduleExpression` invoke their Lambda targets on schedule
  (`sandbox.aws.schedules`), started and stopped with the proxy.
"""

from __future__ import annotations

import json
import logging
import re
from collections import deque
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from sandbox.aws.iot_rules import rules_for_publish
from sandbox.aws.protocol import ACCOUNT_ID, AwsRequestInfo, describe_request, error_response
from sandbox.aws.schedules import Schedules
from sandbox.runtime.lambdas import (
    LambdaRunner,
    function_url_event,
    function_url_response,
    log_tail,
    lookup_function,
    lookup_function_url,
)

log = logging.getLogger("sandbox.aws")

INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations/?$")
URL_CONFIG_PATH = re.compile(r"^/2021-10-31/functions/[^/]+/urls?/?$")
FUNCTION_URL_PATH = re.compile(r"^/lambda-url/(?P<id>[0-9a-zA-Z]+)(?P<tail>/.*)?$")
MOTO_FUNCTION_URL = re.compile(r"https://(?P<id>[0-9a-zA-Z]+)\.lambda-url\.[a-z0-9-]+\.on\.aws/?")
PUBLISH_PREFIX = "/topics/"
INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")


class Execution:
    def __init__(self, runner: LambdaRunner) -> None:
        self.runner = runner
        self.schedules = Schedules(runner)
        # Why a publish did not reach a rule's function (unsupported SQL, missing function, ...).
        self.problems: deque[str] = deque(maxlen=500)

    # --- Invoke ------------------------------------------------------------------------------

    async def invoke(self, request: web.Request, info: AwsRequestInfo, body: bytes) -> web.StreamResponse | None:
        """Lambda's answer to an Invoke of a function with code; None to let moto answer."""
        m = INVOKE_PATH.match(request.path)
        if m is None or request.method != "POST":
            return None
        spec = lookup_function(info.region, unquote(m.group("name")), request.query.get("Qualifier"))
        if spec is None or not spec.code:
            return None
        how = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if how not in INVOCATION_TYPES:
            return error_response(info, 400, "InvalidParameterValueException",
                                  f"X-Amz-Invocation-Type must be one of {', '.join(INVOCATION_TYPES)}, not {how!r}")
        try:
            event = json.loads(body) if body else {}
        except ValueError as exc:
            return error_response(info, 400, "InvalidRequestContentException",
                                  f"Could not parse request body into json: {exc}")
        headers = {"X-Amz-Executed-Version": "$LATEST"}
        if how == "DryRun":
            return web.Response(status=204, headers=headers)
        if how == "Event":
            request_id = self.runner.invoke_event(spec, event)
            return web.Response(status=202, headers={**headers, "x-amzn-RequestId": request_id})
        result = await self.runner.invoke(spec, event)
        headers["x-amzn-RequestId"] = result.request_id
        if not result.ok:
            headers["X-Amz-Function-Error"] = "Unhandled"
        if request.headers.get("X-Amz-Log-Type", "None") == "Tail":
            headers["X-Amz-Log-Result"] = log_tail(result.log)
        return web.Response(status=200, body=result.payload, headers=headers, content_type="application/json")

    # --- function URLs -----------------------------------------------------------------------

    @staticmethod
    def is_function_url(request: web.Request) -> bool:
        return FUNCTION_URL_PATH.match(request.path) is not None

    async def function_url(self, request: web.Request) -> web.StreamResponse:
        m = FUNCTION_URL_PATH.match(request.path)
        assert m is not None
        url_id = m.group("id")
        spec = lookup_function_url(url_id)
        if spec is None or not spec.code:
            return web.json_response({"Message": f"No function URL {url_id} exists in the sandbox."}, status=404)
        if spec.url_auth_type.upper() == "AWS_IAM" and describe_request(request).service != "lambda":
            return web.json_response({"Message": "Forbidden"}, status=403)
        raw_tail = request.raw_path.split("?", 1)[0][len(f"/lambda-url/{url_id}"):]
        event = function_url_event(
            url_id, spec.region, request.method, unquote(raw_tail) or "/", request.query_string,
            list(request.headers.items()), await request.read(), request.remote or "127.0.0.1",
        )
        result = await self.runner.invoke(spec, event, "FunctionUrl")
        status, headers, body = function_url_response(result)
        headers["x-amzn-RequestId"] = result.request_id
        return web.Response(status=status, headers=headers, body=body)

    @staticmethod
    def rewrite_url_config(request: web.Request, response: web.Response) -> None:
        """Point the function URLs in a Create/Get/Update/ListFunctionUrlConfig answer at the proxy."""
        if URL_CONFIG_PATH.match(request.path) is None or response.status >= 300:
            return
        raw = response.body
        if not isinstance(raw, bytes | bytearray) or b".lambda-url." not in raw:
            return
        base = f"http://{request.host}/lambda-url/"
        text = MOTO_FUNCTION_URL.sub(lambda m: f"{base}{m.group('id')}/", bytes(raw).decode("utf-8"))
        response.body = text.encode("utf-8")

    # --- IoT Core ----------------------------------------------------------------------------

    @staticmethod
    def is_publish(request: web.Request, info: AwsRequestInfo) -> bool:
        return info.service == "iotdata" and request.method == "POST" and request.path.startswith(PUBLISH_PREFIX)

    def after_publish(self, request: web.Request, info: AwsRequestInfo, body: bytes) -> int:
        """Run the topic rules for a stored publish; returns how many Lambda invocations were queued."""
        from moto.iot.models import iot_backends

        topic = unquote(request.raw_path.split("?", 1)[0][len(PUBLISH_PREFIX):])
        rules: list[Any] = list(iot_backends[ACCOUNT_ID][info.region].rules.values())
        invocations, problems = rules_for_publish(rules, topic, body)
        queued = 0
        for rule_name, arn, message in invocations:
            spec = lookup_function(info.region, arn)
            if spec is None or not spec.code:
                problems.append(f"rule {rule_name}: its Lambda action {arn} names no function with code")
                continue
            self.runner.invoke_event(spec, message, f"IoTRule {rule_name}")
            queued += 1
        for problem in problems:
            log.warning("IoT publish to %s: %s", topic, problem)
            self.problems.append(problem)
        return queued
