"""The L3 movers run as deployed code, the way an operator runs them, and lose nothing.

For `examples/aws-only` and `examples/azure-only`: deploy, write readings older than the twin's
hot retention straight into hot storage with the real SDK (DynamoDB via boto3, Cosmos DB via
azure-cosmos) plus recent ones, run the hot-to-cold mover (AWS: its EventBridge rule through the
sandbox's `POST /aws/rules/{name}/run`; Azure: `POST /admin/functions/hot-to-cold-mover` with the
master key on the deployed Function App's host, found through the control endpoint's `/hosts`),
and check: every old reading is in cold storage (S3 / Blob) under the shared key scheme with its
values, gone from hot storage; recent ones untouched; a second run moves nothing and loses nothing.

Cold -> archive selects objects by age (last modified). On AWS the mover takes "now" from the
scheduled event's `time`, so running its rule as at a moment past the cold retention archives
them; on Azure the timer uses the wall clock, so it cannot be exercised without waiting 90 days.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from e2e_kit import Deployment, deployment, example, http

from payload_functions.common.keys import cold_chunk_key
from payload_functions.common.telemetry import format_timestamp
from sandbox.aws.schedules import parse_expression
from shared.contracts import Function, Setting
from shared.naming import AwsNaming, AzureNaming

pytestmark = pytest.mark.slow

MOVER = str(Function.HOT_TO_COLD_MOVER)
ARCHIVER = str(Function.COLD_TO_ARCHIVE_MOVER)


def readings(spec: dict[str, Any], days_old: float, count: int, seed: int) -> list[dict[str, Any]]:
    """`count` readings per device, `days_old` days ago (a second apart), distinct values."""
    base = datetime.now(UTC) - timedelta(days=days_old)
    out: list[dict[str, Any]] = []
    for d_index, device in enumerate(spec["devices"]):
        for i in range(count):
            reading: dict[str, Any] = {"device_id": device["id"],
                                       "timestamp": format_timestamp(base + timedelta(seconds=i))}
            for p_index, prop in enumerate(device["properties"]):
                reading[prop["name"]] = round(seed + d_index * 10 + p_index + i * 0.25, 2)
            out.append(reading)
    return out


def expected_chunks(old: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Cold key -> the readings it must hold (one chunk per device: they are small)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for device in sorted({r["device_id"] for r in old}):
        mine = sorted((r for r in old if r["device_id"] == device), key=lambda r: r["timestamp"])
        out[cold_chunk_key(device, mine[0]["timestamp"], mine[-1]["timestamp"], 0)] = mine
    return out


def wait_until(check: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


# --- AWS -------------------------------------------------------------------------------------------

@pytest.fixture  # one test; torn down before the Azure one starts (one local host per process)
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deployment(example("aws-only"), tmp_path_factory.mktemp("movers-aws")) as dep:
        assert dep.view["runtimeStatus"] == "Completed", json.dumps(dep.view)[:3000]
        yield dep


def _dynamo_items(d: Deployment) -> dict[tuple[str, str], dict[str, Any]]:
    from boto3.dynamodb.types import TypeDeserializer

    de = TypeDeserializer()
    db = d.aws_client("dynamodb")
    items: list[dict[str, Any]] = []
    for page in db.get_paginator("scan").paginate(TableName=AwsNaming(d.twin).hot_table(), ConsistentRead=True):
        items.extend(page["Items"])
    out = {}
    for item in items:
        plain = {k: de.deserialize(v) for k, v in item.items()}
        plain = {k: float(v) if isinstance(v, Decimal) else v for k, v in plain.items()}
        out[(plain["device_id"], plain["timestamp"])] = plain
    return out


def _s3_objects(d: Deployment, bucket: str, restore: bool = False) -> dict[str, tuple[bytes, str]]:
    """Key -> (body, storage class); DEEP_ARCHIVE objects are restored first, as on AWS."""
    s3 = d.aws_client("s3")
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            if restore:
                s3.restore_object(Bucket=bucket, Key=obj["Key"], RestoreRequest={"Days": 1})
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            out[obj["Key"]] = (body, obj.get("StorageClass", "STANDARD"))
    return out


def _run_rule(d: Deployment, rule: str, at: datetime | None = None) -> dict[str, Any]:
    body = {"time": at.strftime("%Y-%m-%dT%H:%M:%SZ")} if at is not None else {}
    status, out = http("POST", f"{d.control}/aws/rules/{urllib.parse.quote(rule)}/run", body, timeout=300)
    assert status == 200, out
    assert [i["ok"] for i in out["invocations"]] == [True], out
    return dict(out["invocations"][0]["payload"])


def test_aws_hot_to_cold_then_archive_loses_nothing(aws: Deployment) -> None:
    d = aws
    naming = AwsNaming(d.twin)
    hot_days = int(d.spec["twin"]["hot_storage_days"])
    cold_days = int(d.spec["twin"]["cold_storage_days"])
    # The deployed rules are the ones the plan made, with the mover Lambdas as targets.
    rules = {r["Name"]: r for r in d.aws_client("events").list_rules(NamePrefix=d.twin)["Rules"]}
    assert rules[naming.schedule_rule(MOVER)]["State"] == "ENABLED", rules
    for mover in (MOVER, ARCHIVER):  # the sandbox can evaluate the plan's expressions
        parse_expression(rules[naming.schedule_rule(mover)]["ScheduleExpression"])

    old = readings(d.spec, hot_days + 3, 4, seed=1)
    recent = readings(d.spec, 0.01, 2, seed=100)
    db = d.aws_client("dynamodb")
    from boto3.dynamodb.types import TypeSerializer

    ser = TypeSerializer()
    for r in old + recent:
        db.put_item(TableName=naming.hot_table(),
                    Item={k: ser.serialize(Decimal(repr(v)) if isinstance(v, float) else v) for k, v in r.items()})
    assert len(_dynamo_items(d)) >= len(old) + len(recent)

    first = _run_rule(d, naming.schedule_rule(MOVER))
    assert first["moved"] == len(old) and first["remote"] is False, first
    want = expected_chunks(old)
    assert sorted(first["keys"]) == sorted(want)
    cold = _s3_objects(d, naming.cold_bucket())
    assert set(cold) == set(want), sorted(cold)
    for key, items in want.items():
        body, storage_class = cold[key]
        assert json.loads(body) == items, key  # every value, each reading once
        assert storage_class == "STANDARD_IA"
    hot = _dynamo_items(d)
    assert not any((r["device_id"], r["timestamp"]) in hot for r in old)
    for r in recent:
        assert hot[(r["device_id"], r["timestamp"])] == r

    second = _run_rule(d, naming.schedule_rule(MOVER))
    assert second["moved"] == 0 and second["keys"] == [], second
    assert _s3_objects(d, naming.cold_bucket()) == cold
    assert all(_dynamo_items(d)[(r["device_id"], r["timestamp"])] == r for r in recent)

    # Cold -> archive: nothing is old enough today; as at a moment past the cold retention, all is.
    assert _run_rule(d, naming.schedule_rule(ARCHIVER))["archived"] == []
    later = datetime.now(UTC) + timedelta(days=cold_days + 1)
    archived = _run_rule(d, naming.schedule_rule(ARCHIVER), at=later)
    assert sorted(archived["archived"]) == sorted(want) and archived["remote"] is False, archived
    archive = _s3_objects(d, naming.archive_bucket(), restore=True)
    assert {k: v[0] for k, v in archive.items()} == {k: v[0] for k, v in cold.items()}
    assert {v[1] for v in archive.values()} == {"DEEP_ARCHIVE"}
    assert _s3_objects(d, naming.cold_bucket()) == {}
    assert _run_rule(d, naming.schedule_rule(ARCHIVER), at=later)["archived"] == []
    assert set(_s3_objects(d, naming.archive_bucket(), restore=True)) == set(want)


# --- Azure -----------------------------------------------------------------------------------------

class AzureStores:
    """The twin's hot container and cold/archive Blob containers, found as an operator would:
    ARM for the Cosmos account keys and the mover Function App's settings and master key."""

    def __init__(self, d: Deployment) -> None:
        from azure.cosmos import CosmosClient
        from azure.cosmos.documents import SSLConfiguration
        from azure.mgmt.cosmosdb import CosmosDBManagementClient
        from azure.mgmt.web import WebSiteManagementClient
        from azure.storage.blob import BlobServiceClient

        az = d.azure()
        naming = AzureNaming(d.twin)
        mgmt = CosmosDBManagementClient(az.cred, az.sub, **az.kw)
        account = mgmt.database_accounts.get(az.rg, naming.cosmos_account())
        keys = mgmt.database_accounts.list_keys(az.rg, naming.cosmos_account())
        ssl_config = SSLConfiguration()
        ssl_config.SSLCaCerts = az.ca
        self.hot = CosmosClient(account.document_endpoint, credential=keys.primary_master_key, ssl_config=ssl_config,
                                connection_verify=az.ca).get_database_client(naming.COSMOS_DATABASE) \
            .get_container_client(naming.COSMOS_CONTAINER)
        web = WebSiteManagementClient(az.cred, az.sub, **az.kw)
        self.site = next(s for s in web.web_apps.list_by_resource_group(az.rg)
                         if s.name == naming.function_app("L3_hot"))
        settings = web.web_apps.list_application_settings(az.rg, self.site.name).properties
        self.master_key = web.web_apps.list_host_keys(az.rg, self.site.name).master_key
        self.connection_string = settings[str(Setting.BLOB_CONNECTION_STRING)]
        blob = BlobServiceClient.from_connection_string(self.connection_string, connection_verify=az.ca)
        self.account = blob.account_name
        self.cold_name = settings[str(Setting.COLD_STORAGE_CONTAINER)]
        self.cold = blob.get_container_client(self.cold_name)

    def hot_items(self) -> dict[tuple[str, str], dict[str, Any]]:
        items = self.hot.query_items("SELECT * FROM c", enable_cross_partition_query=True)
        return {(i["device_id"], i["timestamp"]): {k: v for k, v in i.items() if k != "id" and not k.startswith("_")}
                for i in items}

    def cold_blobs(self) -> dict[str, tuple[bytes, str]]:
        return {b.name: (self.cold.download_blob(b.name).readall(), str(b.blob_tier))
                for b in self.cold.list_blobs()}


