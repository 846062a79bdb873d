"""GCP Cloud Functions: the entry points as functions-framework serves them, calls between private
functions with real google-auth ID tokens, Cloud Storage through gcp-storage-emulator, Firestore
queries as the real client builds them, AWS neighbours on moto.

Firestore reads and writes against an emulator wait for the sandbox's Firestore (FIRESTORE_EMULATOR_HOST).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from gcp_helpers import TokenIssuer, free_port, function_app, pubsub_event, served, storage_emulator
from payload_helpers import ThreadedServer, create_bucket, create_table, function_url_app
from werkzeug.wrappers import Request as WerkzeugRequest
from werkzeug.wrappers import Response as WerkzeugResponse

from payload_functions.aws import archive_writer as aws_archive_writer
from payload_functions.aws import hot_writer as aws_hot_writer
from payload_functions.common.envelope import build_envelope
from payload_functions.common.errors import BadRequest, UpstreamError
from payload_functions.common.http import PostFailed, post_json
from payload_functions.gcp import runtime
from payload_functions.gcp.firestore_store import FirestoreHotStore, document_id
from payload_functions.gcp.gcs_store import ARCHIVE_STORAGE_CLASS, COLD_STORAGE_CLASS
from payload_functions.packaging import (
    CLOUD_FUNCTION_MAIN,
    PackagingError,
    build_cloud_function_package,
    build_for_resource,
    entry_point,
    supported_functions,
)
from shared.contracts import PUBSUB_DEVICE_ID_ATTRIBUTE, Function, Setting, StorageKey, keyed_setting
from shared.naming import AwsNaming
from shared.resources.gcp import CloudFunctionConfig

Client = Callable[[str], Any]
TOKEN, OLD_TOKEN = "token-new", "token-old"
BUCKETS = {"cold": "twin-cold", "archive": "twin-archive"}


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(str(Setting.INTER_CLOUD_TOKEN), TOKEN)
    monkeypatch.setenv(str(Setting.INTER_CLOUD_TOKEN_PREVIOUS), OLD_TOKEN)


@pytest.fixture
def issuer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TokenIssuer]:
    """google-auth finds the test service account key through GOOGLE_APPLICATION_CREDENTIALS."""
    server = TokenIssuer(tmp_path).start()
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(server.key_file))
    runtime.ID_TOKENS.__init__()  # type: ignore[misc]  # tokens of an earlier test's issuer must not be reused
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[Function], Any]:
    return lambda fn: function_app(fn, tmp_path, monkeypatch)


@pytest.fixture(scope="session")
def gcs_url() -> Iterator[str]:
    with storage_emulator() as url:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud.storage import Client as StorageClient

        admin = StorageClient(project="test-project", credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": url})
        for name in BUCKETS.values():
            admin.create_bucket(name)
        yield url


@pytest.fixture
def gcs(gcs_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The functions' storage client goes to the emulator through STORAGE_EMULATOR_HOST."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.storage import Client as StorageClient

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_url)
    monkeypatch.setenv(str(Setting.COLD_GCS_BUCKET), BUCKETS["cold"])
    monkeypatch.setenv(str(Setting.ARCHIVE_GCS_BUCKET), BUCKETS["archive"])
    client = StorageClient(project="test-project", credentials=AnonymousCredentials(),
                           client_options={"api_endpoint": gcs_url})
    for name in BUCKETS.values():
        for blob in client.list_blobs(name):
            blob.delete()
    return client


@pytest.fixture
def aws_receivers(aws: Client, twin_name: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadedServer]:
    """The AWS side of a boundary: its hot writer (DynamoDB) and archive writer (S3) on moto."""
    naming = AwsNaming(twin_name)
    create_table(aws, naming.hot_table())
    create_bucket(aws, naming.archive_bucket())
    monkeypatch.setenv(str(Setting.DYNAMODB_TABLE_NAME), naming.hot_table())
    monkeypatch.setenv(str(Setting.ARCHIVE_S3_BUCKET_NAME), naming.archive_bucket())
    server = ThreadedServer(function_url_app({str(Function.HOT_WRITER): aws_hot_writer.handler,
                                              str(Function.ARCHIVE_WRITER): aws_archive_writer.handler})).start()
    try:
        yield server
    finally:
        server.stop()


def _post(client: Any, body: Any, token: str | None = TOKEN, **headers: str) -> Any:
    sent = {"Content-Type": "application/json", **headers}
    if token is not None:
        sent["X-Inter-Cloud-Token"] = token
    return client.post("/", data=json.dumps(body), headers=sent)


# -- entry points and packages ------------------------------------------------------------------


def test_every_planned_gcp_function_has_an_entry_point_of_its_trigger_type(app: Callable[[Function], Any]) -> None:
    import functions_framework._function_registry as registry

    implemented = set(supported_functions("gcp"))
    planned = {Function.INGESTION, Function.HOT_WRITER, Function.COLD_WRITER, Function.ARCHIVE_WRITER,
               Function.HOT_READER, Function.HOT_READER_LAST_ENTRY, Function.DISPATCHER, Function.CONNECTOR,
               Function.PROCESSOR, Function.PERSISTER, Function.EVENT_CHECKER, Function.HOT_TO_COLD_MOVER,
               Function.COLD_TO_ARCHIVE_MOVER}
    assert planned <= implemented
    for fn in implemented:
        app(fn)
        expected = registry.CLOUDEVENT_SIGNATURE_TYPE if fn == Function.DISPATCHER else registry.HTTP_SIGNATURE_TYPE
        assert registry.REGISTRY_MAP[entry_point(fn)] == expected, fn


def _processor_folder(device: str, source: str) -> Any:
    from payload_functions.packaging import UserCodeFolder
    from shared.bundle import folder_digest
    from shared.resources import UserCodeRef

    path = f"cloud_functions/processors/{device}"
    files = {"process.py": source.encode()}
    digest = folder_digest({f"{path}/{k}": v for k, v in files.items()}, path)
    return UserCodeFolder(UserCodeRef(kind="processor", name=device, bundle="0" * 64, path=path, digest=digest,
                                      module="process", function="process"), files)


def test_cloud_function_packages_are_reproducible_and_self_describing() -> None:
    first = build_cloud_function_package(Function.PERSISTER)
    assert build_cloud_function_package(Function.PERSISTER).data == first.data
    archive = zipfile.ZipFile(io.BytesIO(first.data))
    assert archive.read(CLOUD_FUNCTION_MAIN).decode().count("from payload_functions.gcp.persister import persister") == 1
    requirements = archive.read("requirements.txt").decode().split()
    assert "functions-framework>=3.8,<4" in requirements and "google-cloud-firestore>=2.19" in requirements
    assert not any(r.startswith(("boto3", "azure")) for r in requirements)
    assert first.entry_point == "persister"
    assert "payload_functions/gcp/firestore_store.py" in archive.namelist()
    assert not any(n.startswith(("payload_functions/aws", "payload_functions/azure")) for n in archive.namelist())
    # A device's processor carries that device's own code (a package of its own, indexed by device),
    # and only it: each device has a function of its own.
    folders = [_processor_folder(device, f"def process(event):\n    return {{**event, 'by': '{device}'}}\n")
               for device in ("s1", "s2")]
    with_user = zipfile.ZipFile(io.BytesIO(build_cloud_function_package(Function.PROCESSOR, user_code=folders[:1]).data))
    index = with_user.read("user_code/__init__.py").decode()
    assert '"s1": ["user_code.c' in index and '"s2"' not in index
    assert sum(1 for n in with_user.namelist() if n.endswith("/process.py")) == 1
    with pytest.raises(PackagingError, match="one device's code, got 2"):
        build_cloud_function_package(Function.PROCESSOR, user_code=folders)
    hot_writer = CloudFunctionConfig(
        name="t-hot-writer", project_id="p1", region="us-central1", package=Function.HOT_WRITER, runtime="python311",
        trigger="http", environment={}, public=True, service_account="t-functions")
    assert build_for_resource("cloud-function", "t-hot-writer", hot_writer).entry_point == "hot_writer"


# -- receivers on Cloud Storage -----------------------------------------------------------------


def test_cold_and_archive_writers_check_tokens_and_write_their_class(
    app: Callable[[Function], Any], set_twin: Callable[..., Any], tokens: None, gcs: Any,
) -> None:
    set_twin(default="gcp", L4="aws", L5="aws")
    cold = app(Function.COLD_WRITER).test_client()
    chunk = {"device_id": "s1", "chunk_index": 0, "start_timestamp": "2025-01-01T00:00:00Z",
             "end_timestamp": "2025-01-01T01:00:00Z", "items": [{"device_id": "s1", "temperature": 20}]}
    for token in (None, "wrong"):
        assert _post(cold, chunk, token).status_code == 401
    answer = _post(cold, build_envelope(chunk, "aws", "L3_cold"))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    key = answer.get_json()["key"]
    assert key == "s1/2025-01-01T00:00:00.000Z-2025-01-01T01:00:00.000Z/chunk-00000.json"
    assert _post(cold, chunk, OLD_TOKEN).status_code == 200  # the previous token during a rotation
    blob = gcs.bucket(BUCKETS["cold"]).get_blob(key)
    assert blob.storage_class == COLD_STORAGE_CLASS
    assert json.loads(blob.download_as_bytes()) == chunk["items"]
    bad = _post(cold, {**chunk, "chunk_index": -1})
    assert bad.status_code == 400 and "chunk_index" in bad.get_json()["error"]

    archive = app(Function.ARCHIVE_WRITER).test_client()
    stored = _post(archive, {"object_key": key, "data": "[1,2]", "source_cloud": "aws"})
    assert stored.status_code == 200 and stored.get_json() == {"archived": True, "key": key}
    assert gcs.bucket(BUCKETS["archive"]).get_blob(key).storage_class == ARCHIVE_STORAGE_CLASS
    assert _post(archive, {"object_key": "../x", "data": "1"}).status_code == 400
    assert len(list(gcs.list_blobs(BUCKETS["archive"]))) == 1


def test_bodies_are_bounded_before_they_are_read(
    app: Callable[[Function], Any], set_twin: Callable[..., Any], tokens: None, gcs: Any,
) -> None:
    set_twin(default="gcp", L4="aws", L5="aws")
    client = app(Function.COLD_WRITER).test_client()
    huge = client.post("/", data=b" " * (runtime.MAX_BODY_BYTES + 1), headers={"X-Inter-Cloud-Token": TOKEN})
    assert huge.status_code == 413 and "larger than" in huge.get_json()["error"]
    # A declared length past the bound is refused without reading the body at all.
    from werkzeug.test import EnvironBuilder

    environ = EnvironBuilder(method="POST", data=b"{}").get_environ()
    environ["CONTENT_LENGTH"] = str(runtime.MAX_BODY_BYTES + 1)
    stream = io.BytesIO(b"{}")
    environ["wsgi.input"] = stream
    with pytest.raises(runtime.PayloadTooLarge):
        runtime.read_body(WerkzeugRequest(environ))
    assert stream.tell() == 0


def test_missing_store_setting_is_a_500_naming_the_setting_never_a_value(
    app: Callable[[Function], Any], set_twin: Callable[..., Any], tokens: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_twin(default="gcp", L4="aws", L5="aws")
    monkeypatch.delenv(str(Setting.COLD_GCS_BUCKET), raising=False)
    chunk = {"device_id": "s1", "chunk_index": 0, "start_timestamp": "2025-01-01T00:00:00Z",
             "end_timestamp": "2025-01-01T00:00:00Z", "items": []}
    answer = _post(app(Function.COLD_WRITER).test_client(), chunk)
    assert answer.status_code == 500
    assert str(Setting.COLD_GCS_BUCKET) in answer.get_json()["error"] and TOKEN not in answer.get_data(as_text=True)


# -- the telemetry path with ID tokens ----------------------------------------------------------


@pytest.fixture
def l2_chain(
    app: Callable[[Function], Any], issuer: TokenIssuer, aws_receivers: ThreadedServer, aws: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[dict[str, Any]]:
    """Processor and persister served as private functions; hot storage on AWS (its hot writer)."""
    monkeypatch.setenv(str(Setting.REMOTE_WRITER_URL), f"{aws_receivers.url}/{Function.HOT_WRITER}")
    with served(app(Function.PERSISTER), issuer) as persister, served(app(Function.PROCESSOR), issuer) as processor:
        monkeypatch.setenv(str(Setting.PERSISTER_URL), persister.url)
        for device in ("s1", "s2", "s4", "s9"):  # each device's processor (one function serves them all here)
            monkeypatch.setenv(keyed_setting(Setting.PROCESSOR_URL, device), processor.url)
        yield {"processor": processor, "persister": persister}


def _hot_items(aws: Client, twin: str) -> list[dict[str, Any]]:
    return aws("dynamodb").scan(TableName=AwsNaming(twin).hot_table())["Items"]


def test_ingestion_calls_the_private_processor_and_persister_with_id_tokens(
    app: Callable[[Function], Any], set_twin: Callable[..., Any], tokens: None, l2_chain: dict[str, Any],
    issuer: TokenIssuer, aws: Client, twin_name: str,
) -> None:
    set_twin(default="gcp", L1="azure", L3_hot="aws", L4="aws", L5="aws")
    ingestion = app(Function.INGESTION).test_client()
    reading = {"iotDeviceId": "s1", "time": "2025-01-31T12:00:00Z", "temperature": 21.5}
    assert _post(ingestion, build_envelope(reading, "azure", "L2"), token=None).status_code == 401
    answer = _post(ingestion, build_envelope(reading, "azure", "L2"))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["source_cloud"] == "azure"
    items = _hot_items(aws, twin_name)
    assert [(i[str(StorageKey.PARTITION)]["S"], i["temperature"]["N"]) for i in items] == [("s1", "21.5")]
    # Each private function was called once, with an ID token for its own URL.
    assert issuer.issued.count(l2_chain["processor"].url) >= 1 and issuer.issued.count(l2_chain["persister"].url) >= 1
    assert len(l2_chain["processor"].calls) == 1 and len(l2_chain["persister"].calls) == 1
    assert l2_chain["processor"].refused == 0
    # A device the twin does not have: 422 (the remote connector does not retry a 4xx), nothing stored.
    unknown = _post(ingestion, build_envelope({**reading, "iotDeviceId": "not-ours"}, "azure", "L2"))
    assert unknown.status_code == 422, unknown.get_data(as_text=True)
    assert "not-ours" in unknown.get_json()["error"] and len(_hot_items(aws, twin_name)) == 1
    assert len(l2_chain["processor"].calls) == 1


def test_private_functions_refuse_calls_without_a_token_for_them(
    set_twin: Callable[..., Any], l2_chain: dict[str, Any],
) -> None:
    set_twin(default="gcp", L3_hot="aws", L4="aws", L5="aws")
    with pytest.raises(PostFailed) as err:
        post_json(l2_chain["processor"].url, {"device_id": "s1"}, retries=0)
    assert err.value.upstream_status == 403


def test_dispatcher_routes_pubsub_messages_and_acks_only_what_a_retry_cannot_fix(
    app: Callable[[Function], Any], set_twin: Callable[..., Any], tokens: None, l2_chain: dict[str, Any], aws: Client,
    twin_name: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_twin(default="gcp", L3_hot="aws", L4="aws", L5="aws")
    monkeypatch.setenv(str(Setting.TARGET_FUNCTION), str(Function.PROCESSOR))
    dispatcher = app(Function.DISPATCHER).test_client()

    def deliver(data: Any, attributes: dict[str, str] | None = None, raw: bytes | None = None) -> int:
        headers, body = pubsub_event(data, attributes, raw=raw)
        return int(dispatcher.post("/", data=body, headers=headers).status_code)

    # The device id from the attribute when the body has none.
    assert deliver({"ts": "2025-01-31T12:00:00Z", "temperature": 20}, {PUBSUB_DEVICE_ID_ATTRIBUTE: "s1"}) == 200
    assert deliver({"deviceId": "s2", "ts": "2025-01-31T12:00:01Z", "temperature": 21}) == 200
    assert sorted(i[str(StorageKey.PARTITION)]["S"] for i in _hot_items(aws, twin_name)) == ["s1", "s2"]
    # Permanently bad messages are acknowledged (200) and reach nobody.
    calls = len(l2_chain["processor"].calls)
    assert deliver({"deviceId": "s3", "temperature": 1}, {PUBSUB_DEVICE_ID_ATTRIBUTE: "s1"}) == 200
    assert deliver(None, raw=b"\xff not json") == 200
    assert deliver({"temperature": 1}) == 200  # no device id anywhere
    # A device the twin does not have (no processor of its own): acknowledged, never redelivered.
    assert deliver({"deviceId": "not-ours", "ts": "2025-01-31T12:00:03Z", "temperature": 1}) == 200
    assert len(l2_chain["processor"].calls) == calls
    # A failure a retry can fix fails the invocation, so Eventarc redelivers.
    monkeypatch.delenv(str(Setting.REMOTE_WRITER_URL))
    persister_calls = len(l2_chain["persister"].calls)
    assert deliver({"deviceId": "s4", "ts": "2025-01-31T12:00:02Z", "temperature": 1}) == 500
    assert len(_hot_items(aws, twin_name)) == 2
    # Tried once per hop: the persister's own failure is not retried by the processor or dispatcher.
    assert len(l2_chain["persister"].calls) == persister_calls + 1


def test_dispatcher_sends_through_the_connector_when_l2_is_elsewhere(
    app: Callable[[Function], Any], set_twin: Callable[..., Any], tokens: None, issuer: TokenIssuer,
    l2_chain: dict[str, Any], aws: Client, twin_name: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # L1 on GCP, L2 "elsewhere": the remote ingestion is the GCP one served publicly (token-checked).
    set_twin(default="gcp", L2="azure", L3_hot="aws", L4="aws", L5="aws")
    monkeypatch.setenv(str(Setting.TARGET_FUNCTION), str(Function.CONNECTOR))
    with served(app(Function.INGESTION)) as remote_ingestion, served(app(Function.CONNECTOR), issuer) as connector:
        monkeypatch.setenv(str(Setting.REMOTE_INGESTION_URL), remote_ingestion.url)
        monkeypatch.setenv(str(Setting.CONNECTOR_URL), connector.url)
        headers, body = pubsub_event({"deviceId": "s9", "ts": "2025-01-31T12:00:00Z", "temperature": 7})
        answer = app(Function.DISPATCHER).test_client().post("/", data=body, headers=headers)
        assert answer.status_code == 200
        assert len(connector.calls) == 1 and len(remote_ingestion.calls) == 1
    assert [i[str(StorageKey.PARTITION)]["S"] for i in _hot_items(aws, twin_name)] == ["s9"]


def test_persister_posts_to_the_azure_adt_pusher_with_the_token_after_storing(
    app: Callable[[Function], Any], set_twin: Callable[..., Any], tokens: None, aws_receivers: ThreadedServer,
    aws: Client, twin_name: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    received: list[tuple[str | None, Any]] = []

    def pusher(environ: dict[str, Any], start_response: Any) -> Any:
        request = WerkzeugRequest(environ)
        received.append((request.headers.get("X-Inter-Cloud-Token"), request.get_json()))
        return WerkzeugResponse(json.dumps({"status": "patched"}), content_type="application/json")(
            environ, start_response)

    set_twin(default="gcp", L3_hot="aws", L4="azure", L5="azure")
    monkeypatch.setenv(str(Setting.REMOTE_WRITER_URL), f"{aws_receivers.url}/{Function.HOT_WRITER}")
    persister = app(Function.PERSISTER).test_client()
    reading = {"device_id": "s1", "timestamp": "2025-01-31T12:00:00Z", "temperature": 20}
    # Not wired yet: the reading is stored, the call fails so it is retried once the URL arrives.
    first = persister.post("/", json=reading)
    assert first.status_code == 502 and str(Setting.REMOTE_ADT_PUSHER_URL) in first.get_json()["error"]
    assert len(_hot_items(aws, twin_name)) == 1
    with served(pusher) as adt:
        monkeypatch.setenv(str(Setting.REMOTE_ADT_PUSHER_URL), adt.url)
        answer = persister.post("/", json=reading)
    assert answer.status_code == 200 and answer.get_json()["twin"] == {"status": "patched"}
    token, envelope = received[0]
    assert token == TOKEN
    assert envelope["source_cloud"] == "gcp" and envelope["target_layer"] == "L4"
    assert envelope["payload"] == {"device_id": "s1", "telemetry": {"temperature": 20},
                                   "timestamp": "2025-01-31T12:00:00.000Z"}
    assert len(_hot_items(aws, twin_name)) == 1  # the retry overwrote the same reading


def test_a_missing_identity_is_a_clear_502(
    set_twin: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, app: Callable[[Function], Any],
) -> None:
    set_twin(default="gcp", L4="aws", L5="aws")
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("GCE_METADATA_IP", f"127.0.0.1:{free_port()}")  # nothing listens: no metadata server
    monkeypatch.setenv("GCE_METADATA_DETECT_RETRIES", "1")
    runtime.ID_TOKENS.__init__()  # type: ignore[misc]
    with pytest.raises(UpstreamError) as err:
        runtime.call_function("http://127.0.0.1:9/x", {})
    assert "no identity token for http://127.0.0.1:9/x" in err.value.message


# -- movers on Cloud Storage --------------------------------------------------------------------


def test_cold_to_archive_mover_moves_old_objects_locally_and_to_a_remote_archive(
    app: Callable[[Function], Any], set_twin: Callable[..., Any], tokens: None, gcs: Any,
    aws_receivers: ThreadedServer, aws: Client, twin_name: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    cold = gcs.bucket(BUCKETS["cold"])
    for key in ("s1/a/chunk-00000.json", "s1/b/chunk-00000.json"):
        cold.blob(key).upload_from_string(b'[{"t":1}]')
    later = datetime.now(UTC) + timedelta(days=91)
    schedule = {runtime.SCHEDULE_TIME_HEADER: later.strftime("%Y-%m-%dT%H:%M:%SZ")}
    mover = app(Function.COLD_TO_ARCHIVE_MOVER).test_client()

    set_twin(default="gcp", L4="aws", L5="aws", cold_storage_days=90)
    nothing = mover.post("/", json={}, headers={runtime.SCHEDULE_TIME_HEADER: datetime.now(UTC).isoformat()})
    assert nothing.status_code == 200 and nothing.get_json()["archived"] == []
    moved = mover.post("/", json={}, headers=schedule)
    assert moved.status_code == 200 and moved.get_json()["archived"] == ["s1/a/chunk-00000.json", "s1/b/chunk-00000.json"]
    assert list(gcs.list_blobs(BUCKETS["cold"])) == []
    assert [b.storage_class for b in gcs.list_blobs(BUCKETS["archive"])] == [ARCHIVE_STORAGE_CLASS] * 2
    assert gcs.bucket(BUCKETS["archive"]).blob("s1/a/chunk-00000.json").download_as_bytes() == b'[{"t":1}]'

    # Archive on AWS: the remote archive writer gets the same bytes, the cold copy goes.
    cold.blob("s2/c/chunk-00000.json").upload_from_string(b'[{"t":2}]')
    set_twin(default="gcp", L3_archive="aws", L4="aws", L5="aws", cold_storage_days=90)
    monkeypatch.setenv(str(Setting.REMOTE_ARCHIVE_WRITER_URL), f"{aws_receivers.url}/{Function.ARCHIVE_WRITER}")
    remote = mover.post("/", json={}, headers=schedule)
    assert remote.status_code == 200 and remote.get_json()["remote"] is True
    # DEEP_ARCHIVE objects cannot be read back without a restore: the ETag is the MD5 of the bytes.
    head = aws("s3").head_object(Bucket=AwsNaming(twin_name).archive_bucket(), Key="s2/c/chunk-00000.json")
    assert head["StorageClass"] == "DEEP_ARCHIVE"
    assert head["ETag"].strip('"') == hashlib.md5(b'[{"t":2}]').hexdigest()
    assert list(gcs.list_blobs(BUCKETS["cold"])) == []
    bad = mover.post("/", json={}, headers={runtime.SCHEDULE_TIME_HEADER: "yesterday"})
    assert bad.status_code == 400 and runtime.SCHEDULE_TIME_HEADER in bad.get_json()["error"]


# -- event checker ------------------------------------------------------------------------------


def test_event_checker_fires_on_the_reading_and_reports_what_gcp_cannot_start(
    app: Callable[[Function], Any], set_twin: Callable[..., Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_twin(default="gcp", L4="aws", L5="aws")
    rules = [{"condition": "s1.s1.temperature > DOUBLE(30)", "action": {"type": "workflow", "functionName": "n"}},
             {"condition": "other.other.temperature > DOUBLE(30)", "action": {"type": "function", "functionName": "f"}},
             {"condition": "s1.s1.temperature > other.other.temperature", "action": {"type": "function", "functionName": "f"}}]
    monkeypatch.setenv(str(Setting.EVENT_RULES), json.dumps(rules))
    monkeypatch.setenv(str(Setting.WORKFLOW_NAME), "projects/p/locations/l/workflows/w")
    client = app(Function.EVENT_CHECKER).test_client()
    hot = client.post("/", json={"device_id": "s1", "timestamp": "2025-01-31T12:00:00Z", "temperature": 35})
    assert hot.status_code == 200
    body = hot.get_json()
    assert body["fired"] == ["s1.s1.temperature > DOUBLE(30)"]
    assert body["skipped"] == ["s1.s1.temperature > other.other.temperature"]  # no twin service to ask
    assert body["not_started"] == ["workflow: starting Cloud Workflows executions is not supported on GCP yet "
                                   "(WORKFLOW_NAME wired)"]
    cool = client.post("/", json={"device_id": "s1", "timestamp": "2025-01-31T12:00:00Z", "temperature": 3}).get_json()
    assert cool["fired"] == [] and "not_started" not in cool
    monkeypatch.setenv(str(Setting.EVENT_RULES), "{not json")
    broken = client.post("/", json={"device_id": "s1", "temperature": 3})
    assert broken.status_code == 500 and str(Setting.EVENT_RULES) in broken.get_json()["error"]


def test_event_checker_calls_the_actions_function_with_an_id_token_and_sends_feedback_across(
    app: Callable[[Function], Any], set_twin: Callable[..., Any], issuer: TokenIssuer, tokens: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An action's rule fires: its own function (private) gets `{"e": rule, "reading": ...}` with an
    ID token for its URL; the rule's feedback goes to `event-feedback` on L1's cloud (AWS here) in
    the envelope, with the inter-cloud token."""
    set_twin(default="gcp", L1="aws", L4="aws", L5="aws")
    rule = {"condition": "s1.s1.temperature > DOUBLE(30)",
            "action": {"type": "lambda", "functionName": "cool_down", "autoDeploy": True,
                       "feedback": {"iotDeviceId": "s1", "payload": "hot"}}}
    monkeypatch.setenv(str(Setting.EVENT_RULES), json.dumps([rule]))
    monkeypatch.setenv(str(Setting.USE_FEEDBACK), "true")
    actions: list[Any] = []
    feedback: list[Any] = []

    def recorder(into: list[Any]) -> Any:
        def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
            request = WerkzeugRequest(environ)
            into.append({"body": request.get_json(), "token": request.headers.get("X-Inter-Cloud-Token")})
            return WerkzeugResponse(json.dumps({"ok": True}), content_type="application/json")(environ, start_response)
        return wsgi

    with served(recorder(actions), issuer) as action, served(recorder(feedback)) as receiver:
        monkeypatch.setenv(keyed_setting(Setting.EVENT_ACTION_URL, "cool_down"), action.url)
        monkeypatch.setenv(str(Setting.REMOTE_FEEDBACK_URL), receiver.url)
        client = app(Function.EVENT_CHECKER).test_client()
        hot = client.post("/", json={"device_id": "s1", "timestamp": "2025-01-31T12:00:00Z", "temperature": 35})
        assert hot.status_code == 200, hot.get_data(as_text=True)
        assert hot.get_json()["actions"] == ["cool_down"] and "not_started" not in hot.get_json()
        assert action.refused == 0 and issuer.issued == [action.url]
        assert [a["body"]["e"] for a in actions] == [rule] and actions[0]["body"]["reading"]["temperature"] == 35
        [sent] = feedback
        assert sent["token"] == TOKEN and sent["body"]["payload"]["detail"]["payload"] == "hot"
        # An action the checker has no URL for fails the call (500, named), so the reading is retried.
        monkeypatch.delenv(keyed_setting(Setting.EVENT_ACTION_URL, "cool_down"))
        unwired = client.post("/", json={"device_id": "s1", "timestamp": "2025-01-31T12:00:01Z", "temperature": 35})
        assert unwired.status_code == 500 and "EVENT_ACTION_URL for 'cool_down'" in unwired.get_json()["error"]


