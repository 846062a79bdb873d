"""The sandbox's Cosmos DB data plane, driven by the real `azure-cosmos` client over HTTPS.

Accounts, databases and containers are made through ARM with azure-mgmt-cosmosdb, as the
deployer does; the data-plane client gets only the account's `documentEndpoint`, a key from
ARM's `listKeys`, and the CA file.
"""

from __future__ import annotations

import importlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.cosmos import CosmosClient
from azure.cosmos.exceptions import (
    CosmosAccessConditionFailedError,
    CosmosHttpResponseError,
    CosmosResourceExistsError,
    CosmosResourceNotFoundError,
)
from azure.mgmt.cosmosdb import CosmosDBManagementClient
from azure.mgmt.cosmosdb.models import (
    ContainerPartitionKey,
    DatabaseAccountCreateUpdateParameters,
    DatabaseAccountCreateUpdateProperties,
    Location,
    SqlContainerCreateUpdateParameters,
    SqlContainerCreateUpdateProperties,
    SqlContainerResource,
    SqlDatabaseCreateUpdateParameters,
    SqlDatabaseCreateUpdateProperties,
    SqlDatabaseResource,
)
from azure.mgmt.resource.resources import ResourceManagementClient
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.core.auth import SandboxCredential
from sandbox.cosmos.query import QueryError, execute, parse
from sandbox.server import AZURE_SERVICES, Sandbox

# azure-cosmos never verifies TLS for 127.0.0.1 (it treats it as the local emulator), whatever
# connection_verify says; urllib3 warns about it on every request.
pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")

MINE = (("sandbox.cosmos", "/cosmos"), ("sandbox.iothub", "/iothub"), ("sandbox.grafana", "/grafana"))


class ServicesSandbox(Sandbox):
    """The sandbox with the Cosmos DB, IoT Hub and Grafana data planes mounted, one line each, as
    `sandbox/server.py` mounts its services (skipped where the server already mounts them)."""

    def build_azure_app(self) -> Any:
        root = super().build_azure_app()
        mounted = {prefix for _, prefix in AZURE_SERVICES}
        for name, prefix in MINE:
            if prefix not in mounted:
                module = importlib.import_module(name)
                module.install(self.ctx)
                root.add_subapp(prefix + "/", module.create_app(self.ctx))
        return root


def mgmt(sb: Sandbox, cls: Any) -> Any:
    e = sb.endpoints["azure"]
    return cls(
        SandboxCredential(e["deployer_principal_id"]),
        e["subscription_id"],
        base_url=e["arm"],
        connection_verify=e["ca_file"],
        polling_interval=0,
    )


@dataclass
class Env:
    sb: ServicesSandbox
    rg: str
    arm: CosmosDBManagementClient
    account: str
    endpoint: str
    keys: Any

    def client(self, key: str | None = None) -> CosmosClient:
        return CosmosClient(self.endpoint, credential=key or self.keys.primary_master_key, connection_verify=self.sb.ca_file)

    def container(self, name: str, pk: str = "/device_id", ttl: int | None = None) -> Any:
        self.arm.sql_resources.begin_create_update_sql_container(
            self.rg,
            self.account,
            "twin",
            name,
            SqlContainerCreateUpdateParameters(
                properties=SqlContainerCreateUpdateProperties(
                    resource=SqlContainerResource(id=name, partition_key=ContainerPartitionKey(paths=[pk], kind="Hash"), default_ttl=ttl)
                )
            ),
        ).result()
        return self.client().get_database_client("twin").get_container_client(name)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    sb = ServicesSandbox(Path(tmp_path_factory.mktemp("cosmos")), with_aws=False, with_blob=False)
    sb.start()
    try:
        rg = "rg-cosmos"
        mgmt(sb, ResourceManagementClient).resource_groups.create_or_update(rg, {"location": "westeurope"})
        arm = mgmt(sb, CosmosDBManagementClient)
        account = f"cosmos-{uuid.uuid4().hex[:8]}"
        acct = arm.database_accounts.begin_create_or_update(
            rg,
            account,
            DatabaseAccountCreateUpdateParameters(
                location="westeurope",
                properties=DatabaseAccountCreateUpdateProperties(
                    locations=[Location(location_name="westeurope", failover_priority=0)]
                ),
            ),
        ).result()
        arm.sql_resources.begin_create_update_sql_database(
            rg,
            account,
            "twin",
            SqlDatabaseCreateUpdateParameters(properties=SqlDatabaseCreateUpdateProperties(resource=SqlDatabaseResource(id="twin"))),
        ).result()
        yield Env(sb, rg, arm, account, acct.document_endpoint, arm.database_accounts.list_keys(rg, account))
    finally:
        sb.stop()