@pytest.fixture(scope="module")
def azure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    # With Azurite: the storage account the deployment creates through ARM serves Blob.
    with deployment(example("azure-only"), tmp_path_factory.mktemp("movers-azure"), with_blob=True) as dep:
        assert dep.view["runtimeStatus"] == "Completed", json.dumps(dep.view)[:3000]
        yield dep


def _host_logs(d: Deployment, site: str) -> str:
    return "".join(p.read_text(errors="replace")
                   for p in sorted((d.sandbox_dir / "functionapps" / site.lower()).glob("host-*.log")))


def _mover_runs(d: Deployment, site: str) -> list[str]:
    """Outcomes of the mover's manual runs, from the site host's log (the admin API answers 202
    before the run, as on Azure)."""
    return re.findall(rf"timer {MOVER} (succeeded|failed: \w+) \(manual\)", _host_logs(d, site))


def _host_base(d: Deployment, site: str, not_before: str = "") -> str:
    def find() -> str:
        status, hosts = http("GET", f"{d.control}/hosts")
        assert status == 200, hosts
        found = [h["base_url"] for key, h in hosts.items() if key.endswith("/" + site.lower())]
        return found[0] if found and found[0] != not_before else ""

    return str(wait_until(find, f"the Function host of {site}"))


def _admin_run(d: Deployment, stores: AzureStores, timeout: float = 150) -> str:
    """Run the mover through the deployed app's admin API; its outcome once it has finished."""
    base = _host_base(d, stores.site.name)
    before = len(_mover_runs(d, stores.site.name))
    status, body = http("POST", f"{base}/admin/functions/{MOVER}", {"input": ""})
    assert status == 401, body
    status, body = http("POST", f"{base}/admin/functions/{MOVER}", {"input": ""},
                        headers={"x-functions-key": stores.master_key})
    assert status == 202, body
    wait_until(lambda: len(_mover_runs(d, stores.site.name)) > before, "the mover's run to finish", timeout)
    return _mover_runs(d, stores.site.name)[before]


