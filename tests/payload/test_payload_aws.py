"""AWS handlers against moto (boto3 over HTTP to 127.0.0.1), receivers through Function URLs."""

from __future__ import annotations

import importlib
import io
import json
import sys
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from payload_helpers import ThreadedServer, create_bucket, create_table, function_url_app

from payload_functions.aws import (
    archive_writer,
    cold_to_archive_mover,
    cold_writer,
    connector,
    dispatcher,
    dt_reader,
    dt_reader_last_entry,
    event_checker,
    hot_reader,
    hot_reader_last_entry,
    hot_to_cold_mover,
    hot_writer,
    ingestion,
    persister,
    processor,
)
from payload_functions.aws.runtime import InvocationFailed
from payload_functions.common.envelope import build_envelope
from payload_functions.common.http import PostFailed, post_json
from payload_functions.common.settings import Settings
from payload_functions.core.pipeline import connect
from payload_functions.packaging import LAMBDA_HANDLER, UserCodeFolder, build_lambda_package
from shared.bundle import folder_digest
from shared.contracts import Function, Setting, StorageKey
from shared.naming import AwsNaming
from shared.resources import UserCodeRef

Client = Callable[[str], Any]
RECEIVERS = {str(m.FUNCTION): m.handler for m in (hot_writer, cold_writer, archive_writer, ingestion, hot_reader,
                                                   hot_reader_last_entry)}


