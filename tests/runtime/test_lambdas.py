"""Lambda zips deployed through boto3 run in the sandbox: Invoke (RequestResponse, Event),
their environment, function URLs, and IoT topic rules, all through the real boto3 clients."""

from __future__ import annotations

import io
import json
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from sandbox.server import Sandbox

pytestmark = pytest.mark.slow

HANDLER = '''
import json
import os

import boto3

import helper


def handler(event, context):
    print("invoked with", json.dumps(event))  # goes to the function log, not the result
    if isinstance(event, dict) and event.get("fail"):
        raise ValueError("asked to fail")
    if isinstance(event, dict) and event.get("bucket"):
        boto3.client("s3").put_object(Bucket=event["bucket"], Key=event["key"], Body=json.dumps(event).encode())
    if isinstance(event, dict) and event.get("version") == "2.0":
        return {"statusCode": 201, "headers": {"X-Seen-Path": event["rawPath"]},
                "body": json.dumps({"method": event["requestContext"]["http"]["method"],
                                    "body": json.loads(event.get("body") or "{}"),
                                    "query": event.get("queryStringParameters", {})})}
    return {"event": event, "greeting": os.environ.get("GREETING"), "helper": helper.VALUE,
            "region": os.environ["AWS_REGION"], "function": context.function_name,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "endpoint": os.environ.get("AWS_ENDPOINT_URL", "")}
'''


