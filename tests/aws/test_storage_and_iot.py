"""Setup, L1 and L3 kinds: resource group, IoT rule and devices, DynamoDB, S3 buckets, schedules."""

from __future__ import annotations

import json
from typing import Any

from activities.providers.aws._common import client


def _unchanged(w: Any, rid: str, ops: Any, sandbox: Any) -> None:
    mark, seq = ops.mark(), sandbox.seq()
    assert w.ensure(rid).action == "unchanged"
    assert ops.writes(mark) == []
    assert sandbox.wire_mutations(seq) == []


def test_resource_group_queries_the_twin_tag(walker: Any, ops: Any, sandbox: Any) -> None:
    w = walker()
    rid = "aws/setup/resource-group"
    assert w.ensure(rid).action == "created"
    name = f"{w.twin}-resources"
    query = client("resource-groups").get_group_query(GroupName=name)["GroupQuery"]["ResourceQuery"]
    assert query["Type"] == "TAG_FILTERS_1_0"
    assert json.loads(query["Query"])["TagFilters"] == [{"Key": "DigitalTwin", "Values": [w.twin]}]
    assert w.read(rid).exists
    _unchanged(w, rid, ops, sandbox)
    assert w.delete(rid).action == "deleted"
    assert w.delete(rid).action == "absent"


def test_iot_rule_targets_the_dispatcher_with_permission(walker: Any, ops: Any, sandbox: Any) -> None:
    w = walker()
    rid = "aws/L1/iot-rule"
    result = w.ensure_all(upto=rid)[rid]
    assert result.action == "created" and result.outputs["IOT_ENDPOINT"].endswith(".amazonaws.com")
    rule = client("iot").get_topic_rule(ruleName=f"{w.twin}_trigger_dispatcher".replace("-", "_"))["rule"]
    assert rule["sql"] == f"SELECT * FROM '{w.twin}/iot-data'"
    assert rule["actions"][0]["lambda"]["functionArn"].endswith(f":function:{w.twin}-dispatcher")
    policy = json.loads(client("lambda").get_policy(FunctionName=f"{w.twin}-dispatcher")["Policy"])
    iot = [s for s in policy["Statement"] if s["Principal"] == {"Service": "iot.amazonaws.com"}]
    assert len(iot) == 1 and iot[0]["Action"] == "lambda:InvokeFunction"
    _unchanged(w, rid, ops, sandbox)
    assert w.delete(rid).action == "deleted"
    assert w.delete(rid).action == "absent"
    w.delete_all(upto=rid)


def test_iot_device_certificate_is_created_once_and_scoped(walker: Any, ops: Any, sandbox: Any) -> None:
    w = walker()
    rid = "aws/L1/device-climate-sensor-1"
    first = w.ensure(rid)
    assert first.action == "created"
    creds = json.loads(first.outputs["DEVICE_CREDENTIALS:climate-sensor-1"])
    assert creds["private_key"].startswith("-----BEGIN") and creds["certificate_pem"].startswith("-----BEGIN")
    thing = f"{w.twin}-climate-sensor-1"
    assert creds["client_id"] == thing and creds["topic"] == f"{w.twin}/iot-data"
    iot = client("iot")
    assert iot.list_thing_principals(thingName=thing)["principals"] == [creds["certificate_arn"]]
    doc = json.loads(iot.get_policy(policyName=thing)["policyDocument"])
    grants = sorted((s["Action"], s["Resource"]) for s in doc["Statement"])
    prefix = "arn:aws:iot:eu-central-1:123456789012"
    assert grants == [("iot:Connect", f"{prefix}:client/{thing}"),
                      ("iot:Publish", f"{prefix}:topic/{w.twin}/iot-data"),
                      ("iot:Receive", f"{prefix}:topic/{w.twin}/feedback/climate-sensor-1"),
                      ("iot:Subscribe", f"{prefix}:topicfilter/{w.twin}/feedback/climate-sensor-1")]
    assert all(s["Action"] != "iot:*" for s in doc["Statement"])
    assert [p["policyName"] for p in iot.list_attached_policies(target=creds["certificate_arn"])["policies"]] == [thing]
    # With the credentials recorded: unchanged, the same certificate, no writes.
    mark, seq = ops.mark(), sandbox.seq()
    again = w.ensure(rid)
    assert again.action == "unchanged" and again.outputs == first.outputs
    assert ops.writes(mark) == [] and sandbox.wire_mutations(seq) == []
    # Credentials lost (the key cannot be read back): a new certificate, the old one retired.
    w.outputs.pop(rid)
    rotated = w.ensure(rid)
    new = json.loads(rotated.outputs["DEVICE_CREDENTIALS:climate-sensor-1"])
    assert rotated.action == "updated" and new["certificate_arn"] != creds["certificate_arn"]
    assert iot.list_thing_principals(thingName=thing)["principals"] == [new["certificate_arn"]]
    old_ids = {c["certificateArn"] for c in iot.list_certificates()["certificates"]}
    assert creds["certificate_arn"] not in old_ids
    assert w.delete(rid).action == "deleted"
    assert not w.read(rid).exists
    assert w.delete(rid).action == "absent"


