"""What a reader sees of a resource ARM is creating (eventual visibility), answers in the shapes
the published schemas give (no invented provisioningState, no siteConfig on reads, IoT Hub's own
error shape), and ARM's tags API."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.cosmosdb import CosmosDBManagementClient
from azure.mgmt.cosmosdb.models import (
    Capability,
    DatabaseAccountCreateUpdateParameters,
    Location,
    SqlDatabaseCreateUpdateParameters,
    SqlDatabaseResource,
)
from azure.mgmt.digitaltwins import AzureDigitalTwinsManagementClient
from azure.mgmt.digitaltwins.models import DigitalTwinsDescription
from azure.mgmt.iothub import IotHubClient
from azure.mgmt.iothub.models import IotHubDescription, IotHubSkuInfo
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.resource.resources.models import Tags, TagsPatchResource

from sandbox.core.auth import SandboxCredential, make_token
from sandbox.core.profiles import PROFILES, Profile
from sandbox.server import Sandbox

LOC = "westeurope"
ARM_SCOPE = "https://management.azure.com/.default"


@pytest.fixture
def late(sandbox_factory: Any) -> Sandbox:
    """A sandbox where every long-running create reads as absent for 0.6 s after it is accepted."""
    sb: Sandbox = sandbox_factory()
    sb.ctx.faults.profile = replace(PROFILES["instant"], late_visibility_rate=1.0, late_visibility_seconds=0.6)
    return sb


def _mgmt(sb: Sandbox, cls: type) -> Any:
    cred = SandboxCredential(sb.endpoints["azure"]["deployer_principal_id"])
    return cls(cred, sb.ctx.subscription_id, base_url=sb.arm_url, connection_verify=sb.ca_file, polling_interval=0)


def test_an_accepted_create_reads_as_absent_then_not_ready_then_done(late: Sandbox) -> None:
    _mgmt(late, ResourceManagementClient).resource_groups.create_or_update("rg", {"location": LOC})
    # Provisioning takes longer than the lag: the instance shows up Provisioning before it is done.
    late.ctx.faults.profile = replace(late.ctx.faults.profile, delay_scale=0.005)  # ADT 240 s -> 1.2 s
    adt = _mgmt(late, AzureDigitalTwinsManagementClient).digital_twins
    accepted = time.monotonic()
    adt.begin_create_or_update("rg", "twins", DigitalTwinsDescription(location=LOC), polling=False)
    with pytest.raises(ResourceNotFoundError):
        adt.get("rg", "twins")
    assert [i.name for i in adt.list_by_resource_group("rg")] == []  # nor is it listed
    seen = []
    while time.monotonic() - accepted < 5:
        try:
            seen.append(adt.get("rg", "twins").provisioning_state)
        except ResourceNotFoundError:
            assert time.monotonic() - accepted < 0.6 + 0.3, "still absent long after the lag"
            seen.append("absent")
        if seen[-1] == "Succeeded":
            break
        time.sleep(0.05)
    assert seen[0] == "absent" and "Provisioning" in seen and seen[-1] == "Succeeded", seen
    assert [i.name for i in adt.list_by_resource_group("rg")] == ["twins"]


def test_the_sdks_own_polling_still_ends_with_the_resource(late: Sandbox) -> None:
    """The operation is not reported done before the resource is readable, so the final GET an SDK
    poller makes after `Succeeded` finds it."""
    _mgmt(late, ResourceManagementClient).resource_groups.create_or_update("rg", {"location": LOC})
    hubs = _mgmt(late, IotHubClient).iot_hub_resource
    started = time.monotonic()
    hub = hubs.begin_create_or_update(
        "rg", "hub", IotHubDescription(location=LOC, sku=IotHubSkuInfo(name="S1", capacity=1))).result()
    assert hub.properties.provisioning_state == "Succeeded" and time.monotonic() - started >= 0.6


def test_a_type_without_a_provisioning_state_appears_once_created(sandbox_factory: Any) -> None:
    sb: Sandbox = sandbox_factory()
    _mgmt(sb, ResourceManagementClient).resource_groups.create_or_update("rg", {"location": LOC})
    cosmos = _mgmt(sb, CosmosDBManagementClient)
    cosmos.database_accounts.begin_create_or_update("rg", "cos", DatabaseAccountCreateUpdateParameters(
        location=LOC, locations=[Location(location_name=LOC, failover_priority=0)],
        database_account_offer_type="Standard", capabilities=[Capability(name="EnableServerless")])).result()
    sb.ctx.faults.profile = Profile("slow", delay_scale=0.02)  # a SQL database: 20 s -> 0.4 s
    cosmos.sql_resources.begin_create_update_sql_database(
        "rg", "cos", "db", SqlDatabaseCreateUpdateParameters(resource=SqlDatabaseResource(id="db")), polling=False)
    with pytest.raises(ResourceNotFoundError):
        cosmos.sql_resources.get_sql_database("rg", "cos", "db")
    time.sleep(0.5)
    sb.ctx.faults.profile = PROFILES["instant"]
    raw = _raw(sb, "GET", "/resourceGroups/rg/providers/Microsoft.DocumentDB/databaseAccounts/cos/sqlDatabases/db",
               "2026-03-15")
    assert raw.status_code == 200 and "provisioningState" not in raw.json()["properties"], raw.text


def test_answers_have_no_field_their_type_does_not_declare(sandbox: Sandbox, unique_name: Any) -> None:
    rm = _mgmt(sandbox, ResourceManagementClient)
    rg = unique_name("rg")
    rm.resource_groups.create_or_update(rg, {"location": LOC})
    _mgmt(sandbox, ManagedServiceIdentityClient).user_assigned_identities.create_or_update(rg, "mi", {"location": LOC})
    identity = _raw(sandbox, "GET", f"/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/mi",
                    "2024-11-30").json()
    assert "provisioningState" not in identity["properties"] and identity["properties"]["principalId"]
    group = _raw(sandbox, "GET", f"/resourcegroups/{rg}", "2025-04-01").json()
    assert group["properties"]["provisioningState"] == "Succeeded"  # ResourceGroupProperties declares it
    missing = _raw(sandbox, "GET", f"/resourceGroups/{rg}/providers/Microsoft.Devices/IotHubs/nope", "2023-06-30")
    assert missing.status_code == 404
    assert set(missing.json()) == {"code", "httpStatusCode", "message"}  # IoT Hub's ErrorDetails, unwrapped
    assert missing.json()["httpStatusCode"] == "NotFound"
    with pytest.raises(ResourceNotFoundError):
        _mgmt(sandbox, IotHubClient).iot_hub_resource.get(rg, "nope")


def test_tags_api_merges_replaces_and_deletes_a_resources_tags(sandbox: Sandbox, unique_name: Any) -> None:
    rm = _mgmt(sandbox, ResourceManagementClient)
    rg = unique_name("rg")
    group = rm.resource_groups.create_or_update(rg, {"location": LOC, "tags": {"owner": "someone"}})
    mi = _mgmt(sandbox, ManagedServiceIdentityClient).user_assigned_identities.create_or_update(
        rg, "mi", {"location": LOC, "tags": {"theirs": "1"}})
    seq = sandbox.ctx.request_log.last_seq()
    merged = rm.tags.begin_update_at_scope(
        mi.id, TagsPatchResource(operation="Merge", properties=Tags(tags={"ours": "a"}))).result()
    assert merged.properties.tags == {"theirs": "1", "ours": "a"}
    assert [(r.method, r.status) for r in sandbox.ctx.request_log.since(seq)] == [("PATCH", 200)]
    assert _mgmt(sandbox, ManagedServiceIdentityClient).user_assigned_identities.get(rg, "mi").tags == merged.properties.tags
    deleted = rm.tags.begin_update_at_scope(
        mi.id, TagsPatchResource(operation="Delete", properties=Tags(tags={"theirs": ""}))).result()
    assert deleted.properties.tags == {"ours": "a"}
    assert rm.tags.get_at_scope(group.id).properties.tags == {"owner": "someone"}
    rm.tags.begin_create_or_update_at_scope(group.id, {"properties": {"tags": {"x": "y"}}}).result()
    assert rm.resource_groups.get(rg).tags == {"x": "y"}
    with pytest.raises(ResourceNotFoundError):
        rm.tags.get_at_scope(f"{group.id}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/none")


def _raw(sb: Sandbox, method: str, path: str, api_version: str) -> requests.Response:
    return requests.request(
        method, f"{sb.arm_url}/subscriptions/{sb.ctx.subscription_id}{path}?api-version={api_version}",
        headers={"Authorization": f"Bearer {make_token('p', ARM_SCOPE)}"}, verify=sb.ca_file, timeout=10)