def _put_hot(stores: AzureStores, spec: dict[str, Any], seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    hot_days = int(spec["twin"]["hot_storage_days"])
    old = readings(spec, hot_days + 3, 4, seed=seed)
    recent = readings(spec, 0.01, 2, seed=seed + 100)
    for r in old + recent:
        stores.hot.upsert_item({**r, "id": r["timestamp"]})
    return old, recent


def test_azure_mover_loses_nothing_when_cold_storage_fails(azure: Deployment) -> None:
    """The cold container is deleted through ARM (so the data plane answers ContainerNotFound):
    the write fails, and since the mover deletes only after a successful write, every reading
    stays hot. The container is put back through ARM afterwards, as the deployer made it."""
    from azure.mgmt.storage import StorageManagementClient
    from azure.mgmt.storage.models import BlobContainer

    d = azure
    stores = AzureStores(d)
    az = d.azure()
    storage = StorageManagementClient(az.cred, az.sub, **az.kw)
    container = storage.blob_containers.get(az.rg, stores.account, stores.cold_name)
    storage.blob_containers.delete(az.rg, stores.account, stores.cold_name)
    try:
        old, recent = _put_hot(stores, d.spec, seed=1)
        assert _admin_run(d, stores) == "failed: EventFailed"
        hot = stores.hot_items()
        for r in old + recent:
            assert hot[(r["device_id"], r["timestamp"])] == r
    finally:
        storage.blob_containers.create(az.rg, stores.account, stores.cold_name,
                                       BlobContainer(metadata=container.metadata, public_access=container.public_access))


def test_azure_hot_to_cold_loses_nothing(azure: Deployment) -> None:
    """The deployed package with its own, unmodified settings: its BLOB_CONNECTION_STRING names
    the storage account the deployment created through ARM, whose Blob endpoint the sandbox serves."""
    d = azure
    stores = AzureStores(d)
    # The deployment's own storage account (not Azurite's well-known one), at ARM's Blob endpoint.
    assert stores.account == AzureNaming(d.twin).storage_account()
    assert f"BlobEndpoint={stores.cold.primary_endpoint.rsplit('/', 2)[0]}" in stores.connection_string
    # Left by the previous test (or none): those readings move now too.
    leftover = [r for r in stores.hot_items().values() if r["timestamp"] < format_timestamp(
        datetime.now(UTC) - timedelta(days=int(d.spec["twin"]["hot_storage_days"])))]
    old, recent = _put_hot(stores, d.spec, seed=50)
    want = expected_chunks(old + leftover)

    assert _admin_run(d, stores) == "succeeded"
    cold = stores.cold_blobs()
    assert set(cold) == set(want), sorted(cold)
    for key, items in want.items():
        body, tier = cold[key]
        assert json.loads(body) == items, key  # every value, each reading once, under the shared key scheme
        assert tier == "Cool", key
    hot = stores.hot_items()
    assert not any((r["device_id"], r["timestamp"]) in hot for r in old + leftover)
    for r in recent:
        assert hot[(r["device_id"], r["timestamp"])] == r

    assert _admin_run(d, stores) == "succeeded"
    assert stores.cold_blobs() == cold
    hot = stores.hot_items()
    assert all(hot[(r["device_id"], r["timestamp"])] == r for r in recent)
