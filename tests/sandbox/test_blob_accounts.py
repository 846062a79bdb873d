"""Storage accounts created through the sandbox's ARM get a working Blob endpoint (Azurite, path
style, behind the recording proxy), checked with the real azure-mgmt-storage and azure-storage-blob
clients and the provider's own connection string."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.storage import StorageManagementClient
from azure.mgmt.storage.models import BlobContainer, Sku, StorageAccountCreateParameters
from azure.storage.blob import BlobServiceClient, StandardBlobTier

from activities.providers.azure.storage_account import connection_string
from sandbox.core.auth import SandboxCredential
from sandbox.core.profiles import Profile
from sandbox.server import Sandbox

LOC = "westeurope"


def make_mgmt_client(sb: Sandbox, cls: Any) -> Any:
    azure = sb.endpoints["azure"]
    cred = SandboxCredential(azure["deployer_principal_id"], azure["tenant_id"])
    return cls(cred, azure["subscription_id"], base_url=sb.arm_url, connection_verify=sb.ca_file, polling_interval=0)


@pytest.fixture(scope="module")
def sb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    sandbox = Sandbox(Path(tmp_path_factory.mktemp("blob-accounts")), with_blob=True, with_aws=False,
                      with_function_apps=False)
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


@pytest.fixture(scope="module")
def clients(sb: Sandbox) -> tuple[ResourceManagementClient, StorageManagementClient]:
    return make_mgmt_client(sb, ResourceManagementClient), make_mgmt_client(sb, StorageManagementClient)


@pytest.fixture
def new_account(sb: Sandbox, clients: tuple[ResourceManagementClient, StorageManagementClient]) -> Callable[[], tuple[str, str, str]]:
    """Create a resource group and a storage account through ARM: (rg, account, connection string)."""
    rm, st = clients

    def make() -> tuple[str, str, str]:
        suffix = uuid.uuid4().hex[:10]
        rg, account = f"rg-{suffix}", f"st{suffix}"
        rm.resource_groups.create_or_update(rg, {"location": LOC})
        created = st.storage_accounts.begin_create(
            rg, account, StorageAccountCreateParameters(sku=Sku(name="Standard_LRS"), kind="StorageV2", location=LOC)
        ).result()
        keys = st.storage_accounts.list_keys(rg, account).keys_property
        endpoints = created.primary_endpoints
        conn = connection_string(account, str(keys[0].value), {"blob": str(endpoints.blob)})
        return rg, account, conn

    return make


def _blob(conn: str, **kwargs: Any) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(conn, **kwargs)


def test_arm_account_serves_blob(sb: Sandbox, clients: Any, new_account: Any) -> None:
    rg, account, conn = new_account()
    st: StorageManagementClient = clients[1]
    props = st.storage_accounts.get_properties(rg, account)
    assert sb.blob is not None
    assert props.primary_endpoints.blob == f"{sb.blob.proxy_url}/{account}/"
    # The other services keep Azure's names: only Blob has a local data plane.
    assert props.primary_endpoints.queue == f"https://{account}.queue.core.windows.net/"
    seq = sb.ctx.request_log.last_seq()
    with _blob(conn) as blob:
        container = blob.create_container("cold")
        container.upload_blob("d1/2026-01-01.json", b'{"t": 1}', standard_blob_tier=StandardBlobTier.COOL)
        container.upload_blob("d1/2026-01-02.json", b'{"t": 2}', standard_blob_tier=StandardBlobTier.COOL)
        archived = container.get_blob_client("d1/2026-01-01.json")
        archived.set_standard_blob_tier(StandardBlobTier.ARCHIVE)
        listed = {b.name: str(b.blob_tier) for b in container.list_blobs()}
        assert listed == {"d1/2026-01-01.json": "Archive", "d1/2026-01-02.json": "Cool"}
        assert container.download_blob("d1/2026-01-02.json").readall() == b'{"t": 2}'
        with pytest.raises(HttpResponseError) as err:  # archived: rehydrate first, as in Azure
            archived.download_blob().readall()
        assert err.value.status_code == 409
        assert [c.name for c in blob.list_containers()] == ["cold"]
    # Every call went through the recording proxy, under the account's path.
    calls = sb.ctx.request_log.since(seq)
    assert calls and all(c.cloud == "blob" for c in calls)
    assert all(urlsplit(c.url).path.startswith(f"/{account}/") for c in calls)


def test_wrong_key_is_refused(new_account: Any) -> None:
    _, account, conn = new_account()
    with _blob(conn) as blob:
        blob.create_container("data")
    wrong = conn.replace(conn.split("AccountKey=")[1].split(";")[0], "A" * 86 + "==")
    with _blob(wrong, retry_total=0) as blob, pytest.raises(HttpResponseError) as err:
        list(blob.list_containers())
    assert err.value.status_code == 403


def test_accounts_do_not_see_each_other(new_account: Any) -> None:
    _, a, conn_a = new_account()
    _, b, conn_b = new_account()
    with _blob(conn_a) as blob_a, _blob(conn_b) as blob_b:
        blob_a.create_container("only-a").upload_blob("x", b"a")
        blob_b.create_container("only-b")
        assert [c.name for c in blob_a.list_containers()] == ["only-a"]
        assert [c.name for c in blob_b.list_containers()] == ["only-b"]
        with pytest.raises(ResourceNotFoundError):
            blob_b.get_container_client("only-a").get_container_properties()
    # A's key does not open B's account.
    cross = conn_a.replace(f"AccountName={a}", f"AccountName={b}").replace(f"/{a}", f"/{b}")
    with _blob(cross, retry_total=0) as blob, pytest.raises(HttpResponseError) as cross_err:
        list(blob.list_containers())
    assert cross_err.value.status_code == 403


def test_restart_keeps_devstore_data_and_holds_requests(sb: Sandbox, new_account: Any) -> None:
    assert sb.blob is not None
    devstore = sb.endpoints["blob"]["connection_string"]
    name = f"keep-{uuid.uuid4().hex[:8]}"
    with _blob(devstore) as blob:
        blob.create_container(name).upload_blob("kept", b"before restart")
    restarts = sb.blob.restarts
    stop = threading.Event()
    errors: list[BaseException] = []
    reads = [0]

    def read_loop() -> None:
        # Reads while Azurite restarts: each waits in the proxy instead of failing.
        with _blob(devstore, retry_total=0) as client:
            while not stop.is_set():
                try:
                    assert client.get_blob_client(name, "kept").download_blob().readall() == b"before restart"
                    reads[0] += 1
                except BaseException as exc:
                    errors.append(exc)
                    return

    reader = threading.Thread(target=read_loop)
    reader.start()
    try:
        _, _, conn = new_account()
        with _blob(conn) as blob:
            blob.create_container("after")
    finally:
        stop.set()
        reader.join(30)
    assert sb.blob.restarts > restarts
    assert errors == [] and reads[0] > 0
    with _blob(devstore) as blob:
        assert blob.get_blob_client(name, "kept").download_blob().readall() == b"before restart"


def test_arm_containers_exist_in_the_data_plane(clients: Any, new_account: Any) -> None:
    st: StorageManagementClient = clients[1]
    rg, account, conn = new_account()
    st.blob_containers.create(rg, account, "hot", BlobContainer())
    with _blob(conn) as blob:
        blob.get_container_client("hot").upload_blob("x", b"1")
        st.blob_containers.delete(rg, account, "hot")
        assert [c.name for c in blob.list_containers()] == []
        blob.create_container("made-by-data-plane")
        # Deleting the account deletes its data.
        st.storage_accounts.delete(rg, account)
        assert [c.name for c in blob.list_containers()] == []


def test_faults_apply_to_every_account(sb: Sandbox, new_account: Any) -> None:
    _, account, conn = new_account()
    with _blob(conn) as blob:
        blob.create_container("faulty")
    sb.ctx.faults.profile = Profile("down", unavailable_rate=1.0, retry_after_seconds=2)
    try:
        with _blob(conn, retry_total=0) as blob, pytest.raises(HttpResponseError) as err:
            blob.get_container_client("faulty").get_container_properties()
        assert err.value.status_code == 503 and "ServerBusy" in str(err.value)
    finally:
        sb.ctx.faults.set_profile("instant", seed=0)
    last = sb.ctx.request_log.since(sb.ctx.request_log.last_seq() - 1)
    assert last and last[-1].status == 503 and f"/{account}/faulty" in last[-1].url


def test_devstore_name_is_taken(clients: Any) -> None:
    rm, st = clients
    rg = f"rg-{uuid.uuid4().hex[:10]}"
    rm.resource_groups.create_or_update(rg, {"location": LOC})
    with pytest.raises(HttpResponseError) as err:
        st.storage_accounts.begin_create(
            rg, "devstoreaccount1", StorageAccountCreateParameters(sku=Sku(name="Standard_LRS"), kind="StorageV2",
                                                                  location=LOC)
        ).result()
    assert err.value.status_code == 409 and err.value.error.code == "StorageAccountAlreadyTaken"


def test_list_resources_and_reset_cover_every_account(sb: Sandbox, new_account: Any) -> None:
    """Last in this module: the sandbox's reset empties every account."""
    assert sb.blob is not None
    _, account, conn = new_account()
    with _blob(conn) as blob:
        blob.create_container("listed")
    with _blob(sb.endpoints["blob"]["connection_string"]) as blob:
        blob.create_container("devstore-listed")
    ids = {r["id"] for r in sb.blob.list_resources()}
    assert f"{sb.blob.proxy_url}/{account}/listed" in ids
    assert f"{sb.blob.account_url}/devstore-listed" in ids
    sb.reset()
    assert sb.blob.list_resources() == []


def test_without_blob_endpoints_stay_azure(sandbox: Sandbox) -> None:
    rm, st = make_mgmt_client(sandbox, ResourceManagementClient), make_mgmt_client(sandbox, StorageManagementClient)
    suffix = uuid.uuid4().hex[:10]
    rm.resource_groups.create_or_update(f"rg-{suffix}", {"location": LOC})
    created = st.storage_accounts.begin_create(
        f"rg-{suffix}", f"st{suffix}", StorageAccountCreateParameters(sku=Sku(name="Standard_LRS"), kind="StorageV2",
                                                                    location=LOC)
    ).result()
    assert created.primary_endpoints.blob == f"https://st{suffix}.blob.core.windows.net/"