# -- Firestore: what the real client sends ------------------------------------------------------


def test_firestore_queries_are_the_indexed_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The request the real client builds for each query (no server needed to build it)."""
    from google.cloud.firestore_v1.types import StructuredQuery

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test-project")
    store = FirestoreHotStore("twin-db", "twin-hot-data")
    ranged = StructuredQuery.pb(store.range_query("s1", "2025-01-01T00:00:00.000Z", "2025-01-02T00:00:00.000Z")._to_protobuf())
    filters = [(f.field_filter.field.field_path, f.field_filter.op, f.field_filter.value.string_value)
               for f in ranged.where.composite_filter.filters]
    op = StructuredQuery.FieldFilter.Operator
    assert filters == [(str(StorageKey.PARTITION), op.EQUAL, "s1"),
                       (str(StorageKey.SORT), op.GREATER_THAN_OR_EQUAL, "2025-01-01T00:00:00.000Z"),
                       (str(StorageKey.SORT), op.LESS_THAN_OR_EQUAL, "2025-01-02T00:00:00.000Z")]
    assert [(o.field.field_path, o.direction) for o in ranged.order_by] == [
        (str(StorageKey.SORT), StructuredQuery.Direction.ASCENDING)]
    assert ranged.from_[0].collection_id == "twin-hot-data"
    latest = StructuredQuery.pb(store.latest_query("s1")._to_protobuf())
    assert latest.limit.value == 1
    assert [(o.field.field_path, o.direction) for o in latest.order_by] == [
        (str(StorageKey.SORT), StructuredQuery.Direction.DESCENDING)]
    expired = StructuredQuery.pb(store.expired_query("2025-01-01T00:00:00.000Z")._to_protobuf())
    assert expired.where.field_filter.op == op.LESS_THAN
    assert store.collection._client._database == "twin-db"
    # One document per reading: deterministic, distinct, not sequential.
    ids = [document_id("s1", f"2025-01-01T00:00:0{i}.000Z") for i in range(5)]
    assert len(set(ids)) == 5 and ids != sorted(ids) and document_id("s1", "x") == document_id("s1", "x")


# -- runtime pieces -----------------------------------------------------------------------------


class _Event(dict[str, Any]):
    def __init__(self, data: Any, kind: str = runtime.PUBSUB_MESSAGE_PUBLISHED) -> None:
        super().__init__(type=kind)
        self.data = data


def test_pubsub_reading_refuses_what_is_not_a_telemetry_message() -> None:
    _, body = pubsub_event({"deviceId": "s1", "x": 1})
    envelope = json.loads(body)
    assert runtime.pubsub_reading(_Event(envelope))["deviceId"] == "s1"  # type: ignore[arg-type]
    for data, kind, path in ((envelope, "google.cloud.storage.object.v1.finalized", "event.type"),
                             ({"message": "x"}, runtime.PUBSUB_MESSAGE_PUBLISHED, "event.data.message"),
                             ({"message": {"data": "%%%"}}, runtime.PUBSUB_MESSAGE_PUBLISHED, "event.data.message.data")):
        with pytest.raises(BadRequest) as err:
            runtime.pubsub_reading(_Event(data, kind))  # type: ignore[arg-type]
        assert err.value.message.startswith(path)


def test_audience_is_the_url_without_query_or_trailing_slash() -> None:
    assert runtime.audience("https://p-abc-ew.a.run.app/?code=secret") == "https://p-abc-ew.a.run.app"
    assert runtime.audience("https://r-p.cloudfunctions.net/t-persister") == "https://r-p.cloudfunctions.net/t-persister"
    with pytest.raises(UpstreamError):
        runtime.call_function("file:///etc/passwd", {})


# -- a package as Cloud Run runs it -------------------------------------------------------------


def _run_package(fn: Function, folder: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """Unzip `fn`'s package and serve it with the functions-framework CLI (a process of its own;
    only the package's folder on PYTHONPATH, so its first-party modules come from the zip)."""
    package = build_cloud_function_package(fn)
    target = folder / str(fn)
    zipfile.ZipFile(io.BytesIO(package.data)).extractall(target)
    port = free_port()
    full_env = {**{k: v for k, v in os.environ.items() if k not in {str(s) for s in Setting}},
                **env, "PYTHONPATH": str(target)}
    check = subprocess.run([sys.executable, "-c", "import payload_functions; print(payload_functions.__file__)"],
                           cwd=target, env=full_env, capture_output=True, text=True, timeout=60)
    assert check.stdout.strip().startswith(str(target)), check.stdout + check.stderr
    process = subprocess.Popen(
        [sys.executable, "-m", "functions_framework", f"--target={package.entry_point}", f"--source={CLOUD_FUNCTION_MAIN}",
         "--host=127.0.0.1", f"--port={port}"], cwd=target, env=full_env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/robots.txt", timeout=2)
        except urllib.error.HTTPError:
            return process, url  # functions-framework answers 404 for robots.txt: it is up
        except OSError:
            if process.poll() is not None:
                raise AssertionError(f"{fn} exited: {process.stderr.read().decode() if process.stderr else ''}") from None
            time.sleep(0.2)
    process.kill()
    raise AssertionError(f"{fn} did not start within 60 s")


@pytest.mark.slow
def test_packages_run_under_functions_framework_with_the_metadata_server_identity(
    tmp_path: Path, set_twin: Callable[..., Any], gcs: Any, issuer: TokenIssuer, gcs_url: str,
) -> None:
    info = set_twin(default="gcp", L1="azure", L4="aws", L5="aws")
    received: list[Any] = []

    def processor(environ: dict[str, Any], start_response: Any) -> Any:
        received.append(WerkzeugRequest(environ).get_json())
        return WerkzeugResponse(json.dumps({"status": "processed"}), content_type="application/json")(
            environ, start_response)

    metadata = f"127.0.0.1:{issuer.port}"
    common = {str(Setting.DIGITAL_TWIN_INFO): info.to_json(), str(Setting.INTER_CLOUD_TOKEN): TOKEN,
              "GCE_METADATA_HOST": metadata, "GCE_METADATA_IP": metadata, "GOOGLE_APPLICATION_CREDENTIALS": ""}
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with served(processor, issuer) as private_processor:
            ingestion, ingestion_url = _run_package(
                Function.INGESTION, tmp_path, {**common, keyed_setting(Setting.PROCESSOR_URL, "s1"): private_processor.url})
            processes.append(ingestion)
            cold, cold_url = _run_package(Function.COLD_WRITER, tmp_path, {
                **common, "STORAGE_EMULATOR_HOST": gcs_url, str(Setting.COLD_GCS_BUCKET): BUCKETS["cold"]})
            processes.append(cold)
            reading = {"device_id": "s1", "timestamp": "2025-01-31T12:00:00Z", "temperature": 1}
            answer = post_json(ingestion_url, build_envelope(reading, "azure", "L2"), token=TOKEN, retries=0)
            assert answer.status == 200 and received == [{**reading, "timestamp": "2025-01-31T12:00:00.000Z"}]
            assert private_processor.refused == 0 and issuer.issued == [private_processor.url]
            chunk = {"device_id": "s1", "chunk_index": 0, "start_timestamp": "2025-01-01T00:00:00Z",
                     "end_timestamp": "2025-01-01T00:00:00Z", "items": [reading]}
            written = post_json(cold_url, chunk, token=TOKEN, retries=0)
            assert written.status == 200
            assert gcs.bucket(BUCKETS["cold"]).get_blob(written.body["key"]).storage_class == COLD_STORAGE_CLASS
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)
