"""azure-storage-blob against Azurite behind the sandbox's recording proxy, and Azurite's lifecycle."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient, LinearRetry, StandardBlobTier

from sandbox.blob import Azurite, AzuriteNotInstalled
from sandbox.blob.azurite import azurite_command
from sandbox.core.context import SandboxContext
from sandbox.core.profiles import Profile

REPO_ROOT = Path(__file__).resolve().parents[2]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _port_open(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((parts.hostname or "127.0.0.1", parts.port or 80)) == 0


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    state = Path(tmp_path_factory.mktemp("blob"))
    az = Azurite(SandboxContext(state_dir=state), state)
    az.start()
    try:
        yield az
    finally:
        az.stop()


@pytest.fixture
def blob(azurite: Azurite) -> Iterator[BlobServiceClient]:
    azurite.ctx.faults.set_profile("instant", seed=0)
    # No back-off between retries: the default policy waits 15 s before the first retry.
    client = BlobServiceClient.from_connection_string(
        azurite.endpoints["connection_string"], retry_policy=LinearRetry(backoff=0, random_jitter_range=0, retry_total=5)
    )
    with client:
        yield client
    azurite.ctx.faults.set_profile("instant", seed=0)
    azurite.reset()


def test_cool_upload_archive_tier_read_back(azurite: Azurite, blob: BlobServiceClient) -> None:
    seq = azurite.ctx.request_log.last_seq()
    container = blob.create_container("demo-cold")
    b = container.upload_blob("d1/2026-01-01.json", b'{"temperature": 21.5}', standard_blob_tier=StandardBlobTier.COOL)
    props = b.get_blob_properties()
    assert props.blob_tier == "Cool" and props.size == 21
    b.set_standard_blob_tier(StandardBlobTier.ARCHIVE)
    assert b.get_blob_properties().blob_tier == "Archive"
    # An archived blob cannot be read until rehydrated, as in Azure.
    with pytest.raises(HttpResponseError) as err:
        b.download_blob().readall()
    assert err.value.status_code == 409
    calls = azurite.ctx.request_log.since(seq)
    assert all(c.cloud == "blob" for c in calls)
    assert [c.method for c in calls][:5] == ["PUT", "PUT", "HEAD", "PUT", "HEAD"]
    assert azurite.account_url.endswith("/devstoreaccount1") and urlsplit(calls[0].url).port == urlsplit(
        azurite.account_url
    ).port


def test_injected_faults_are_storage_shaped_and_retried(azurite: Azurite, blob: BlobServiceClient) -> None:
    container = blob.create_container("faulty")
    seq = azurite.ctx.request_log.last_seq()
    # Seed 177 with these rates refuses the 2nd and 6th calls: one injected 503 and one 429.
    azurite.ctx.faults.set_profile("instant", seed=177)
    azurite.ctx.faults.profile = Profile("faulty", throttle_rate=0.3, unavailable_rate=0.2)
    for i in range(5):
        container.upload_blob(f"b{i}", b"x", overwrite=True)
    statuses = [c.status for c in azurite.ctx.request_log.since(seq)]
    # Azure Storage throttles with 503 ServerBusy (never 429), which the SDK retries.
    assert statuses == [201, 503, 201, 201, 201, 503, 201], statuses
    assert sorted(b.name for b in container.list_blobs()) == ["b0", "b1", "b2", "b3", "b4"]

    azurite.ctx.faults.profile = Profile("down", unavailable_rate=1.0, retry_after_seconds=3)
    no_retry = BlobServiceClient.from_connection_string(azurite.endpoints["connection_string"], retry_total=0)
    with pytest.raises(HttpResponseError) as err:
        no_retry.get_container_client("faulty").get_container_properties()
    assert err.value.status_code == 503 and "ServerBusy" in str(err.value)
    assert getattr(err.value.response, "headers", {}).get("Retry-After") == "3"


def test_list_resources_and_reset(azurite: Azurite, blob: BlobServiceClient) -> None:
    blob.create_container("one").upload_blob("x", b"1")
    blob.create_container("two")
    seq = azurite.ctx.request_log.last_seq()
    assert azurite.list_resources() == [
        {"cloud": "blob", "type": "container", "id": f"{azurite.account_url}/one"},
        {"cloud": "blob", "type": "container", "id": f"{azurite.account_url}/two"},
    ]
    azurite.reset()
    assert azurite.list_resources() == []
    # Both talk to Azurite directly: they are not cloud traffic of the code under test.
    assert azurite.ctx.request_log.since(seq) == []
    assert list(blob.list_containers()) == []


def test_stop_leaves_no_process(tmp_path: Path) -> None:
    az = Azurite(SandboxContext(state_dir=tmp_path), tmp_path)
    endpoints = az.start()
    pgid, upstream = az.pid, az.azurite_url
    assert pgid is not None and _group_alive(pgid) and _port_open(upstream)
    assert (tmp_path / "azurite").is_dir()
    az.stop()
    assert not _group_alive(pgid)
    assert not _port_open(upstream) and not _port_open(endpoints["account_url"])
    az.stop()  # idempotent


@pytest.mark.slow
def test_azurite_dies_with_a_killed_parent(tmp_path: Path) -> None:
    """SIGKILL the process that started Azurite: no node process may survive it."""
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from pathlib import Path
        from sandbox.blob import Azurite
        from sandbox.core.context import SandboxContext
        az = Azurite(SandboxContext(state_dir=Path({str(tmp_path)!r})), {str(tmp_path)!r})
        az.start()
        print(az.pid, az.azurite_url, flush=True)
        time.sleep(120)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pgid_text, upstream = parent.stdout.readline().split()
        pgid = int(pgid_text)
        assert _group_alive(pgid) and _port_open(upstream)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _group_alive(pgid), "Azurite outlived the process that started it"
        assert not _port_open(upstream)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)


def test_missing_azurite_says_to_run_npm_ci(tmp_path: Path) -> None:
    with pytest.raises(AzuriteNotInstalled) as err:
        azurite_command(tmp_path)
    assert "npm ci" in str(err.value)
    assert azurite_command(REPO_ROOT)[1].endswith("main.js")