def _reading(device: str, ts: str, temp: float) -> dict[str, Any]:
    return {"id": ts, "device_id": device, "timestamp": ts, "temperature": temp}


def test_document_endpoint_points_at_the_sandbox_and_the_client_starts(env: Env) -> None:
    assert env.endpoint == f"{env.sb.arm_url}/cosmos/{env.account}/"
    client = env.client()
    props = client.get_database_account()
    assert [loc["databaseAccountEndpoint"] for loc in props.WritableLocations] == [env.endpoint]
    db = client.get_database_client("twin").read()
    assert db["id"] == "twin"
    env.container("readings")
    coll = client.get_database_client("twin").get_container_client("readings").read()
    assert coll["partitionKey"]["paths"] == ["/device_id"]
    assert "readings" in [c["id"] for c in client.get_database_client("twin").list_containers()]


def test_upsert_read_query_and_delete_through_the_real_client(env: Env) -> None:
    c = env.container("hot")
    for i in range(5):
        c.upsert_item(_reading("dev-1", f"2025-01-01T00:00:0{i}Z", 20.0 + i))
    c.upsert_item(_reading("dev-2", "2025-01-01T00:00:09Z", 99.0))
    # Upsert of the same id replaces: still five items for dev-1.
    c.upsert_item(_reading("dev-1", "2025-01-01T00:00:04Z", 30.5))

    item = c.read_item("2025-01-01T00:00:04Z", partition_key="dev-1")
    assert item["temperature"] == 30.5 and item["_etag"] and item["_ts"] > 0

    rows = list(
        c.query_items(
            "SELECT * FROM c WHERE c.device_id = @d AND c.timestamp >= @t ORDER BY c.timestamp DESC",
            parameters=[{"name": "@d", "value": "dev-1"}, {"name": "@t", "value": "2025-01-01T00:00:02Z"}],
            partition_key="dev-1",
        )
    )
    assert [r["timestamp"][-3:] for r in rows] == ["04Z", "03Z", "02Z"]

    latest = list(
        c.query_items(
            "SELECT TOP 1 * FROM c WHERE c.device_id = @d ORDER BY c.timestamp DESC",
            parameters=[{"name": "@d", "value": "dev-1"}],
            partition_key="dev-1",
        )
    )
    assert len(latest) == 1 and latest[0]["temperature"] == 30.5

    old = list(
        c.query_items(
            "SELECT * FROM c WHERE c.timestamp < @c",
            parameters=[{"name": "@c", "value": "2025-01-01T00:00:02Z"}],
            enable_cross_partition_query=True,
        )
    )
    assert sorted(r["id"][-3:] for r in old) == ["00Z", "01Z"]
    assert list(c.query_items("SELECT VALUE COUNT(1) FROM c", partition_key="dev-2")) == [1]

    odd = {"id": "a b+ü=1", "device_id": "dev 3/ä", "timestamp": "x"}
    c.upsert_item(odd)
    assert c.read_item("a b+ü=1", partition_key="dev 3/ä")["id"] == "a b+ü=1"

    c.delete_item("2025-01-01T00:00:00Z", partition_key="dev-1")
    with pytest.raises(CosmosResourceNotFoundError):
        c.read_item("2025-01-01T00:00:00Z", partition_key="dev-1")
    with pytest.raises(CosmosResourceNotFoundError):
        c.delete_item("2025-01-01T00:00:00Z", partition_key="dev-1")
    # The same id in another partition is another item.
    with pytest.raises(CosmosResourceNotFoundError):
        c.read_item("2025-01-01T00:00:09Z", partition_key="dev-1")


