"""Azure functions invoked as the host does (`func.HttpRequest` / `func.EventGridEvent` /
`TimerRequest` into the user functions from `get_functions()`), HTTP ones served over real HTTP;
Digital Twins through the real SDK against a recording HTTPS fake with a managed-identity
token endpoint; Blob Storage through Azurite; AWS parts against moto."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
import trustme
from aiohttp import web
from azure.functions.timer import TimerRequest
from payload_helpers import (
    IDENTITY_HEADER_VALUE,
    FakeCosmos,
    FakeTwins,
    ThreadedServer,
    azure_host_app,
    create_table,
    fake_cosmos_app,
    fake_digital_twins_app,
    function_url_app,
    http_functions,
    identity_app,
)

from payload_functions.aws import hot_writer as aws_hot_writer
from payload_functions.aws import persister as aws_persister
from payload_functions.aws.runtime import InvocationFailed
from payload_functions.azure import (
    adt_pusher,
    adt_updater,
    archive_writer,
    cold_to_archive_mover,
    cold_writer,
    dispatcher,
    event_checker,
    hot_reader,
    hot_reader_last_entry,
    hot_to_cold_mover,
    hot_writer,
    ingestion,
    persister,
    processor,
)
from payload_functions.azure.runtime import FUNCTION_KEY_HEADER, IOT_HUB_DEVICE_ID, EventFailed
from payload_functions.common.envelope import build_envelope
from payload_functions.common.http import PostFailed, post_json
from shared.contracts import INTER_CLOUD_TOKEN_HEADER, AdtPush, Function, Setting
from shared.naming import AwsNaming, AzureNaming

MODELS: dict[str, dict[str, Any]] = {
    "dtmi:t:Base;1": {"@id": "dtmi:t:Base;1", "@type": "Interface",
                      "contents": [{"@type": "Property", "name": "lastPressure", "schema": "double"}]},
    "dtmi:t:Sensor;1": {"@id": "dtmi:t:Sensor;1", "@type": "Interface", "extends": "dtmi:t:Base;1",
                        "contents": [{"@type": "Telemetry", "name": "temperature", "schema": "double"},
                                     {"@type": ["Property", "Temperature"], "name": "lastTemperature",
                                      "schema": "double"}]},
}


@dataclass
class Twins:
    state: FakeTwins
    url: str
    identity_requests: list[dict[str, str]]


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, str]:
    authority = trustme.CA()
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return authority, str(path)


@pytest.fixture
def twins(ca: tuple[trustme.CA, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Twins]:
    import ssl

    authority, ca_file = ca
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    state = FakeTwins(models=dict(MODELS), twins={
        "s1": {"$dtId": "s1", "$metadata": {"$model": "dtmi:t:Sensor;1"}},
    })
    requests: list[dict[str, str]] = []
    adt = ThreadedServer(fake_digital_twins_app(state), context).start()
    identity = ThreadedServer(identity_app(requests)).start()
    # The App Service managed-identity protocol: what ManagedIdentityCredential uses on Azure.
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{identity.url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_HEADER_VALUE)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
    monkeypatch.setenv(str(Setting.ADT_INSTANCE_URL), adt.url)
    monkeypatch.setenv(str(Setting.AZURE_CLIENT_ID), "uami-client-id")
    try:
        yield Twins(state, adt.url, requests)
    finally:
        adt.stop()
        identity.stop()


def _app(*modules: Any) -> func.FunctionApp:
    app = func.FunctionApp()
    for module in modules:
        app.register_functions(module.bp)
    return app


@pytest.fixture
def azure_host() -> Iterator[ThreadedServer]:
    app = _app(adt_pusher, ingestion, cold_writer, archive_writer, processor, persister, hot_writer, hot_reader,
               hot_reader_last_entry)
    server = ThreadedServer(azure_host_app(http_functions(app))).start()
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
def recorder() -> Iterator[tuple[ThreadedServer, list[tuple[dict[str, str], Any]]]]:
    seen: list[tuple[dict[str, str], Any]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(({k.lower(): v for k, v in request.headers.items()}, json.loads(await request.read())))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/{tail:.*}", record)
    server = ThreadedServer(app).start()
    try:
        yield server, seen
    finally:
        server.stop()


def _function(app: func.FunctionApp, name: str) -> Callable[..., Any]:
    return next(f.get_user_function() for f in app.get_functions() if f.get_function_name() == name)


def _event(data: dict[str, Any]) -> func.EventGridEvent:
    return func.EventGridEvent(id="e1", data=data, topic="/subscriptions/x/iothubs/hub", subject="devices/x",
                               event_type="Microsoft.Devices.DeviceTelemetry", event_time=dt.datetime.now(dt.UTC),
                               data_version="")


# -- ADT Pusher and Updater ------------------------------------------------------------------


def test_adt_pusher_patches_declared_last_properties_once(
    set_twin: Callable[..., Any], tokens: dict[str, str], twins: Twins, azure_host: ThreadedServer,
) -> None:
    set_twin(L2="aws", L4="azure")
    url = f"{azure_host.url}/api/{Function.ADT_PUSHER}"
    body = {str(AdtPush.DEVICE_ID): "s1", str(AdtPush.TELEMETRY): {"temperature": 28.5, "pressure": 3, "humidity": 40},
            str(AdtPush.TIMESTAMP): "2025-01-31T12:00:00.000Z"}
    answer = post_json(url, build_envelope(body, "aws", "L4"), token=tokens["new"])
    assert answer.status == 200
    assert answer.body == {"status": "patched", "twin_id": "s1", "patched": ["lastPressure", "lastTemperature"],
                           "skipped": ["humidity"], "stale": []}
    # Each value carries the reading's time as its property's sourceTime (newest wins on the twin).
    stamp = "2025-01-31T12:00:00.000Z"
    assert twins.state.patches == [("s1", [
        {"op": "add", "path": "/lastPressure", "value": 3},
        {"op": "add", "path": "/$metadata/lastPressure/sourceTime", "value": stamp},
        {"op": "add", "path": "/lastTemperature", "value": 28.5},
        {"op": "add", "path": "/$metadata/lastTemperature/sourceTime", "value": stamp}])]
    # The SDK authenticated with the user-assigned identity's token for the ADT resource.
    assert twins.identity_requests and twins.identity_requests[0]["client_id"] == "uami-client-id"
    assert twins.identity_requests[0]["resource"].startswith("https://digitaltwins.azure.net")
    assert all(a == "Bearer mi-token" for a in twins.state.auth)
    # A flat reading works too; previous token accepted.
    flat = post_json(url, {"iotDeviceId": "s1", "time": "2025-01-31T12:00:01Z", "temperature": 1}, token=tokens["old"])
    assert flat.body["patched"] == ["lastTemperature"]
    assert len(twins.state.patches) == 2


@pytest.mark.parametrize(("token", "status"), [(None, 401), ("wrong", 401)])
def test_adt_pusher_refuses_bad_tokens_before_touching_the_twin(
    set_twin: Callable[..., Any], tokens: dict[str, str], twins: Twins, azure_host: ThreadedServer,
    token: str | None, status: int,
) -> None:
    set_twin()
    with pytest.raises(PostFailed) as err:
        post_json(f"{azure_host.url}/api/{Function.ADT_PUSHER}", {"device_id": "s1", "telemetry": {"temperature": 1}},
                  token=token, retries=0)
    assert err.value.upstream_status == status and twins.state.patches == [] and twins.state.auth == []


def test_adt_pusher_is_503_until_the_instance_url_exists(
    set_twin: Callable[..., Any], tokens: dict[str, str], azure_host: ThreadedServer,
) -> None:
    set_twin()
    with pytest.raises(PostFailed) as err:
        post_json(f"{azure_host.url}/api/{Function.ADT_PUSHER}", {"device_id": "s1", "telemetry": {"t": 1}},
                  token=tokens["new"], retries=0)
    assert err.value.upstream_status == 503 and str(Setting.ADT_INSTANCE_URL) in err.value.message


def test_adt_updater_unwraps_iot_hub_events(set_twin: Callable[..., Any], twins: Twins, twin_name: str) -> None:
    set_twin(default="azure")
    update = _function(_app(adt_updater), str(Function.ADT_UPDATER))
    body = base64.b64encode(json.dumps({"temperature": 7, "time": "2025-01-01T00:00:00Z"}).encode()).decode()
    update(_event({"body": body, "systemProperties": {IOT_HUB_DEVICE_ID: AzureNaming(twin_name).iot_device("s1")}}))
    assert twins.state.patches == [("s1", [{"op": "add", "path": "/lastTemperature", "value": 7},
                                           {"op": "add", "path": "/$metadata/lastTemperature/sourceTime",
                                            "value": "2025-01-01T00:00:00.000Z"}])]
    with pytest.raises(EventFailed, match="no device id"):
        update(_event({"body": {"temperature": 1}, "systemProperties": {}}))
    with pytest.raises(EventFailed, match="not JSON"):
        update(_event({"body": "%%%", "systemProperties": {IOT_HUB_DEVICE_ID: "s1"}}))


# -- AWS persister -> Azure ADT Pusher, end to end over HTTP --------------------------------------


@pytest.fixture
def aws_table(aws: Callable[[str], Any], twin_name: str, monkeypatch: pytest.MonkeyPatch) -> str:
    name = AwsNaming(twin_name).hot_table()
    create_table(aws, name)
    monkeypatch.setenv(str(Setting.DYNAMODB_TABLE_NAME), name)
    return name


def test_remote_persister_updates_the_twin_through_the_pusher(
    set_twin: Callable[..., Any], tokens: dict[str, str], twins: Twins, azure_host: ThreadedServer,
    aws_table: str, aws: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_twin(default="aws", L4="azure")
    monkeypatch.setenv(str(Setting.REMOTE_ADT_PUSHER_URL), f"{azure_host.url}/api/{Function.ADT_PUSHER}")
    out = aws_persister.handler({"iotDeviceId": "s1", "time": "2025-01-31T12:00:00Z", "temperature": 30})
    assert out["stored"] == "local" and out["twin"]["patched"] == ["lastTemperature"]
    assert twins.state.patches == [("s1", [{"op": "add", "path": "/lastTemperature", "value": 30},
                                           {"op": "add", "path": "/$metadata/lastTemperature/sourceTime",
                                            "value": "2025-01-31T12:00:00.000Z"}])]


def test_failed_twin_push_fails_the_invocation_with_the_reading_stored(
    set_twin: Callable[..., Any], tokens: dict[str, str], twins: Twins, azure_host: ThreadedServer,
    aws_table: str, aws: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_twin(default="aws", L4="azure")
    monkeypatch.setenv(str(Setting.REMOTE_ADT_PUSHER_URL), f"{azure_host.url}/api/{Function.ADT_PUSHER}")
    with pytest.raises(InvocationFailed) as err:
        aws_persister.handler({"iotDeviceId": "no-such-twin", "time": "2025-01-31T12:00:00Z", "temperature": 30})
    message = str(err.value)
    assert "no-such-twin@2025-01-31T12:00:00.000Z is stored" in message and "answered 502" in message
    assert "token-new" not in message
    items = aws("dynamodb").scan(TableName=aws_table)["Items"]
    assert [i["device_id"]["S"] for i in items] == ["no-such-twin"]
    assert twins.state.patches == []


# -- Azure persister / processor (hot storage elsewhere, twin patched directly) --------------------


def test_azure_processor_and_persister_store_remotely_and_patch_the_twin(
    set_twin: Callable[..., Any], tokens: dict[str, str], twins: Twins, azure_host: ThreadedServer,
    aws_table: str, aws: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # L1 on AWS, L2 and L4 on Azure: the Azure persister owns the twin update (persister-direct).
    set_twin(default="azure", L1="aws", L3_hot="aws")
    hot = ThreadedServer(function_url_app({str(Function.HOT_WRITER): aws_hot_writer.handler})).start()
    try:
        monkeypatch.setenv(str(Setting.REMOTE_WRITER_URL), f"{hot.url}/{Function.HOT_WRITER}")
        answer = post_json(f"{azure_host.url}/api/{Function.PROCESSOR}",
                           {"iotDeviceId": "s1", "time": "2025-01-31T12:00:00Z", "temperature": 12})
    finally:
        hot.stop()
    assert answer.body["status"] == "processed"
    assert twins.state.patches == [("s1", [{"op": "add", "path": "/lastTemperature", "value": 12},
                                           {"op": "add", "path": "/$metadata/lastTemperature/sourceTime",
                                            "value": "2025-01-31T12:00:00.000Z"}])]
    assert len(aws("dynamodb").scan(TableName=aws_table)["Items"]) == 1


# -- Dispatcher and ingestion ------------------------------------------------------------------------


def test_dispatcher_posts_to_the_processor_with_the_function_key(
    set_twin: Callable[..., Any], twin_name: str, recorder: tuple[ThreadedServer, list[Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, seen = recorder
    set_twin(default="azure")
    monkeypatch.setenv(str(Setting.TARGET_FUNCTION), str(Function.PROCESSOR))
    monkeypatch.setenv(str(Setting.PROCESSOR_URL), f"{server.url}/api/processor")
    monkeypatch.setenv(str(Setting.PROCESSOR_KEY), "fn-key")
    dispatch = _function(_app(dispatcher), str(Function.DISPATCHER))
    dispatch(_event({"body": {"temperature": 3, "time": 1738324800000},
                     "systemProperties": {IOT_HUB_DEVICE_ID: AzureNaming(twin_name).iot_device("s1")}}))
    headers, body = seen[0]
    assert headers[FUNCTION_KEY_HEADER] == "fn-key"
    assert body == {"device_id": "s1", "timestamp": "2025-01-31T12:00:00.000Z", "temperature": 3}
    monkeypatch.delenv(str(Setting.PROCESSOR_KEY))
    with pytest.raises(EventFailed, match=f"setting {Setting.PROCESSOR_KEY} is not configured"):
        dispatch(_event({"body": {"iotDeviceId": "s1"}}))


def test_dispatcher_forwards_to_remote_ingestion_through_the_connector(
    set_twin: Callable[..., Any], tokens: dict[str, str], recorder: tuple[ThreadedServer, list[Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, seen = recorder
    set_twin(default="azure", L2="aws")
    monkeypatch.setenv(str(Setting.TARGET_FUNCTION), str(Function.CONNECTOR))
    monkeypatch.setenv(str(Setting.REMOTE_INGESTION_URL), f"{server.url}/ingestion")
    dispatch = _function(_app(dispatcher), str(Function.DISPATCHER))
    dispatch(_event({"body": {"iotDeviceId": "s9", "time": "2025-01-31T12:00:00Z", "pressure": 2}}))
    headers, body = seen[0]
    assert headers[INTER_CLOUD_TOKEN_HEADER.lower()] == "token-new"
    assert body["source_cloud"] == "azure" and body["target_layer"] == "L2"
    assert body["payload"] == {"device_id": "s9", "timestamp": "2025-01-31T12:00:00.000Z", "pressure": 2}


def test_ingestion_checks_token_and_hands_on_to_the_processor(
    set_twin: Callable[..., Any], tokens: dict[str, str], azure_host: ThreadedServer,
    recorder: tuple[ThreadedServer, list[Any]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, seen = recorder
    set_twin(default="azure", L1="aws")
    monkeypatch.setenv(str(Setting.PROCESSOR_URL), f"{server.url}/api/processor")
    monkeypatch.setenv(str(Setting.PROCESSOR_KEY), "fn-key")
    url = f"{azure_host.url}/api/{Function.INGESTION}"
    envelope = build_envelope({"iotDeviceId": "s1", "time": "2025-01-31T12:00:00Z"}, "aws", "L2")
    answer = post_json(url, envelope, token=tokens["new"])
    assert answer.body["status"] == "accepted" and answer.body["trace_id"] == envelope["trace_id"]
    assert seen[0][1]["device_id"] == "s1"
    with pytest.raises(PostFailed) as err:
        post_json(url, envelope, token="nope", retries=0)
    assert err.value.upstream_status == 401 and len(seen) == 1


# -- Blob receivers and mover through Azurite --------------------------------------------------------


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from sandbox.blob.azurite import Azurite
    from sandbox.core.context import SandboxContext

    state = Path(tmp_path_factory.mktemp("azurite"))
    emulator = Azurite(SandboxContext(state_dir=state), state)
    endpoints = emulator.start()
    try:
        yield str(endpoints["connection_string"])
    finally:
        emulator.stop()


def test_blob_writers_and_cold_to_archive_mover(
    set_twin: Callable[..., Any], tokens: dict[str, str], azure_host: ThreadedServer, azurite: str,
    twin_name: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite)
    cold, archive = f"cold-{twin_name}", f"archive-{twin_name}"
    service.create_container(cold)
    service.create_container(archive)
    set_twin(default="azure", cold_storage_days=0)
    monkeypatch.setenv(str(Setting.BLOB_CONNECTION_STRING), azurite)
    monkeypatch.setenv(str(Setting.COLD_STORAGE_CONTAINER), cold)
    monkeypatch.setenv(str(Setting.ARCHIVE_STORAGE_CONTAINER), archive)
    chunk = {"device_id": "s1", "chunk_index": 0, "start_timestamp": "2025-01-01T00:00:00Z",
             "end_timestamp": "2025-01-02T00:00:00Z", "items": [{"device_id": "s1", "t": 1}], "source_cloud": "aws"}
    answer = post_json(f"{azure_host.url}/api/{Function.COLD_WRITER}", chunk, token=tokens["new"])
    key = "s1/2025-01-01T00:00:00.000Z-2025-01-02T00:00:00.000Z/chunk-00000.json"
    assert answer.body == {"written": 1, "key": key}
    post_json(f"{azure_host.url}/api/{Function.COLD_WRITER}", chunk, token=tokens["new"])  # idempotent
    blob = service.get_blob_client(cold, key)
    assert json.loads(blob.download_blob().readall()) == chunk["items"]
    assert blob.get_blob_properties().blob_tier == "Cool"
    with pytest.raises(PostFailed) as err:
        post_json(f"{azure_host.url}/api/{Function.COLD_WRITER}", {**chunk, "chunk_index": "0"}, token=tokens["new"],
                  retries=0)
    assert err.value.upstream_status == 400 and "body.chunk_index" in err.value.message
    mover = _function(_app(cold_to_archive_mover), str(Function.COLD_TO_ARCHIVE_MOVER))
    mover(TimerRequest(past_due=False))
    assert [b.name for b in service.get_container_client(cold).list_blobs()] == []
    moved = service.get_blob_client(archive, key).get_blob_properties()
    assert moved.blob_tier == "Archive"
    answer = post_json(f"{azure_host.url}/api/{Function.ARCHIVE_WRITER}",
                       {"object_key": "s2/x/chunk-00000.json", "data": "[]", "source_cloud": "aws"}, token=tokens["new"])
    assert answer.body == {"archived": True, "key": "s2/x/chunk-00000.json"}


# -- Cosmos DB hot storage (a recording gateway fake; azure-cosmos over HTTP) ------------------------


@pytest.fixture
def cosmos(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCosmos]:
    state = FakeCosmos()
    server = ThreadedServer(fake_cosmos_app(state)).start()
    monkeypatch.setenv(str(Setting.COSMOS_DB_ENDPOINT), f"{server.url}/")
    monkeypatch.setenv(str(Setting.COSMOS_DB_KEY), base64.b64encode(b"k" * 64).decode())
    monkeypatch.setenv(str(Setting.COSMOS_DB_DATABASE), AzureNaming.COSMOS_DATABASE)
    monkeypatch.setenv(str(Setting.COSMOS_DB_CONTAINER), AzureNaming.COSMOS_CONTAINER)
    try:
        yield state
    finally:
        server.stop()


def _stored(cosmos: FakeCosmos) -> list[dict[str, Any]]:
    return cosmos.all(AzureNaming.COSMOS_DATABASE, AzureNaming.COSMOS_CONTAINER)


def test_cosmos_hot_writer_upserts_idempotently_and_readers_answer_twinmaker_shapes(
    set_twin: Callable[..., Any], tokens: dict[str, str], azure_host: ThreadedServer, cosmos: FakeCosmos,
) -> None:
    set_twin(default="azure")
    for day in (1, 2, 3, 3):
        answer = post_json(f"{azure_host.url}/api/{Function.HOT_WRITER}",
                           {"iotDeviceId": "s1", "time": f"2025-01-0{day}T00:00:00Z", "temperature": day},
                           token=tokens["new"])
        assert answer.body["status"] == "written"
    stored = _stored(cosmos)
    assert len(stored) == 3 and all(i["id"] == i["timestamp"] for i in stored)
    request = {"componentName": "s1", "entityId": "room-1", "selectedProperties": ["temperature"],
               "startTime": "2025-01-02T00:00:00Z", "endTime": "2025-01-03T00:00:00Z",
               "properties": {"temperature": {"definition": {"dataType": {"type": "DOUBLE"}}}}}
    series = post_json(f"{azure_host.url}/api/{Function.HOT_READER}", request, token=tokens["old"]).body
    assert [v["value"] for v in series["propertyValues"][0]["values"]] == [{"doubleValue": 2.0}, {"doubleValue": 3.0}]
    latest = post_json(f"{azure_host.url}/api/{Function.HOT_READER_LAST_ENTRY}", request, token=tokens["new"]).body
    assert latest["propertyValues"]["temperature"]["time"] == "2025-01-03T00:00:00.000Z"
    with pytest.raises(PostFailed) as err:
        post_json(f"{azure_host.url}/api/{Function.HOT_READER}", request, retries=0)
    assert err.value.upstream_status == 401


def test_azure_persister_stores_then_patches_and_fails_after_storing(
    set_twin: Callable[..., Any], tokens: dict[str, str], twins: Twins, azure_host: ThreadedServer,
    cosmos: FakeCosmos,
) -> None:
    set_twin(default="azure", L1="aws")  # persister-direct: this persister owns the twin update
    url = f"{azure_host.url}/api/{Function.PERSISTER}"
    answer = post_json(url, {"device_id": "s1", "timestamp": "2025-01-31T12:00:00Z", "temperature": 4})
    assert answer.body["stored"] == "local" and answer.body["twin"]["patched"] == ["lastTemperature"]
    with pytest.raises(PostFailed) as err:
        post_json(url, {"device_id": "ghost", "timestamp": "2025-01-31T12:00:00Z", "temperature": 4}, retries=0)
    assert err.value.upstream_status == 502 and "ghost@2025-01-31T12:00:00.000Z is stored" in err.value.message
    assert sorted(i["device_id"] for i in _stored(cosmos)) == ["ghost", "s1"]
    assert twins.state.patches == [("s1", [{"op": "add", "path": "/lastTemperature", "value": 4},
                                           {"op": "add", "path": "/$metadata/lastTemperature/sourceTime",
                                            "value": "2025-01-31T12:00:00.000Z"}])]


def test_azure_hot_to_cold_mover_moves_expired_readings_to_blob(
    set_twin: Callable[..., Any], cosmos: FakeCosmos, azurite: str, twin_name: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from azure.storage.blob import BlobServiceClient

    cold = f"cold-{twin_name}"
    BlobServiceClient.from_connection_string(azurite).create_container(cold)
    set_twin(default="azure", hot_storage_days=1)
    monkeypatch.setenv(str(Setting.BLOB_CONNECTION_STRING), azurite)
    monkeypatch.setenv(str(Setting.COLD_STORAGE_CONTAINER), cold)
    recent = dt.datetime.now(dt.UTC).isoformat()
    for when in ("2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z", recent):
        persister_store_put({"device_id": "s1", "timestamp": when, "t": 1})
    _function(_app(hot_to_cold_mover), str(Function.HOT_TO_COLD_MOVER))(TimerRequest(past_due=False))
    assert len(_stored(cosmos)) == 1
    key = "s1/2025-01-01T00:00:00.000Z-2025-01-02T00:00:00.000Z/chunk-00000.json"
    blob = BlobServiceClient.from_connection_string(azurite).get_blob_client(cold, key)
    assert len(json.loads(blob.download_blob().readall())) == 2 and blob.get_blob_properties().blob_tier == "Cool"


def persister_store_put(reading: dict[str, Any]) -> None:
    """Seed Cosmos through the same store class the functions use."""
    from payload_functions.azure.cosmos_store import hot_store
    from payload_functions.common.settings import Settings
    from payload_functions.common.telemetry import normalise

    hot_store(Settings(hot_writer.READS)).put(normalise(reading))


def test_azure_event_checker_starts_the_logic_app_with_live_twin_values(
    set_twin: Callable[..., Any], twins: Twins, recorder: tuple[ThreadedServer, list[Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, seen = recorder
    set_twin(default="azure")
    twins.state.twins["machine-1"] = {"$dtId": "machine-1", "$metadata": {"$model": "dtmi:t:Base;1"},
                                      "lastPressure": 5}
    rules = [{"condition": "room-1.s1.pressure > machine-1.pump.pressure",
              "action": {"type": "logic_app", "functionName": "notify"}},
             {"condition": "room-1.s1.pressure > DOUBLE(100)", "action": {"type": "logic_app", "functionName": "x"}},
             {"condition": "room-1.s1.pressure > DOUBLE(1)", "action": {"type": "function", "functionName": "y"}}]
    monkeypatch.setenv(str(Setting.EVENT_RULES), json.dumps(rules))
    monkeypatch.setenv(str(Setting.LOGIC_APP_TRIGGER_URL), f"{server.url}/workflows/trigger?sig=secret")
    check = _function(_app(event_checker), str(Function.EVENT_CHECKER))
    req = func.HttpRequest("POST", "/api/event-checker", body=json.dumps(
        {"device_id": "s1", "timestamp": "2025-01-01T00:00:00Z", "pressure": 7}).encode())
    res = check(req)
    assert res.status_code == 200
    out = json.loads(res.get_body())
    assert out["fired"] == [rules[0]["condition"], rules[2]["condition"]] and out["not_started"] == ["function"]
    assert len(seen) == 1 and seen[0][1]["event"] == rules[0]
