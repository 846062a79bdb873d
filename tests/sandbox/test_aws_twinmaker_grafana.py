"""boto3's iottwinmaker and grafana clients against our stand-ins (moto has no backend for them)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from sandbox.aws import AwsSandbox
from sandbox.core.context import SandboxContext
from sandbox.core.profiles import PROFILES, REAL_PROVISIONING_SECONDS, Profile

LAMBDA_ARN = "arn:aws:lambda:eu-central-1:123456789012:function:demo-hot-reader"


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AwsSandbox]:
    ctx = SandboxContext(state_dir=Path(tmp_path_factory.mktemp("aws-tm")))
    sandbox = AwsSandbox(ctx)
    sandbox.start()
    try:
        yield sandbox
    finally:
        # moto's state is process-wide: leave none behind for other sandboxes in this session.
        sandbox.reset()
        sandbox.stop()


@pytest.fixture
def tm(aws: AwsSandbox) -> Iterator[Any]:
    aws.ctx.faults.set_profile("instant")
    yield _client(aws, "iottwinmaker", Config(inject_host_prefix=False))
    aws.ctx.faults.set_profile("instant")


@pytest.fixture
def grafana(aws: AwsSandbox) -> Iterator[Any]:
    aws.ctx.faults.set_profile("instant")
    yield _client(aws, "grafana", None)
    aws.ctx.faults.set_profile("instant")


def _client(aws: AwsSandbox, service: str, config: Config | None) -> Any:
    url = aws.endpoints["twinmaker_endpoint_url" if service == "iottwinmaker" else "grafana_endpoint_url"]
    return boto3.client(
        service,
        endpoint_url=url,
        region_name=aws.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=config,
    )


def _slow_profile(seconds: float, kind: str) -> Profile:
    """A profile under which `kind` takes about `seconds` to provision."""
    return Profile("slow-for-test", delay_scale=seconds / REAL_PROVISIONING_SECONDS[kind])


def _code(err: pytest.ExceptionInfo[ClientError]) -> str:
    return str(err.value.response["Error"]["Code"])


def _wait_active(tm: Any, ws: str, ct: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while tm.get_component_type(workspaceId=ws, componentTypeId=ct)["status"]["state"] != "ACTIVE":
        assert time.monotonic() < deadline, f"{ct} never became ACTIVE"
        time.sleep(0.05)


SENSOR_TYPE = {
    "description": "a sensor that reports temperature",
    "propertyDefinitions": {
        "temperature": {"dataType": {"type": "DOUBLE"}, "isTimeSeries": True, "isStoredExternally": True},
        "location": {"dataType": {"type": "STRING"}, "defaultValue": {"stringValue": "hall"}},
    },
    "functions": {"dataReader": {"implementedBy": {"lambda": {"arn": LAMBDA_ARN}}}},
}


def test_workspace_component_type_lifecycle(aws: AwsSandbox, tm: Any) -> None:
    seq = aws.ctx.request_log.last_seq()
    created = tm.create_workspace(
        workspaceId="demo-ws", description="demo", s3Location="arn:aws:s3:::demo-tm", role="arn:aws:iam::123456789012:role/tm"
    )
    assert created["arn"] == f"arn:aws:iottwinmaker:{aws.region}:123456789012:workspace/demo-ws"
    with pytest.raises(ClientError) as err:
        tm.create_workspace(workspaceId="demo-ws")
    assert _code(err) == "ConflictException"
    ws = tm.get_workspace(workspaceId="demo-ws")
    assert ws["s3Location"] == "arn:aws:s3:::demo-tm" and ws["role"].endswith("role/tm")
    assert [w["workspaceId"] for w in tm.list_workspaces()["workspaceSummaries"]] == ["demo-ws"]

    # The component type is CREATING for the profile's provisioning time, then ACTIVE.
    aws.ctx.faults.profile = _slow_profile(0.4, "aws/iottwinmaker/componenttype")
    out = tm.create_component_type(workspaceId="demo-ws", componentTypeId="com.demo.sensor", **SENSOR_TYPE)
    assert out["state"] == "CREATING"
    assert tm.get_component_type(workspaceId="demo-ws", componentTypeId="com.demo.sensor")["status"]["state"] == "CREATING"
    with pytest.raises(ClientError) as err:
        tm.create_entity(
            workspaceId="demo-ws", entityName="early", components={"s": {"componentTypeId": "com.demo.sensor"}}
        )
    assert _code(err) == "ValidationException" and "CREATING" in str(err.value)
    _wait_active(tm, "demo-ws", "com.demo.sensor")

    ct = tm.get_component_type(workspaceId="demo-ws", componentTypeId="com.demo.sensor")
    assert ct["functions"]["dataReader"]["implementedBy"]["lambda"]["arn"] == LAMBDA_ARN
    assert ct["propertyDefinitions"]["temperature"]["isTimeSeries"] is True
    assert ct["propertyDefinitions"]["temperature"]["isInherited"] is False
    summaries = tm.list_component_types(workspaceId="demo-ws")["componentTypeSummaries"]
    mine = [(s["componentTypeId"], s["status"]["state"]) for s in summaries if not s["componentTypeId"].startswith("com.amazon")]
    assert mine == [("com.demo.sensor", "ACTIVE")]

    # Subtypes inherit definitions and functions.
    aws.ctx.faults.profile = PROFILES["instant"]
    tm.create_component_type(
        workspaceId="demo-ws",
        componentTypeId="com.demo.sensor.fridge",
        extendsFrom=["com.demo.sensor"],
        propertyDefinitions={"door": {"dataType": {"type": "BOOLEAN"}}},
    )
    sub = tm.get_component_type(workspaceId="demo-ws", componentTypeId="com.demo.sensor.fridge")
    assert sub["propertyDefinitions"]["temperature"]["isInherited"] is True
    assert sub["propertyDefinitions"]["door"]["isInherited"] is False
    assert sub["functions"]["dataReader"]["isInherited"] is True
    with pytest.raises(ClientError) as err:
        tm.delete_component_type(workspaceId="demo-ws", componentTypeId="com.demo.sensor")
    assert _code(err) == "ValidationException"  # extended by the fridge type

    with pytest.raises(ClientError) as err:
        tm.create_component_type(
            workspaceId="demo-ws", componentTypeId="bad", propertyDefinitions={"x": {"isTimeSeries": True}}
        )
    assert _code(err) == "ValidationException" and "dataType" in str(err.value)
    with pytest.raises(ClientError) as err:
        tm.get_component_type(workspaceId="demo-ws", componentTypeId="nope")
    assert _code(err) == "ResourceNotFoundException"

    assert tm.delete_component_type(workspaceId="demo-ws", componentTypeId="com.demo.sensor.fridge")["state"] == "DELETING"
    assert tm.delete_component_type(workspaceId="demo-ws", componentTypeId="com.demo.sensor")["state"] == "DELETING"
    tm.delete_workspace(workspaceId="demo-ws")
    with pytest.raises(ClientError) as err:
        tm.get_workspace(workspaceId="demo-ws")
    assert _code(err) == "ResourceNotFoundException"
    assert all(r.cloud == "aws" for r in aws.ctx.request_log.since(seq))
    assert len(aws.ctx.request_log.since(seq)) >= 20


def test_entities_tree_components_and_delete_rules(aws: AwsSandbox, tm: Any) -> None:
    tm.create_workspace(workspaceId="plant")
    tm.create_component_type(workspaceId="plant", componentTypeId="com.demo.sensor", **SENSOR_TYPE)
    _wait_active(tm, "plant", "com.demo.sensor")

    room = tm.create_entity(workspaceId="plant", entityId="room-1", entityName="Room 1")
    assert room["entityId"] == "room-1" and room["arn"].endswith("workspace/plant/entity/room-1")
    tm.create_entity(
        workspaceId="plant",
        entityId="sensor-1",
        entityName="Sensor 1",
        parentEntityId="room-1",
        components={
            "telemetry": {
                "componentTypeId": "com.demo.sensor",
                "properties": {"location": {"value": {"stringValue": "north wall"}}},
            }
        },
    )
    generated = tm.create_entity(workspaceId="plant", entityName="Sensor 2", parentEntityId="room-1")["entityId"]
    assert len(generated) == 36  # a UUID when no entityId is given

    got = tm.get_entity(workspaceId="plant", entityId="sensor-1")
    assert got["parentEntityId"] == "room-1" and got["status"]["state"] == "ACTIVE"
    props = got["components"]["telemetry"]["properties"]
    assert props["location"]["value"] == {"stringValue": "north wall"}
    assert props["temperature"]["definition"]["isTimeSeries"] is True
    root = tm.get_entity(workspaceId="plant", entityId="room-1")
    assert root["parentEntityId"] == "$ROOT" and root["hasChildEntities"] is True

    children = tm.list_entities(workspaceId="plant", filters=[{"parentEntityId": "room-1"}])["entitySummaries"]
    assert sorted(e["entityId"] for e in children) == sorted(["sensor-1", generated])
    with_type = tm.list_entities(workspaceId="plant", filters=[{"componentTypeId": "com.demo.sensor"}])
    assert [e["entityId"] for e in with_type["entitySummaries"]] == ["sensor-1"]
    page = tm.list_entities(workspaceId="plant", maxResults=2)
    assert len(page["entitySummaries"]) == 2 and "nextToken" in page
    rest = tm.list_entities(workspaceId="plant", maxResults=2, nextToken=page["nextToken"])
    assert len(rest["entitySummaries"]) == 1 and "nextToken" not in rest

    # Components are added, changed and removed through update_entity.
    tm.update_entity(
        workspaceId="plant",
        entityId=generated,
        componentUpdates={
            "telemetry": {
                "updateType": "CREATE",
                "componentTypeId": "com.demo.sensor",
                "propertyUpdates": {"location": {"value": {"stringValue": "door"}}},
            }
        },
    )
    tm.update_entity(
        workspaceId="plant",
        entityId="sensor-1",
        componentUpdates={
            "telemetry": {"updateType": "UPDATE", "propertyUpdates": {"location": {"value": {"stringValue": "ceiling"}}}}
        },
    )
    assert tm.get_entity(workspaceId="plant", entityId=generated)["components"]["telemetry"]["properties"]["location"][
        "value"
    ] == {"stringValue": "door"}
    loc = tm.get_entity(workspaceId="plant", entityId="sensor-1")["components"]["telemetry"]["properties"]["location"]
    assert loc["value"] == {"stringValue": "ceiling"}
    with pytest.raises(ClientError) as err:
        tm.update_entity(
            workspaceId="plant",
            entityId="sensor-1",
            componentUpdates={"x": {"updateType": "CREATE", "componentTypeId": "com.missing"}},
        )
    assert _code(err) == "ValidationException"
    with pytest.raises(ClientError) as err:  # a cycle: room-1 under its own child
        tm.update_entity(
            workspaceId="plant",
            entityId="room-1",
            parentEntityUpdate={"updateType": "UPDATE", "parentEntityId": "sensor-1"},
        )
    assert _code(err) == "ValidationException"
    with pytest.raises(ClientError) as err:
        tm.create_entity(workspaceId="plant", entityId="orphan", entityName="Orphan", parentEntityId="nope")
    assert _code(err) == "ValidationException"
    with pytest.raises(ClientError) as err:
        tm.create_entity(workspaceId="plant", entityId="room-1", entityName="Again")
    assert _code(err) == "ConflictException"

    # Delete rules: type in use, workspace not empty, children without isRecursive.
    with pytest.raises(ClientError) as err:
        tm.delete_component_type(workspaceId="plant", componentTypeId="com.demo.sensor")
    assert _code(err) == "ValidationException"
    with pytest.raises(ClientError) as err:
        tm.delete_workspace(workspaceId="plant")
    assert _code(err) == "ValidationException" and "not empty" in str(err.value)
    with pytest.raises(ClientError) as err:
        tm.delete_entity(workspaceId="plant", entityId="room-1")
    assert _code(err) == "ValidationException"
    assert tm.delete_entity(workspaceId="plant", entityId="room-1", isRecursive=True)["state"] == "DELETING"
    assert tm.list_entities(workspaceId="plant")["entitySummaries"] == []
    tm.delete_component_type(workspaceId="plant", componentTypeId="com.demo.sensor")
    assert "plant" in tm.delete_workspace(workspaceId="plant")["message"]
    assert [w["workspaceId"] for w in tm.list_workspaces()["workspaceSummaries"]] == []


def test_bad_ids_are_rejected_with_the_field_named(tm: Any) -> None:
    with pytest.raises(ClientError) as err:
        tm.create_workspace(workspaceId="bad id!")
    assert _code(err) == "ValidationException" and "workspaceId" in str(err.value)
    tm.create_workspace(workspaceId="ids")
    with pytest.raises(ClientError) as err:
        tm.create_entity(workspaceId="ids", entityId="-x", entityName="x")
    assert _code(err) == "ValidationException" and "entityId" in str(err.value)
    tm.delete_workspace(workspaceId="ids")


def test_grafana_workspace_and_api_key(aws: AwsSandbox, grafana: Any) -> None:
    seq = aws.ctx.request_log.last_seq()
    aws.ctx.faults.profile = _slow_profile(0.4, "aws/grafana/workspace")
    ws = grafana.create_workspace(
        accountAccessType="CURRENT_ACCOUNT",
        permissionType="SERVICE_MANAGED",
        authenticationProviders=["AWS_SSO"],
        workspaceName="demo-dashboards",
        workspaceDataSources=["TWINMAKER"],
    )["workspace"]
    ws_id = ws["id"]
    assert ws["status"] == "CREATING" and ws_id.startswith("g-")
    assert ws["endpoint"] == f"{ws_id}.grafana-workspace.{aws.region}.amazonaws.com"
    with pytest.raises(ClientError) as err:
        grafana.create_workspace_api_key(keyName="deployer", keyRole="ADMIN", secondsToLive=3600, workspaceId=ws_id)
    assert _code(err) == "ConflictException"

    deadline = time.monotonic() + 5
    while grafana.describe_workspace(workspaceId=ws_id)["workspace"]["status"] != "ACTIVE":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    key = grafana.create_workspace_api_key(keyName="deployer", keyRole="ADMIN", secondsToLive=3600, workspaceId=ws_id)
    assert key["keyName"] == "deployer" and key["workspaceId"] == ws_id and len(key["key"]) > 20
    with pytest.raises(ClientError) as err:
        grafana.create_workspace_api_key(keyName="deployer", keyRole="ADMIN", secondsToLive=3600, workspaceId=ws_id)
    assert _code(err) == "ConflictException"
    with pytest.raises(ClientError) as err:
        grafana.create_workspace_api_key(keyName="k2", keyRole="OWNER", secondsToLive=3600, workspaceId=ws_id)
    assert _code(err) == "ValidationException"
    assert [w["id"] for w in grafana.list_workspaces()["workspaces"]] == [ws_id]

    grafana.delete_workspace_api_key(keyName="deployer", workspaceId=ws_id)
    with pytest.raises(ClientError) as err:
        grafana.delete_workspace_api_key(keyName="deployer", workspaceId=ws_id)
    assert _code(err) == "ResourceNotFoundException"
    assert grafana.delete_workspace(workspaceId=ws_id)["workspace"]["status"] == "DELETING"
    with pytest.raises(ClientError) as err:
        grafana.describe_workspace(workspaceId=ws_id)
    assert _code(err) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as err:
        grafana.create_workspace(
            accountAccessType="CURRENT_ACCOUNT", permissionType="SERVICE_MANAGED", authenticationProviders=["LDAP"]
        )
    assert _code(err) == "ValidationException"
    calls = aws.ctx.request_log.since(seq)
    assert [c.status for c in calls][:2] == [202, 409]


def test_built_in_component_types_scenes_and_tags(aws: AwsSandbox, tm: Any) -> None:
    ws_arn = tm.create_workspace(workspaceId="extras", tags={"twin": "demo"})["arn"]
    ids = {s["componentTypeId"] for s in tm.list_component_types(workspaceId="extras")["componentTypeSummaries"]}
    assert {"com.amazon.iottwinmaker.alarm.basic", "com.amazon.iottwinmaker.parameters", "com.amazon.kvs.video"} <= ids
    alarm = tm.get_component_type(workspaceId="extras", componentTypeId="com.amazon.iottwinmaker.alarm.basic")
    assert alarm["isAbstract"] is True and alarm["status"]["state"] == "ACTIVE"
    for call in (
        lambda: tm.delete_component_type(workspaceId="extras", componentTypeId="com.amazon.iottwinmaker.documents"),
        lambda: tm.create_component_type(workspaceId="extras", componentTypeId="com.amazon.mine"),
        lambda: tm.create_entity(
            workspaceId="extras",
            entityName="alarm",
            components={"a": {"componentTypeId": "com.amazon.iottwinmaker.alarm.basic"}},  # abstract
        ),
    ):
        with pytest.raises(ClientError) as err:
            call()
        assert _code(err) == "ValidationException"
    # Built-in types are not the user's resources.
    assert not any("com.amazon" in r["id"] for r in aws.list_resources())

    scene_arn = tm.create_scene(workspaceId="extras", sceneId="floor-1", contentLocation="s3://demo-tm/floor-1.json")["arn"]
    assert tm.get_scene(workspaceId="extras", sceneId="floor-1")["contentLocation"] == "s3://demo-tm/floor-1.json"
    assert [s["sceneId"] for s in tm.list_scenes(workspaceId="extras")["sceneSummaries"]] == ["floor-1"]
    with pytest.raises(ClientError) as err:
        tm.delete_workspace(workspaceId="extras")
    assert _code(err) == "ValidationException" and "1 scenes" in str(err.value)

    assert tm.list_tags_for_resource(resourceARN=ws_arn)["tags"] == {"twin": "demo"}
    tm.tag_resource(resourceARN=scene_arn, tags={"a": "1", "b": "2"})
    tm.untag_resource(resourceARN=scene_arn, tagKeys=["a"])
    assert tm.list_tags_for_resource(resourceARN=scene_arn)["tags"] == {"b": "2"}
    with pytest.raises(ClientError) as err:
        tm.list_tags_for_resource(resourceARN=ws_arn + "/entity/nope")
    assert _code(err) == "ResourceNotFoundException"

    tm.delete_scene(workspaceId="extras", sceneId="floor-1")
    tm.delete_workspace(workspaceId="extras")  # the built-in types do not keep it alive


def test_grafana_update_and_tags(aws: AwsSandbox, grafana: Any) -> None:
    ws = grafana.create_workspace(
        accountAccessType="CURRENT_ACCOUNT",
        permissionType="CUSTOMER_MANAGED",
        authenticationProviders=["AWS_SSO"],
        tags={"twin": "demo"},
    )["workspace"]
    arn = f"arn:aws:grafana:{aws.region}:123456789012:/workspaces/{ws['id']}"
    updated = grafana.update_workspace(workspaceId=ws["id"], workspaceDescription="dashboards", workspaceDataSources=["TWINMAKER"])
    assert updated["workspace"]["description"] == "dashboards" and updated["workspace"]["dataSources"] == ["TWINMAKER"]
    # The ARN travels in the path with its slashes percent-encoded.
    assert grafana.list_tags_for_resource(resourceArn=arn)["tags"] == {"twin": "demo"}
    grafana.tag_resource(resourceArn=arn, tags={"owner": "ops"})
    grafana.untag_resource(resourceArn=arn, tagKeys=["twin"])
    assert grafana.list_tags_for_resource(resourceArn=arn)["tags"] == {"owner": "ops"}
    grafana.delete_workspace(workspaceId=ws["id"])
    with pytest.raises(ClientError) as err:
        grafana.list_tags_for_resource(resourceArn=arn)
    assert _code(err) == "ResourceNotFoundException"


def test_fail_once_profile_fails_first_provisioning(aws: AwsSandbox, tm: Any, grafana: Any) -> None:
    aws.ctx.faults.set_profile("instant", seed=0)
    aws.ctx.faults.profile = Profile("always-fails-once", lro_fail_once_rate=1.0)
    tm.create_workspace(workspaceId="fragile")
    tm.create_component_type(workspaceId="fragile", componentTypeId="T-sensor", **SENSOR_TYPE)
    status = tm.get_component_type(workspaceId="fragile", componentTypeId="T-sensor")["status"]
    assert status["state"] == "ERROR" and status["error"]["code"] == "INTERNAL_FAILURE"
    with pytest.raises(ClientError) as err:
        tm.create_entity(workspaceId="fragile", entityName="e", components={"c": {"componentTypeId": "T-sensor"}})
    assert _code(err) == "ValidationException"
    # The retry (an update) provisions it.
    assert tm.update_component_type(workspaceId="fragile", componentTypeId="T-sensor", description="retry")["state"] == "UPDATING"
    _wait_active(tm, "fragile", "T-sensor")
    tm.delete_component_type(workspaceId="fragile", componentTypeId="T-sensor")
    tm.delete_workspace(workspaceId="fragile")

    spec = {
        "accountAccessType": "CURRENT_ACCOUNT",
        "permissionType": "SERVICE_MANAGED",
        "authenticationProviders": ["AWS_SSO"],
        "workspaceName": "fragile-dashboards",
    }
    first = grafana.create_workspace(**spec)["workspace"]["id"]
    assert grafana.describe_workspace(workspaceId=first)["workspace"]["status"] == "CREATION_FAILED"
    grafana.delete_workspace(workspaceId=first)
    second = grafana.create_workspace(**spec)["workspace"]["id"]
    assert grafana.describe_workspace(workspaceId=second)["workspace"]["status"] == "ACTIVE"
    grafana.delete_workspace(workspaceId=second)


def test_malformed_requests_get_validation_errors_naming_the_parameter(aws: AwsSandbox, tm: Any) -> None:
    """What boto3 would refuse client-side, sent raw: the answer names the bad parameter."""
    tm.create_workspace(workspaceId="raw")

    def post(path: str, body: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
        req = urllib.request.Request(
            aws.endpoint_url + path,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                # Only the credential scope matters to the sandbox: it names the service.
                "Authorization": "AWS4-HMAC-SHA256 Credential=AKID/20260101/eu-central-1/iottwinmaker/aws4_request, "
                "SignedHeaders=host, Signature=0",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, dict(resp.headers), json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), json.loads(err.read())

    status, headers, body = post("/workspaces/raw/entities", json.dumps({"entityName": "x", "components": [1]}).encode())
    assert status == 400 and headers["x-amzn-ErrorType"] == "ValidationException"
    assert "components" in body["message"]
    status, _, body = post(
        "/workspaces/raw/entities",
        json.dumps({"entityName": "x", "components": {"c": {"properties": {"p": {"value": {"doubleValue": "hot"}}}}}}).encode(),
    )
    assert status == 400 and "components.c.properties.p.value.doubleValue" in body["message"]
    status, _, body = post("/workspaces/raw/entities", b"{not json")
    assert status == 400 and "not valid JSON" in body["message"]
    status, _, body = post("/workspaces/raw/entities", json.dumps({"description": "no name"}).encode())
    assert status == 400 and "entityName" in body["message"]
    tm.delete_workspace(workspaceId="raw")