def make_zip(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


class AwsEnv:
    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb
        aws = sb.endpoints["aws"]
        self.kw: dict[str, Any] = {"endpoint_url": aws["endpoint_url"], "region_name": aws["region"],
                                   "aws_access_key_id": "testing", "aws_secret_access_key": "testing",
                                   "config": Config(retries={"mode": "standard"})}
        self.lam = boto3.client("lambda", **self.kw)
        self.s3 = boto3.client("s3", **self.kw)
        self.iot = boto3.client("iot", **self.kw)
        self.iot_data = boto3.client("iot-data", **self.kw)
        iam = boto3.client("iam", **self.kw)
        self.role = iam.create_role(RoleName="lambda-runtime-test", AssumeRolePolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]

    def create(self, name: str, files: dict[str, str], env: dict[str, str] | None = None) -> dict[str, Any]:
        fn: dict[str, Any] = self.lam.create_function(
            FunctionName=name, Runtime="python3.11", Role=self.role, Handler="lambda_function.handler",
            Code={"ZipFile": make_zip(files)}, Timeout=30, Environment={"Variables": env or {}})
        self.lam.get_waiter("function_active_v2").wait(FunctionName=name)
        return fn

    def wait_object(self, bucket: str, key: str, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                return json.loads(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())  # type: ignore[no-any-return]
            except self.s3.exceptions.NoSuchKey:
                time.sleep(0.1)
        raise AssertionError(f"s3://{bucket}/{key} did not appear within {timeout} s")


@pytest.fixture(scope="module")
def aws_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AwsEnv]:
    sb = Sandbox(tmp_path_factory.mktemp("runtime-aws"), profile="instant", with_blob=False, with_aws=True)
    sb.start()
    try:
        yield AwsEnv(sb)
    finally:
        sb.stop()


FILES = {"lambda_function.py": HANDLER, "helper.py": "VALUE = 'from-the-zip'\n"}


def test_invoke_runs_the_zip_with_its_environment(aws_env: AwsEnv) -> None:
    aws_env.create("echo", FILES, {"GREETING": "hello"})
    out = aws_env.lam.invoke(FunctionName="echo", Payload=json.dumps({"n": 1}).encode())
    assert out["StatusCode"] == 200 and "FunctionError" not in out
    body = json.loads(out["Payload"].read())
    assert body["event"] == {"n": 1} and body["greeting"] == "hello" and body["helper"] == "from-the-zip"
    assert body["region"] == aws_env.kw["region_name"] and body["function"] == "echo"
    assert body["endpoint"] == aws_env.kw["endpoint_url"] and 0 < body["remaining_ms"] <= 30000

    # A configuration change is seen by the next invocation (fresh environment).
    aws_env.lam.update_function_configuration(FunctionName="echo", Environment={"Variables": {"GREETING": "bye"}})
    aws_env.lam.get_waiter("function_updated_v2").wait(FunctionName="echo")
    body = json.loads(aws_env.lam.invoke(FunctionName="echo", Payload=b"{}")["Payload"].read())
    assert body["greeting"] == "bye"

    # New code is seen too.
    aws_env.lam.update_function_code(FunctionName="echo", ZipFile=make_zip({**FILES, "helper.py": "VALUE = 'v2'\n"}))
    aws_env.lam.get_waiter("function_updated_v2").wait(FunctionName="echo")
    assert json.loads(aws_env.lam.invoke(FunctionName="echo", Payload=b"{}")["Payload"].read())["helper"] == "v2"

    # An exception is Lambda's Unhandled error shape.
    failed = aws_env.lam.invoke(FunctionName="echo", Payload=json.dumps({"fail": True}).encode())
    assert failed["StatusCode"] == 200 and failed["FunctionError"] == "Unhandled"
    error = json.loads(failed["Payload"].read())
    assert error["errorType"] == "ValueError" and error["errorMessage"] == "asked to fail"


def test_event_invoke_runs_asynchronously_and_reaches_the_sandbox(aws_env: AwsEnv) -> None:
    aws_env.s3.create_bucket(Bucket="runtime-events", CreateBucketConfiguration={
        "LocationConstraint": aws_env.kw["region_name"]})
    aws_env.create("writer", FILES)
    out = aws_env.lam.invoke(FunctionName="writer", InvocationType="Event",
                             Payload=json.dumps({"bucket": "runtime-events", "key": "e1"}).encode())
    assert out["StatusCode"] == 202
    assert aws_env.wait_object("runtime-events", "e1")["key"] == "e1"


def test_function_url_reaches_the_handler(aws_env: AwsEnv) -> None:
    aws_env.create("web", FILES)
    url = aws_env.lam.create_function_url_config(FunctionName="web", AuthType="NONE")["FunctionUrl"]
    assert url.startswith(aws_env.kw["endpoint_url"] + "/lambda-url/") and url.endswith("/")
    assert aws_env.lam.get_function_url_config(FunctionName="web")["FunctionUrl"] == url
    req = urllib.request.Request(url + "items/7?x=1", data=b'{"a": 2}', method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 201 and resp.headers["X-Seen-Path"] == "/items/7"
        assert json.loads(resp.read()) == {"method": "POST", "body": {"a": 2}, "query": {"x": "1"}}


def test_iot_publish_to_a_rule_topic_invokes_its_lambda(aws_env: AwsEnv) -> None:
    aws_env.s3.create_bucket(Bucket="runtime-iot", CreateBucketConfiguration={
        "LocationConstraint": aws_env.kw["region_name"]})
    fn = aws_env.create("iot-target", FILES)
    aws_env.iot.create_topic_rule(ruleName="to_lambda", topicRulePayload={
        "sql": "SELECT *, topic(2) AS device FROM 'twin/+/telemetry' WHERE temperature > 20",
        "actions": [{"lambda": {"functionArn": fn["FunctionArn"]}}], "ruleDisabled": False})
    publish = {"bucket": "runtime-iot", "temperature": 25}
    aws_env.iot_data.publish(topic="twin/dev-1/telemetry", qos=1, payload=json.dumps({**publish, "key": "hot"}))
    aws_env.iot_data.publish(topic="twin/dev-1/telemetry", qos=1,
                             payload=json.dumps({**publish, "key": "cold", "temperature": 5}))
    aws_env.iot_data.publish(topic="other/dev-1/telemetry", qos=1, payload=json.dumps({**publish, "key": "elsewhere"}))
    got = aws_env.wait_object("runtime-iot", "hot")
    assert got["device"] == "dev-1" and got["temperature"] == 25
    time.sleep(1.0)  # the filtered-out publishes had the same time to arrive
    keys = {o["Key"] for o in aws_env.s3.list_objects_v2(Bucket="runtime-iot").get("Contents", [])}
    assert keys == {"hot"}


def test_request_log_names_each_aws_operation_and_whether_it_mutates(aws_env: AwsEnv) -> None:
    log = aws_env.sb.ctx.request_log
    seq = log.last_seq()
    table = "runtime-ops"
    ddb = boto3.client("dynamodb", **aws_env.kw)
    ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
    ddb.query(TableName=table, KeyConditionExpression="id = :i", ExpressionAttributeValues={":i": {"S": "x"}})
    boto3.client("iam", **aws_env.kw).get_role(RoleName="lambda-runtime-test")
    aws_env.lam.get_function_configuration(FunctionName="echo")
    aws_env.lam.invoke(FunctionName="echo", Payload=b"{}")
    aws_env.s3.put_object(Bucket="runtime-events", Key="ops", Body=b"x")
    aws_env.s3.copy_object(Bucket="runtime-events", Key="ops2", CopySource={"Bucket": "runtime-events", "Key": "ops"})
    aws_env.s3.list_objects_v2(Bucket="runtime-events")
    got = [(r.operation, r.mutating) for r in log.since(seq) if r.cloud == "aws"]
    assert got == [
        ("dynamodb:CreateTable", True), ("dynamodb:Query", False), ("iam:GetRole", False),
        ("lambda:GetFunctionConfiguration", False), ("lambda:Invoke", True), ("s3:PutObject", True),
        ("s3:CopyObject", True), ("s3:ListObjectsV2", False),
    ]


def test_unit_operation_names_for_paths_and_queries() -> None:
    from sandbox.aws.operations import classify

    assert classify("s3", "DELETE", "/b/k", {}, {}, b"").name == "DeleteObject"
    assert classify("s3", "DELETE", "/b/k", {"uploadId": "u"}, {}, b"").name == "AbortMultipartUpload"
    assert classify("s3", "PUT", "/b", {"lifecycle": ""}, {}, b"").name == "PutBucketLifecycleConfiguration"
    assert classify("iotdata", "POST", "/topics/a%2Fb", {"qos": "1"}, {}, b"").name == "Publish"
    assert classify("iot", "GET", "/things", {}, {}, b"") .mutating is False
    form = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    assert classify("sts", "POST", "/", {}, form, b"Action=GetCallerIdentity&Version=2011-06-15").mutating is False
    assert classify("", "POST", "/lambda-url/abc/", {}, {}, b"").name == "InvokeFunctionUrl"
    assert classify("", "PATCH", "/unknown", {}, {}, b"") .mutating is True  # unknown: by method


def test_timeout_and_a_missing_handler_are_lambda_errors(aws_env: AwsEnv) -> None:
    slow = {"lambda_function.py": "import time\n\ndef handler(event, context):\n    time.sleep(event['sleep'])\n    return 1\n"}
    aws_env.lam.create_function(FunctionName="slow", Runtime="python3.11", Role=aws_env.role,
                                Handler="lambda_function.handler", Code={"ZipFile": make_zip(slow)}, Timeout=1)
    out = aws_env.lam.invoke(FunctionName="slow", Payload=json.dumps({"sleep": 5}).encode())
    assert out["FunctionError"] == "Unhandled"
    assert "Task timed out after 1.00 seconds" in json.loads(out["Payload"].read())["errorMessage"]
    # The stuck environment was replaced: the next call runs.
    assert json.loads(aws_env.lam.invoke(FunctionName="slow", Payload=b'{"sleep": 0}')["Payload"].read()) == 1

    aws_env.lam.create_function(FunctionName="nohandler", Runtime="python3.11", Role=aws_env.role,
                                Handler="missing_module.handler", Code={"ZipFile": make_zip(FILES)}, Timeout=5)
    out = aws_env.lam.invoke(FunctionName="nohandler", Payload=b"{}")
    assert out["FunctionError"] == "Unhandled"
    assert json.loads(out["Payload"].read())["errorType"] == "Runtime.ImportModuleError"



def test_log_type_tail_returns_the_invocation_log(aws_env: AwsEnv) -> None:
    import base64

    out = aws_env.lam.invoke(FunctionName="echo", Payload=json.dumps({"marker": "tail-me"}).encode(), LogType="Tail")
    log = base64.b64decode(out["LogResult"]).decode()
    assert 'invoked with {"marker": "tail-me"}' in log and log.startswith("START RequestId:") and "REPORT" in log
    failed = aws_env.lam.invoke(FunctionName="echo", Payload=json.dumps({"fail": True}).encode(), LogType="Tail")
    assert "ValueError: asked to fail" in base64.b64decode(failed["LogResult"]).decode()