def test_hot_table_keys_ttl_and_on_demand(walker: Any, ops: Any, sandbox: Any) -> None:
    w = walker()
    rid = "aws/L3_hot/hot-table"
    result = w.ensure(rid)
    assert result.action == "created" and result.outputs == {"DYNAMODB_TABLE_NAME": f"{w.twin}-hot-iot-data"}
    ddb = client("dynamodb")
    table = ddb.describe_table(TableName=f"{w.twin}-hot-iot-data")["Table"]
    assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {"device_id": "HASH", "timestamp": "RANGE"}
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = ddb.describe_time_to_live(TableName=f"{w.twin}-hot-iot-data")["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "ENABLED" and ttl["AttributeName"] == "ttl"
    tags = {t["Key"]: t["Value"] for t in ddb.list_tags_of_resource(ResourceArn=table["TableArn"])["Tags"]}
    assert tags == {"DigitalTwin": w.twin, "ManagedBy": "twin-control-plane", "Layer": "L3_hot"}
    _unchanged(w, rid, ops, sandbox)
    assert w.read(rid).details["keys"] == {"HASH": "device_id", "RANGE": "timestamp"}
    assert w.delete(rid).action == "deleted"
    assert w.delete(rid).action == "absent"


def test_buckets_storage_classes(walker: Any, ops: Any, sandbox: Any) -> None:
    w = walker()
    s3 = client("s3")
    for rid, cls, out in (("aws/L3_cold/cold-bucket", "STANDARD_IA", "COLD_S3_BUCKET_NAME"),
                          ("aws/L3_archive/archive-bucket", "DEEP_ARCHIVE", "ARCHIVE_S3_BUCKET_NAME")):
        result = w.ensure(rid)
        bucket = result.outputs[out]
        assert result.action == "created"
        rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        assert [t["StorageClass"] for r in rules for t in r.get("Transitions", [])] == [cls]
        block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        assert all(block.values())
        _unchanged(w, rid, ops, sandbox)
        s3.put_object(Bucket=bucket, Key="d/chunk.json", Body=b"{}", StorageClass=cls)
        assert s3.head_object(Bucket=bucket, Key="d/chunk.json")["StorageClass"] == cls
        assert w.delete(rid).action == "deleted"  # emptied first
        assert w.delete(rid).action == "absent"


def test_mover_schedule(walker: Any, ops: Any, sandbox: Any) -> None:
    w = walker()
    rid = "aws/L3_hot/hot-to-cold-mover-schedule"
    result = w.ensure_all(upto=rid)[rid]
    assert result.action == "created"
    events = client("events")
    rule = events.describe_rule(Name=f"{w.twin}-hot-to-cold-mover")
    assert rule["ScheduleExpression"] == "cron(0 12 * * ? *)" and rule["State"] == "ENABLED"
    targets = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
    assert [t["Arn"].rsplit(":", 1)[-1] for t in targets] == [f"{w.twin}-hot-to-cold-mover"]
    policy = json.loads(client("lambda").get_policy(FunctionName=f"{w.twin}-hot-to-cold-mover")["Policy"])
    assert [s["Principal"] for s in policy["Statement"]] == [{"Service": "events.amazonaws.com"}]
    mover_env = client("lambda").get_function_configuration(
        FunctionName=f"{w.twin}-hot-to-cold-mover")["Environment"]["Variables"]
    assert mover_env["COLD_S3_BUCKET_NAME"] == f"{w.twin}-cold-iot-data"
    _unchanged(w, rid, ops, sandbox)
    assert w.delete(rid).action == "deleted"
    assert w.delete(rid).action == "absent"
    w.delete_all(upto=rid)


def test_lambda_chain_state_machine(walker: Any, ops: Any, sandbox: Any) -> None:
    w = walker(options={"use_event_checking": True, "return_feedback_to_device": False,
                        "trigger_notification_workflow": True})
    rid = "aws/L2/lambda-chain"
    result = w.ensure(rid)
    arn = result.outputs["LAMBDA_CHAIN_STATE_MACHINE_ARN"]
    assert result.action == "created" and arn.endswith(f":stateMachine:{w.twin}-lambda-chain")
    machine = client("stepfunctions").describe_state_machine(stateMachineArn=arn)
    assert json.loads(machine["definition"])["StartAt"] == "LambdaA"
    _unchanged(w, rid, ops, sandbox)
    # The event checker may start exactly this machine.
    w.ensure_all(upto="aws/L2/event-checker")
    doc = client("iam").get_role_policy(RoleName=f"{w.twin}-event-checker", PolicyName="least-privilege")
    statements = json.loads(doc["PolicyDocument"]) if isinstance(doc["PolicyDocument"], str) else doc["PolicyDocument"]
    workflow = [s for s in statements["Statement"] if s.get("Sid") == "Workflow"]
    assert workflow and workflow[0]["Resource"] in (arn, [arn])
    assert w.delete(rid).action == "deleted"
    assert w.delete(rid).action == "absent"
    w.delete_all(upto="aws/L2/event-checker")