def test_create_conflict_etag_precondition_and_wrong_partition_key(env: Env) -> None:
    c = env.container("conflicts")
    created = c.create_item(_reading("d", "t1", 1.0))
    with pytest.raises(CosmosResourceExistsError) as exists:
        c.create_item(_reading("d", "t1", 2.0))
    assert exists.value.status_code == 409
    replaced = c.replace_item("t1", _reading("d", "t1", 3.0), etag=created["_etag"], match_condition=_if_not_modified())
    with pytest.raises(CosmosAccessConditionFailedError):
        c.replace_item("t1", _reading("d", "t1", 4.0), etag=created["_etag"], match_condition=_if_not_modified())
    assert c.read_item("t1", partition_key="d")["_etag"] == replaced["_etag"]
    with pytest.raises(CosmosHttpResponseError) as bad:
        c.query_items("SELEKT * FROM c", partition_key="d").next()
    assert bad.value.status_code == 400 and "Syntax error" in str(bad.value.message)


def _if_not_modified() -> Any:
    from azure.core import MatchConditions

    return MatchConditions.IfNotModified


def test_query_pages_follow_the_continuation(env: Env) -> None:
    c = env.container("paged")
    for i in range(7):
        c.upsert_item(_reading("p", f"t{i}", float(i)))
    pages = list(
        c.query_items("SELECT * FROM c ORDER BY c.temperature", partition_key="p", max_item_count=3).by_page()
    )
    sizes = [len(list(p)) for p in pages]
    assert sizes == [3, 3, 1]
    everything = [r["id"] for r in c.query_items("SELECT * FROM c ORDER BY c.temperature", partition_key="p", max_item_count=3)]
    assert everything == [f"t{i}" for i in range(7)]


def test_bad_key_is_401_and_readonly_key_cannot_write(env: Env) -> None:
    wrong = "A" * 86 + "=="
    with pytest.raises(CosmosHttpResponseError) as bad:
        env.client(wrong)
    assert bad.value.status_code == 401
    assert env.keys.primary_master_key not in str(bad.value)

    c = env.container("readonly")
    c.upsert_item(_reading("r", "t", 1.0))
    ro = env.client(env.keys.primary_readonly_master_key).get_database_client("twin").get_container_client("readonly")
    assert ro.read_item("t", partition_key="r")["temperature"] == 1.0
    assert len(list(ro.query_items("SELECT * FROM c", partition_key="r"))) == 1
    with pytest.raises(CosmosHttpResponseError) as denied:
        ro.upsert_item(_reading("r", "t2", 2.0))
    assert denied.value.status_code == 401

    # A raw request without an authorization header.
    r = requests.get(env.endpoint + "dbs/twin", verify=env.sb.ca_file, timeout=10)
    assert r.status_code == 401 and r.json()["code"] == "Unauthorized"


def test_unknown_database_container_and_account_are_404(env: Env) -> None:
    client = env.client()
    with pytest.raises(CosmosResourceNotFoundError):
        client.get_database_client("nope").read()
    with pytest.raises(CosmosResourceNotFoundError):
        client.get_database_client("twin").get_container_client("nope").read()
    r = requests.get(f"{env.sb.arm_url}/cosmos/no-such-account/", verify=env.sb.ca_file, timeout=10)
    assert r.status_code == 404 and r.json()["code"] == "NotFound"


def test_container_deleted_through_arm_disappears_and_ttl_expires_items(env: Env) -> None:
    c = env.container("gone")
    c.upsert_item(_reading("g", "t", 1.0))
    env.arm.sql_resources.begin_delete_sql_container(env.rg, env.account, "twin", "gone").result()
    with pytest.raises(CosmosResourceNotFoundError):
        c.read_item("t", partition_key="g")

    # TTL counts from `_ts`, whole seconds as Cosmos DB keeps it: an item lives between ttl - 1
    # and ttl seconds, so a 1 s TTL could expire it before the read right after its write.
    short = env.container("short", ttl=3)
    short.upsert_item(_reading("s", "t", 1.0))
    assert short.read_item("t", partition_key="s")["id"] == "t"
    time.sleep(3.1)
    with pytest.raises(CosmosResourceNotFoundError):
        short.read_item("t", partition_key="s")


def test_partition_key_header_must_match_the_item(env: Env) -> None:
    c = env.container("pk")
    c.upsert_item({"id": "no-key", "other": 1})  # an item without the key path lands in the undefined partition
    assert [r["id"] for r in c.query_items("SELECT * FROM c", enable_cross_partition_query=True)] == ["no-key"]
    coll = env.sb.ctx.hooks_for("Microsoft.DocumentDB/databaseAccounts")
    backend = coll.owner  # type: ignore[union-attr]
    container = backend.accounts[env.account].databases["twin"].containers["pk"]
    from sandbox.cosmos.models import CosmosError, partition_key_json

    with pytest.raises(CosmosError) as bad:
        container.write_item("rid", {"id": "x", "device_id": "a"}, partition_key_json("b"), "upsert")
    assert bad.value.status == 400 and bad.value.substatus == 1001
    assert json.loads(partition_key_json("a")) == ["a"]


