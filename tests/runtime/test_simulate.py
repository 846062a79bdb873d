"""The device simulator against a minimal AWS L1 built here with boto3: thing, topic rule, the
real dispatcher/processor/persister Lambda packages and a DynamoDB table. Messages published
through iot-data run through the deployed Lambdas and reach hot storage."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from payload_functions.packaging import build_lambda_package
from sandbox.server import Sandbox
from shared.contracts import DigitalTwinInfo
from shared.naming import AwsNaming
from twin_cli.commands import simulate

pytestmark = pytest.mark.slow

# The ready AWS-only example (its TwinMaker hierarchy makes it a valid spec); twin greenhouse-aws.
SPEC_FILE = Path(__file__).resolve().parents[2] / "examples" / "aws-only" / "twin.json"
SPEC = json.loads(SPEC_FILE.read_text())
TWIN = SPEC["twin"]["name"]
DEVICES = [d["id"] for d in SPEC["devices"]]


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, Path]]:
    state = tmp_path_factory.mktemp("simulate")
    sb = Sandbox(state / "sandbox", profile="instant", with_blob=False, with_aws=True)
    sb.start()
    try:
        aws = sb.endpoints["aws"]
        kw: dict[str, Any] = {"endpoint_url": aws["endpoint_url"], "region_name": aws["region"],
                              "aws_access_key_id": "deployer", "aws_secret_access_key": "deployer"}
        names = AwsNaming(TWIN)
        ddb = boto3.client("dynamodb", **kw)
        ddb.create_table(TableName=names.hot_table(), BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "device_id", "AttributeType": "S"},
                                               {"AttributeName": "timestamp", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "device_id", "KeyType": "HASH"},
                                    {"AttributeName": "timestamp", "KeyType": "RANGE"}])
        role = boto3.client("iam", **kw).create_role(RoleName=f"{TWIN}-lambda", AssumeRolePolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]
        info = DigitalTwinInfo(TWIN, "DEBUG", 7, 30, {layer: "aws" for layer in (
            "L1", "L2", "L3_hot", "L3_cold", "L3_archive", "L4", "L5")}).to_json()
        lam = boto3.client("lambda", **kw)

        def create(name: str, package: str, env: dict[str, str]) -> str:
            arn: str = lam.create_function(
                FunctionName=name, Runtime="python3.11", Role=role, Handler="lambda_function.handler",
                Code={"ZipFile": build_lambda_package(package).data}, Timeout=30,
                Environment={"Variables": {"DIGITAL_TWIN_INFO": info, **env}})["FunctionArn"]
            return arn

        dispatcher = create(names.function("dispatcher"), "dispatcher", {"TARGET_FUNCTION": "processor"})
        for device in DEVICES:
            create(names.function(f"{device}-processor"), "processor", {})
        create(names.function("persister"), "persister", {"DYNAMODB_TABLE_NAME": names.hot_table(),
                                                          "USE_EVENT_CHECKING": "false"})
        iot = boto3.client("iot", **kw)
        for device in DEVICES:
            iot.create_thing(thingName=names.iot_thing(device))
        iot.create_topic_rule(ruleName=names.iot_rule(), topicRulePayload={
            "sql": f"SELECT * FROM '{names.iot_topic()}'", "ruleDisabled": False,
            "actions": [{"lambda": {"functionArn": dispatcher}}]})
        yield sb, SPEC_FILE
    finally:
        sb.stop()


def _run(*argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    simulate.register(parser.add_subparsers())
    args = parser.parse_args(["simulate", *argv])
    out, err = io.StringIO(), io.StringIO()
    code = simulate.run(args, out, err)
    return code, out.getvalue(), err.getvalue()


def test_simulated_messages_reach_hot_storage(deployed: tuple[Sandbox, Path]) -> None:
    sb, spec = deployed
    code, out, err = _run(str(spec), "--sandbox", str(sb.state_dir), "--count", "2", "--json")
    assert code == 0, (out, err)
    report = json.loads(out)
    assert report["ok"] is True and len(report["messages"]) == 4
    print("latencies ms (stored, twin):", [(m["stored_ms"], m["twin_ms"]) for m in report["messages"]])
    assert {m["device_id"] for m in report["messages"]} == set(DEVICES)
    for m in report["messages"]:
        assert m["errors"] == [] and m["stored_ms"] is not None and m["stored_ms"] >= 0
        assert m["twin_note"].startswith("TwinMaker")
    # What the report says is what DynamoDB holds: the processor's and persister's output.
    aws = sb.endpoints["aws"]
    ddb = boto3.client("dynamodb", endpoint_url=aws["endpoint_url"], region_name=aws["region"],
                       aws_access_key_id="t", aws_secret_access_key="t")
    items = ddb.scan(TableName=AwsNaming(TWIN).hot_table())["Items"]
    stored = {(i["device_id"]["S"], i["timestamp"]["S"]) for i in items}
    assert stored == {(m["device_id"], m["timestamp"]) for m in report["messages"]}


def test_one_device_as_a_table_and_bad_input(deployed: tuple[Sandbox, Path]) -> None:
    sb, spec = deployed
    code, out, _ = _run(str(spec), "--sandbox", str(sb.state_dir), "--device", DEVICES[0])
    assert code == 0 and DEVICES[0] in out and DEVICES[1] not in out and "1/1 messages arrived" in out
    code, _, err = _run(str(spec), "--sandbox", str(sb.state_dir), "--device", "nope")
    assert code == 1 and "--device: nope not in the spec" in err
    code, _, err = _run(str(spec), "--sandbox", str(sb.state_dir / "missing"))
    assert code == 1 and "endpoints.json does not exist" in err
    code, _, err = _run(str(spec), "--sandbox", str(sb.state_dir), "--count", "0")
    assert code == 2 and "--count" in err