@pytest.fixture
def receivers() -> Iterator[ThreadedServer]:
    server = ThreadedServer(function_url_app(RECEIVERS)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv(str(Setting.INTER_CLOUD_TOKEN), "token-new")
    monkeypatch.setenv(str(Setting.INTER_CLOUD_TOKEN_PREVIOUS), "token-old")
    return {"new": "token-new", "old": "token-old"}


@pytest.fixture
def table(aws: Client, twin_name: str, monkeypatch: pytest.MonkeyPatch) -> str:
    name = AwsNaming(twin_name).hot_table()
    create_table(aws, name)
    monkeypatch.setenv(str(Setting.DYNAMODB_TABLE_NAME), name)
    return name


def _items(aws: Client, table: str) -> list[dict[str, Any]]:
    return aws("dynamodb").scan(TableName=table)["Items"]


def deploy_lambda(aws: Client, name: str, function: Function) -> None:
    """Create a Lambda in moto from our real package (moto's simple backend does not run it)."""
    iam = aws("iam")
    try:
        role = iam.get_role(RoleName="payload-test")["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        role = iam.create_role(RoleName="payload-test", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    package = build_lambda_package(function)
    created = aws("lambda").create_function(FunctionName=name, Runtime="python3.12", Role=role,
                                            Handler=LAMBDA_HANDLER, Code={"ZipFile": package.data})
    assert created["CodeSha256"] == package.sha256  # the hash form providers compare


def test_hot_writer_tokens_envelope_and_idempotent_upsert(
    set_twin: Callable[..., Any], tokens: dict[str, str], table: str, aws: Client, receivers: ThreadedServer,
) -> None:
    set_twin()
    url = f"{receivers.url}/{Function.HOT_WRITER}"
    body = build_envelope({"iotDeviceId": "s1", "time": "2025-01-31T12:00:00Z", "temperature": 21.5}, "azure", "L3_hot")
    first = post_json(url, body, token=tokens["new"])
    assert first.status == 200
    assert first.body == {"status": "written", "device_id": "s1", "timestamp": "2025-01-31T12:00:00.000Z"}
    assert post_json(url, body, token=tokens["old"]).status == 200  # previous token still accepted
    items = _items(aws, table)
    assert len(items) == 1
    assert items[0][str(StorageKey.PARTITION)] == {"S": "s1"} and items[0]["temperature"] == {"N": "21.5"}
    for token in (None, "wrong", ""):
        with pytest.raises(PostFailed) as err:
            post_json(url, body, token=token, retries=0)
        assert err.value.upstream_status == 401
    with pytest.raises(PostFailed) as err:
        post_json(url, {"payload": 1, "source_cloud": "x"}, token=tokens["new"], retries=0)
    assert err.value.upstream_status == 400
    assert len(_items(aws, table)) == 1


def test_receiver_answers_500_naming_a_missing_setting_without_values(
    set_twin: Callable[..., Any], tokens: dict[str, str], receivers: ThreadedServer, aws: Client,
) -> None:
    set_twin()
    with pytest.raises(PostFailed) as err:
        post_json(f"{receivers.url}/{Function.HOT_WRITER}", {"device_id": "d"}, token=tokens["new"], retries=0)
    assert err.value.upstream_status == 500
    assert str(Setting.DYNAMODB_TABLE_NAME) in err.value.message and "token-new" not in err.value.message


def test_persister_stores_locally_and_is_idempotent(set_twin: Callable[..., Any], table: str, aws: Client) -> None:
    set_twin(default="aws")
    event = {"iotDeviceId": "s1", "time": 1738324800, "temperature": 30}
    out = persister.handler(event)
    assert out["stored"] == "local" and out["timestamp"] == "2025-01-31T12:00:00.000Z" and "twin" not in out
    persister.handler(event)
    assert len(_items(aws, table)) == 1


def test_persister_posts_to_remote_hot_writer(
    set_twin: Callable[..., Any], tokens: dict[str, str], table: str, aws: Client, receivers: ThreadedServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The persister thinks hot storage is "azure"; our receiver server stands in for it.
    set_twin(default="aws", L3_hot="azure")
    monkeypatch.setenv(str(Setting.REMOTE_WRITER_URL), f"{receivers.url}/{Function.HOT_WRITER}")
    out = persister.handler({"deviceId": "s2", "ts": "2025-02-01T00:00:00Z", "pressure": 1})
    assert out["stored"] == "remote"
    assert _items(aws, table)[0][str(StorageKey.SORT)] == {"S": "2025-02-01T00:00:00.000Z"}


def test_persister_without_required_pusher_url_fails_after_storing(
    set_twin: Callable[..., Any], table: str, aws: Client, tokens: dict[str, str],
) -> None:
    set_twin(default="aws", L4="azure")
    with pytest.raises(InvocationFailed) as err:
        persister.handler({"iotDeviceId": "s1", "time": "2025-01-31T12:00:00Z", "temperature": 1})
    assert "is stored" in str(err.value) and str(Setting.REMOTE_ADT_PUSHER_URL) in str(err.value)
    assert len(_items(aws, table)) == 1


def test_dispatcher_routes_to_processor_or_connector(
    set_twin: Callable[..., Any], aws: Client, twin_name: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_twin()
    names = AwsNaming(twin_name)
    deploy_lambda(aws, names.function(f"s1-{Function.PROCESSOR}"), Function.PROCESSOR)
    deploy_lambda(aws, names.function(str(Function.CONNECTOR)), Function.CONNECTOR)
    monkeypatch.setenv(str(Setting.TARGET_FUNCTION), str(Function.PROCESSOR))
    event = {"iotDeviceId": "s1", "time": "2025-01-31T12:00:00Z", "temperature": 5}
    assert dispatcher.handler(event)["target"] == "processor"
    monkeypatch.setenv(str(Setting.TARGET_FUNCTION), str(Function.CONNECTOR))
    assert dispatcher.handler(event)["target"] == "connector"
    monkeypatch.setenv(str(Setting.TARGET_FUNCTION), "elsewhere")
    with pytest.raises(InvocationFailed, match="TARGET_FUNCTION is invalid"):
        dispatcher.handler(event)


def test_connector_to_remote_ingestion_to_processor(
    set_twin: Callable[..., Any], aws: Client, twin_name: str, tokens: dict[str, str], receivers: ThreadedServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_twin(L1="aws", L2="aws")
    deploy_lambda(aws, AwsNaming(twin_name).function(f"s1-{Function.PROCESSOR}"), Function.PROCESSOR)
    monkeypatch.setenv(str(Setting.REMOTE_INGESTION_URL), f"{receivers.url}/{Function.INGESTION}")
    out = connector.handler({"iotDeviceId": "s1", "time": "2025-01-31T12:00:00Z", "temperature": 5})
    assert out["status"] == "forwarded" and out["remote_status"] == 200
    # A sender whose token the receiver does not know is refused with 401, not retried.
    env = {str(Setting.REMOTE_INGESTION_URL): f"{receivers.url}/{Function.INGESTION}",
           str(Setting.INTER_CLOUD_TOKEN): "intruder", str(Setting.DIGITAL_TWIN_INFO): "{}"}
    with pytest.raises(PostFailed, match="answered 401 after 1 attempt"):
        connect({"iotDeviceId": "s1"}, Settings(connector.READS, env), "aws")


def _install_user_code(package_data: bytes, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unpack a package's `user_code/` where the handler's import finds it, as in the Lambda."""
    for name in [m for m in sys.modules if m == "user_code" or m.startswith("user_code.")]:
        del sys.modules[name]
    archive = zipfile.ZipFile(io.BytesIO(package_data))
    archive.extractall(root, [n for n in archive.namelist() if n.startswith("user_code/")])
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()


def _processor_folder(source: str) -> UserCodeFolder:
    path = "lambda_functions/processors/s1"
    files = {"process.py": source.encode()}
    digest = folder_digest({f"{path}/process.py": files["process.py"]}, path)
    return UserCodeFolder(UserCodeRef(kind="processor", name="s1", bundle="0" * 64, path=path, digest=digest,
                                      module="process", function="process"), files)


def test_processor_runs_user_code_then_invokes_persister(
    set_twin: Callable[..., Any], aws: Client, twin_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_twin()
    deploy_lambda(aws, AwsNaming(twin_name).function(str(Function.PERSISTER)), Function.PERSISTER)
    event = {"iotDeviceId": "s1", "time": "2025-01-31T12:00:00Z", "temperature": 5}
    assert processor.handler(event)["custom"] is False
    try:
        # The user sees the original names (iotDeviceId, time) beside ours.
        source = ("def process(event):\n    assert event['iotDeviceId'] == 's1' and event['time']\n"
                  "    event['pressure'] = 20\n    return event\n")
        package = build_lambda_package(Function.PROCESSOR, user_code=[_processor_folder(source)])
        _install_user_code(package.data, tmp_path / "ok", monkeypatch)
        assert processor.handler(event)["custom"] is True
        assert processor.handler({**event, "iotDeviceId": "s2"})["custom"] is False  # not s1's code
        broken = build_lambda_package(Function.PROCESSOR, user_code=[_processor_folder(
            "def process(event):\n    raise KeyError('x')\n")])
        _install_user_code(broken.data, tmp_path / "broken", monkeypatch)
        with pytest.raises(InvocationFailed, match=r"\[USER_LOGIC_ERROR\] process\(\) of s1 raised KeyError"):
            processor.handler(event)
    finally:
        # Later tests must see the default (pass-through) processor again.
        for name in [m for m in sys.modules if m == "user_code" or m.startswith("user_code.")]:
            del sys.modules[name]


def _seed(table: str, aws: Client, readings: list[dict[str, Any]]) -> None:
    for r in readings:
        persister.handler(r)


def test_hot_readers_direct_over_function_url_and_through_the_l4_connectors(
    set_twin: Callable[..., Any], table: str, aws: Client, twin_name: str, tokens: dict[str, str],
    receivers: ThreadedServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_twin()
    _seed(table, aws, [{"iotDeviceId": "s1", "time": f"2025-01-0{d}T00:00:00Z", "temperature": 20.0 + d}
                       for d in (1, 2, 3)])
    request = {"workspaceId": "w", "entityId": "room-1", "componentName": "sensor",
               "componentTypeId": AwsNaming(twin_name).component_type("s1"), "selectedProperties": ["temperature"],
               "startTime": "2025-01-02T00:00:00Z", "endTime": "2025-01-03T00:00:00Z",
               "properties": {"temperature": {"definition": {"dataType": {"type": "DOUBLE"}}}}}
    out = hot_reader.handler(request)
    (series,) = out["propertyValues"]
    assert series["entityPropertyReference"] == {"entityId": "room-1", "componentName": "sensor",
                                                 "propertyName": "temperature"}
    assert series["values"] == [{"time": "2025-01-02T00:00:00.000Z", "value": {"doubleValue": 22.0}},
                                {"time": "2025-01-03T00:00:00.000Z", "value": {"doubleValue": 23.0}}]
    latest = hot_reader_last_entry.handler(request)
    assert latest["propertyValues"]["temperature"]["propertyValue"] == {"doubleValue": 23.0}
    remote = post_json(f"{receivers.url}/{Function.HOT_READER}", request, token=tokens["new"])
    assert remote.body == out
    with pytest.raises(PostFailed) as err:
        post_json(f"{receivers.url}/{Function.HOT_READER_LAST_ENTRY}", request, retries=0)
    assert err.value.upstream_status == 401
    with pytest.raises(InvocationFailed, match="selectedProperties"):
        hot_reader.handler({**request, "selectedProperties": []})
    # The L4 data connectors forward TwinMaker's request unchanged to the remote readers.
    monkeypatch.setenv(str(Setting.REMOTE_READER_URL), f"{receivers.url}/{Function.HOT_READER}")
    monkeypatch.setenv(str(Setting.REMOTE_READER_LAST_ENTRY_URL), f"{receivers.url}/{Function.HOT_READER_LAST_ENTRY}")
    assert dt_reader.handler(request) == out
    assert dt_reader_last_entry.handler(request) == latest


def test_hot_to_cold_mover_local_and_remote(
    set_twin: Callable[..., Any], table: str, aws: Client, twin_name: str, tokens: dict[str, str],
    receivers: ThreadedServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = datetime(2025, 3, 1, tzinfo=UTC)
    set_twin(hot_storage_days=10)
    old = [{"iotDeviceId": d, "time": (now - timedelta(days=20, hours=h)).isoformat(), "t": h}
           for d in ("s1", "s2") for h in range(3)]
    fresh = {"iotDeviceId": "s1", "time": (now - timedelta(days=1)).isoformat(), "t": 9}
    _seed(table, aws, [*old, fresh])
    bucket = AwsNaming(twin_name).cold_bucket()
    create_bucket(aws, bucket)
    monkeypatch.setenv(str(Setting.COLD_S3_BUCKET_NAME), bucket)
    out = hot_to_cold_mover.handler({"time": now.isoformat()})
    assert out["moved"] == 6 and out["remote"] is False and len(out["keys"]) == 2
    assert [i["t"]["N"] for i in _items(aws, table)] == ["9"]
    s3 = aws("s3")
    key = out["keys"][0]
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["StorageClass"] == "STANDARD_IA"
    assert key.startswith("s1/") and key.endswith("/chunk-00000.json")
    assert len(json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())) == 3
    # Remote: cold storage "elsewhere" -> the cold writer receiver, same key scheme.
    _seed(table, aws, old)
    set_twin(hot_storage_days=10, L3_cold="azure")
    remote_bucket = f"{bucket}-remote"
    create_bucket(aws, remote_bucket)
    monkeypatch.setenv(str(Setting.COLD_S3_BUCKET_NAME), remote_bucket)
    monkeypatch.setenv(str(Setting.REMOTE_COLD_WRITER_URL), f"{receivers.url}/{Function.COLD_WRITER}")
    again = hot_to_cold_mover.handler({"time": now.isoformat()})
    assert again["remote"] is True and again["keys"] == out["keys"]
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=remote_bucket)["Contents"]) == sorted(out["keys"])


def test_cold_to_archive_mover_local_and_remote(
    set_twin: Callable[..., Any], aws: Client, twin_name: str, tokens: dict[str, str], receivers: ThreadedServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = AwsNaming(twin_name)
    cold, archive = names.cold_bucket(), names.archive_bucket()
    create_bucket(aws, cold)
    create_bucket(aws, archive)
    monkeypatch.setenv(str(Setting.COLD_S3_BUCKET_NAME), cold)
    monkeypatch.setenv(str(Setting.ARCHIVE_S3_BUCKET_NAME), archive)
    s3 = aws("s3")
    s3.put_object(Bucket=cold, Key="s1/a-b/chunk-00000.json", Body=b"[1]")
    later = (datetime.now(UTC) + timedelta(days=91)).isoformat()
    set_twin(cold_storage_days=90)
    assert cold_to_archive_mover.handler({"time": datetime.now(UTC).isoformat()})["archived"] == []
    out = cold_to_archive_mover.handler({"time": later})
    assert out["archived"] == ["s1/a-b/chunk-00000.json"]
    assert s3.head_object(Bucket=archive, Key="s1/a-b/chunk-00000.json")["StorageClass"] == "DEEP_ARCHIVE"
    assert "Contents" not in s3.list_objects_v2(Bucket=cold)
    s3.put_object(Bucket=cold, Key="s1/c-d/chunk-00000.json", Body=b"[2]")
    set_twin(cold_storage_days=90, L3_archive="azure")
    monkeypatch.setenv(str(Setting.REMOTE_ARCHIVE_WRITER_URL), f"{receivers.url}/{Function.ARCHIVE_WRITER}")
    assert cold_to_archive_mover.handler({"time": later})["remote"] is True
    # DEEP_ARCHIVE objects cannot be read back (as on AWS): check the class and the key.
    assert s3.head_object(Bucket=archive, Key="s1/c-d/chunk-00000.json")["StorageClass"] == "DEEP_ARCHIVE"


def test_archive_writer_refuses_unsafe_keys(
    set_twin: Callable[..., Any], tokens: dict[str, str], receivers: ThreadedServer, aws: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_twin()
    monkeypatch.setenv(str(Setting.ARCHIVE_S3_BUCKET_NAME), "unused")
    for key in ("../etc/passwd", "/abs", "", "a b"):
        with pytest.raises(PostFailed) as err:
            post_json(f"{receivers.url}/{Function.ARCHIVE_WRITER}", {"object_key": key, "data": "x"},
                      token=tokens["new"], retries=0)
        assert err.value.upstream_status == 400


def test_event_checker_fires_lambda_action_only_when_condition_holds(
    set_twin: Callable[..., Any], aws: Client, twin_name: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_twin()
    rules = [{"condition": "room-1.s1.temperature > DOUBLE(30)",
              "action": {"type": "lambda", "functionName": "high-temp"}},
             {"condition": "room-1.other.temperature > DOUBLE(30)",
              "action": {"type": "lambda", "functionName": "never"}}]
    monkeypatch.setenv(str(Setting.EVENT_RULES), json.dumps(rules))
    deploy_lambda(aws, AwsNaming(twin_name).event_action("high-temp"), Function.PROCESSOR)
    hot = event_checker.handler({"iotDeviceId": "s1", "time": "2025-01-01T00:00:00Z", "temperature": 31})
    assert hot == {"fired": ["room-1.s1.temperature > DOUBLE(30)"], "skipped": []}
    cool = event_checker.handler({"iotDeviceId": "s1", "time": "2025-01-01T00:00:00Z", "temperature": 29})
    assert cool == {"fired": [], "skipped": []}
    monkeypatch.setenv(str(Setting.EVENT_RULES), "{not json")
    with pytest.raises(InvocationFailed, match="EVENT_RULES is invalid"):
        event_checker.handler({"iotDeviceId": "s1"})
