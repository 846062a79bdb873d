"""Fault injection as the deployer meets it: 429/503 with Retry-After in ARM's error shape
(never on LRO polls or control calls), LROs failing once in each style and succeeding on retry,
and the flaky profile repeating exactly for a fixed seed."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.mgmt.digitaltwins import AzureDigitalTwinsManagementClient
from azure.mgmt.digitaltwins.models import DigitalTwinsDescription
from azure.mgmt.iothub import IotHubClient
from azure.mgmt.iothub.models import IotHubDescription, IotHubSkuInfo
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.storage import StorageManagementClient
from azure.mgmt.storage.models import Sku, StorageAccountCreateParameters

from sandbox.core.auth import SandboxCredential, make_token
from sandbox.core.profiles import Profile
from sandbox.server import Sandbox

LOC = "westeurope"
ARM_SCOPE = "https://management.azure.com/.default"


def _client(sb: Sandbox, cls: type, **kw: Any) -> Any:
    cred = SandboxCredential(sb.endpoints["azure"]["deployer_principal_id"])
    return cls(
        cred,
        sb.ctx.subscription_id,
        base_url=sb.arm_url,
        connection_verify=sb.ca_file,
        polling_interval=0,
        **kw,
    )


def test_throttling_answers_429_with_retry_after_in_arm_shape(sandbox_factory: Any) -> None:
    sb: Sandbox = sandbox_factory()
    sub = sb.ctx.subscription_id
    auth = {"Authorization": f"Bearer {make_token('p', ARM_SCOPE)}"}
    # Start a 202 + Location storage create while nothing is throttled.
    rm = _client(sb, ResourceManagementClient)
    rm.resource_groups.create_or_update("rg", {"location": LOC})
    put = requests.put(
        f"{sb.arm_url}/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/stthrottle?api-version=2026-09-01",
        json={"location": LOC, "sku": {"name": "Standard_LRS"}, "kind": "StorageV2"},
        headers=auth,
        verify=sb.ca_file,
        timeout=10,
    )
    assert put.status_code == 202
    sb.ctx.faults.profile = Profile("throttle-all", throttle_rate=1.0, retry_after_seconds=7)
    r = requests.get(
        f"{sb.arm_url}/subscriptions/{sub}/resourcegroups/rg?api-version=2025-04-01",
        headers=auth,
        verify=sb.ca_file,
        timeout=10,
    )
    assert r.status_code == 429 and r.headers["Retry-After"] == "7"
    assert r.json()["error"]["code"] == "TooManyRequests"
    # LRO status polls and the control endpoint are never throttled.
    poll = requests.get(put.headers["Location"], headers=auth, verify=sb.ca_file, timeout=10)
    assert poll.status_code == 200 and poll.json()["name"] == "stthrottle"
    assert requests.get(sb.control_url + "/requests", timeout=10).status_code == 200
    # The SDK with retries off surfaces the 429 and its Retry-After.
    no_retry = _client(sb, ResourceManagementClient, retry_total=0)
    with pytest.raises(HttpResponseError) as err:
        no_retry.resource_groups.get("rg")
    assert err.value.status_code == 429 and err.value.response.headers["Retry-After"] == "7"
    sb.ctx.faults.profile = Profile("down", unavailable_rate=1.0, retry_after_seconds=3)
    r = requests.get(
        f"{sb.arm_url}/subscriptions/{sub}/resourcegroups/rg?api-version=2025-04-01",
        headers=auth,
        verify=sb.ca_file,
        timeout=10,
    )
    assert (
        r.status_code == 503
        and r.headers["Retry-After"] == "3"
        and r.json()["error"]["code"] == "ServiceUnavailable"
    )
    statuses = [rec.status for rec in sb.ctx.request_log.since(0)]
    assert 429 in statuses and 503 in statuses


def _fail_every_lro_once(sb: Sandbox) -> None:
    sb.ctx.faults.profile = Profile("fail-once", lro_fail_once_rate=1.0)


def test_lros_fail_once_in_every_style_then_succeed(sandbox_factory: Any) -> None:
    sb: Sandbox = sandbox_factory()
    rm = _client(sb, ResourceManagementClient)
    rm.resource_groups.create_or_update("rg", {"location": LOC})
    _fail_every_lro_once(sb)
    # Azure-AsyncOperation style: {"status": "Failed", "error": ...}.
    hubs = _client(sb, IotHubClient).iot_hub_resource
    desc = IotHubDescription(location=LOC, sku=IotHubSkuInfo(name="S1", capacity=1))
    with pytest.raises(HttpResponseError) as err:
        hubs.begin_create_or_update("rg", "hub1", desc).result()
    assert "ProvisioningFailed" in str(err.value)
    assert hubs.get("rg", "hub1").properties.provisioning_state == "Failed"
    assert (
        hubs.begin_create_or_update("rg", "hub1", desc).result().properties.provisioning_state == "Succeeded"
    )
    # Location style: the Location answers the ARM error.
    st = _client(sb, StorageManagementClient)
    params = StorageAccountCreateParameters(sku=Sku(name="Standard_LRS"), kind="StorageV2", location=LOC)
    with pytest.raises(HttpResponseError) as err:
        st.storage_accounts.begin_create("rg", "stfail1", params).result()
    assert err.value.error.code == "ProvisioningFailed"
    assert (
        st.storage_accounts.begin_create("rg", "stfail1", params).result().provisioning_state == "Succeeded"
    )
    # provisioningState style: the resource itself ends Failed.
    adt = _client(sb, AzureDigitalTwinsManagementClient).digital_twins
    with pytest.raises(HttpResponseError):
        adt.begin_create_or_update("rg", "adt1", DigitalTwinsDescription(location=LOC)).result()
    assert (
        adt.begin_create_or_update("rg", "adt1", DigitalTwinsDescription(location=LOC))
        .result()
        .provisioning_state
        == "Succeeded"
    )
    # Deletes too: the first RG delete fails, the retry removes it.
    with pytest.raises(HttpResponseError):
        rm.resource_groups.begin_delete("rg").result()
    assert rm.resource_groups.check_existence("rg") is True
    rm.resource_groups.begin_delete("rg").result()
    assert rm.resource_groups.check_existence("rg") is False


def _flaky_run(sb: Sandbox) -> list[tuple[str, int]]:
    seq = sb.ctx.request_log.last_seq()
    rm = _client(sb, ResourceManagementClient)
    msi = _client(sb, ManagedServiceIdentityClient)
    rm.resource_groups.create_or_update("rg", {"location": LOC})
    for i in range(25):
        mi = msi.user_assigned_identities.create_or_update("rg", f"mi{i}", {"location": LOC})
        assert mi.principal_id
        assert msi.user_assigned_identities.get("rg", f"mi{i}").principal_id == mi.principal_id
    assert len(list(msi.user_assigned_identities.list_by_resource_group("rg"))) == 25
    return [(r.method, r.status) for r in sb.ctx.request_log.since(seq)]


def test_flaky_profile_is_retried_by_the_sdk_and_repeats_for_a_seed(sandbox_factory: Any) -> None:
    runs = []
    for _ in range(2):
        sb: Sandbox = sandbox_factory(profile="flaky", seed=11)
        # RBAC delay and LRO failures are irrelevant here; throttling is what is measured.
        sb.ctx.faults.profile = replace(sb.ctx.faults.profile, lro_fail_once_rate=0.0)
        runs.append(_flaky_run(sb))
    assert runs[0] == runs[1]
    statuses = [s for _, s in runs[0]]
    assert statuses.count(429) + statuses.count(503) >= 3
    # Every throttled call was retried to success: 26 writes and 26 reads got through.
    assert sum(1 for m, s in runs[0] if m == "PUT" and s in (200, 201)) == 26
    other = sandbox_factory(profile="flaky", seed=12)
    other.ctx.faults.profile = replace(other.ctx.faults.profile, lro_fail_once_rate=0.0)
    assert _flaky_run(other) != runs[0]


def test_provisioning_delays_follow_the_profile(sandbox_factory: Any) -> None:
    sb: Sandbox = sandbox_factory()
    rm = _client(sb, ResourceManagementClient)
    rm.resource_groups.create_or_update("rg", {"location": LOC})
    sb.ctx.faults.profile = Profile(
        "scaled", delay_scale=0.004
    )  # IoT Hub 180 s -> 0.72 s, RG delete 2 s -> 8 ms
    hubs = _client(sb, IotHubClient).iot_hub_resource
    seq = sb.ctx.request_log.last_seq()
    started = time.monotonic()
    poller = hubs.begin_create_or_update(
        "rg", "hub-slow", IotHubDescription(location=LOC, sku=IotHubSkuInfo(name="S1", capacity=1))
    )
    hub = poller.result()
    elapsed = time.monotonic() - started
    assert hub.properties.provisioning_state == "Succeeded"
    assert 0.7 <= elapsed < 5
    polls = [r for r in sb.ctx.request_log.since(seq) if "/operationStatuses/" in r.url]
    assert len(polls) >= 2  # InProgress at least once before Succeeded
    # While a group is being deleted, writes into it are refused with ARM's 409.
    sb.ctx.faults.profile = Profile("slow-delete", delay_scale=0.5)  # RG delete: 1 s
    auth = {"Authorization": f"Bearer {make_token('p', ARM_SCOPE)}"}
    sub = sb.ctx.subscription_id
    r = requests.delete(
        f"{sb.arm_url}/subscriptions/{sub}/resourcegroups/rg?api-version=2025-04-01",
        headers=auth,
        verify=sb.ca_file,
        timeout=10,
    )
    assert r.status_code == 202 and r.headers["Location"]
    put = requests.put(
        f"{sb.arm_url}/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/mi?api-version=2024-11-30",
        json={"location": LOC},
        headers=auth,
        verify=sb.ca_file,
        timeout=10,
    )
    assert put.status_code == 409 and put.json()["error"]["code"] == "ResourceGroupBeingDeleted"
    assert requests.get(r.headers["Location"], headers=auth, verify=sb.ca_file, timeout=10).status_code == 202
    deadline = time.monotonic() + 5
    while requests.get(r.headers["Location"], headers=auth, verify=sb.ca_file, timeout=10).status_code == 202:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert rm.resource_groups.check_existence("rg") is False