# --- the query engine on its own -----------------------------------------------------------------

DOCS: list[dict[str, Any]] = [
    {"id": "1", "device_id": "a", "t": 3, "tags": ["x"], "nested": {"v": "q"}},
    {"id": "2", "device_id": "a", "t": 1},
    {"id": "3", "device_id": "b", "t": 2, "nested": {"v": "r"}},
    {"id": "4", "device_id": "b", "t": "late"},
    {"id": "5", "device_id": None},
]


def _run(text: str, **params: Any) -> list[Any]:
    return execute(parse(text), {f"@{k}": v for k, v in params.items()}, [dict(d) for d in DOCS])


def test_query_engine_semantics() -> None:
    assert [r["id"] for r in _run("SELECT * FROM c WHERE c.t > 1")] == ["1", "3"]  # "late" > 1 is undefined
    assert [r["id"] for r in _run("SELECT * FROM c ORDER BY c.t DESC")] == ["4", "1", "3", "2", "5"]
    assert _run("SELECT VALUE c.nested.v FROM c") == ["q", "r"]
    assert _run("SELECT c.id, c.nested.v AS v FROM c WHERE IS_DEFINED(c.nested)") == [{"id": "1", "v": "q"}, {"id": "3", "v": "r"}]
    assert _run("SELECT VALUE c.id FROM c WHERE c.device_id IN ('b', 'z') AND NOT (c.id = '3')") == ["4"]
    # "late" = 2 compares a string with a number: undefined, and NOT undefined is still undefined.
    assert _run("SELECT VALUE c.id FROM c WHERE c.device_id = 'b' AND NOT (c.t = 2)") == []
    assert _run("SELECT VALUE c.id FROM c WHERE ARRAY_CONTAINS(c.tags, 'x') OR c.t BETWEEN 1 AND 1") == ["1", "2"]
    assert _run("SELECT TOP @n VALUE c.id FROM c ORDER BY c.id DESC", n=2) == ["5", "4"]
    assert _run("SELECT VALUE c.id FROM c ORDER BY c.id OFFSET 1 LIMIT 2") == ["2", "3"]
    assert _run("SELECT VALUE COUNT(1) FROM c WHERE c.device_id = @d", d="a") == [2]
    assert _run("SELECT VALUE MAX(c.t) FROM c WHERE IS_NUMBER(c.t)") == [3]
    assert _run("SELECT DISTINCT VALUE c.device_id FROM c WHERE IS_STRING(c.device_id)") == ["a", "b"]
    assert _run("SELECT VALUE c['device_id'] || '-' || c.id FROM c WHERE STARTSWITH(c.id, '1')") == ["a-1"]
    assert _run("SELECT VALUE c.id FROM c WHERE c.device_id = null") == ["5"]


@pytest.mark.parametrize(
    "text",
    ["", "SELECT", "SELECT * FROM", "SELECT * FROM c WHERE", "SELECT * FROM c WHERE x.a = 1", "SELECT * FROM c ORDER c.a",
     "SELECT * FROM c WHERE NOPE(c.a)", "SELECT * FROM c WHERE c.a = 'unterminated"],
)
def test_query_engine_rejects_bad_queries(text: str) -> None:
    with pytest.raises(QueryError):
        parse(text)


def test_missing_parameter_is_a_query_error() -> None:
    with pytest.raises(QueryError, match="@d"):
        _run("SELECT * FROM c WHERE c.device_id = @d")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=-50, max_value=50), max_size=20), st.integers(min_value=-50, max_value=50))
def test_query_filter_and_order_match_python(values: list[int], pivot: int) -> None:
    docs = [{"id": str(i), "v": v} for i, v in enumerate(values)]
    rows = execute(parse("SELECT VALUE c.v FROM c WHERE c.v >= @p ORDER BY c.v DESC"), {"@p": pivot}, docs)
    assert rows == sorted((v for v in values if v >= pivot), reverse=True)
