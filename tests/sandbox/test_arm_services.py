"""The service resources the deployer creates, each in the LRO style its real service uses, with
the read-only fields the deployer chains on and the keys actions: IoT Hub (201 +
Azure-AsyncOperation), Event Grid (201 only), Cosmos (200 + Azure-AsyncOperation; 202 for
databases and containers), Digital Twins (provisioningState polling; delete 202 + Location),
Managed Grafana, and If-Match / If-None-Match -> 412."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.cosmosdb import CosmosDBManagementClient
from azure.mgmt.cosmosdb.models import (
    Capability,
    ContainerPartitionKey,
    DatabaseAccountCreateUpdateParameters,
    Location,
    SqlContainerCreateUpdateParameters,
    SqlContainerResource,
    SqlDatabaseCreateUpdateParameters,
    SqlDatabaseResource,
)
from azure.mgmt.dashboard import DashboardManagementClient
from azure.mgmt.dashboard.models import (
    ManagedGrafana,
    ManagedGrafanaProperties,
    ManagedServiceIdentity,
    ResourceSku,
)
from azure.mgmt.digitaltwins import AzureDigitalTwinsManagementClient
from azure.mgmt.digitaltwins.models import DigitalTwinsDescription, DigitalTwinsIdentity
from azure.mgmt.eventgrid import EventGridManagementClient
from azure.mgmt.eventgrid.models import (
    EventSubscription,
    EventSubscriptionFilter,
    SystemTopic,
    Topic,
    WebHookEventSubscriptionDestination,
)
from azure.mgmt.iothub import IotHubClient
from azure.mgmt.iothub.models import IotHubDescription, IotHubSkuInfo
from azure.mgmt.resource.resources import ResourceManagementClient

from sandbox.server import Sandbox

LOC = "westeurope"
ARM_SCOPE = "https://management.azure.com/.default"


@pytest.fixture
def rg(mgmt_client: Any, unique_name: Any) -> str:
    name = unique_name("rg")
    mgmt_client(ResourceManagementClient).resource_groups.create_or_update(name, {"location": LOC})
    return name


def _calls(sb: Sandbox, seq: int) -> list[tuple[str, str, int]]:
    return [
        (r.method, r.url.split("?")[0].split(sb.arm_url, 1)[-1], r.status)
        for r in sb.ctx.request_log.since(seq)
    ]


def test_iot_hub_async_operation_keys_and_if_match(
    sandbox: Sandbox, mgmt_client: Any, rg: str, unique_name: Any
) -> None:
    hubs = mgmt_client(IotHubClient).iot_hub_resource
    name = unique_name("iot")
    seq = sandbox.ctx.request_log.last_seq()
    hub = hubs.begin_create_or_update(
        rg, name, IotHubDescription(location=LOC, sku=IotHubSkuInfo(name="S1", capacity=1))
    ).result()
    assert hub.properties.provisioning_state == "Succeeded"
    # The IoT Hub data plane (mounted at /iothub/) serves the hub at its host name.
    assert hub.properties.host_name == f"{sandbox.arm_url.split('://', 1)[1]}/iothub/{name}"
    assert hub.properties.state == "Active"
    calls = _calls(sandbox, seq)
    # PUT -> GET <Azure-AsyncOperation> -> GET <resource>, as recorded from the real SDK.
    assert [c[0] for c in calls] == ["PUT", "GET", "GET"]
    assert calls[0][2] == 201 and "/operationStatuses/" in calls[1][1] and calls[2][1].endswith(name)
    key = hubs.get_keys_for_key_name(rg, name, "iothubowner")
    assert key.key_name == "iothubowner" and key.primary_key and key.secondary_key
    with pytest.raises(ResourceNotFoundError):
        hubs.get_keys_for_key_name(rg, name, "nosuchpolicy")
    # If-Match with a stale ETag -> 412 (the SDK raises ResourceModifiedError / HttpResponseError).
    with pytest.raises(HttpResponseError) as err:
        hubs.begin_create_or_update(
            rg,
            name,
            IotHubDescription(location=LOC, sku=IotHubSkuInfo(name="S1", capacity=2)),
            if_match='"stale"',
        ).result()
    assert err.value.status_code == 412
    current = hubs.get(rg, name)
    updated = hubs.begin_create_or_update(
        rg,
        name,
        IotHubDescription(location=LOC, sku=IotHubSkuInfo(name="S1", capacity=2)),
        if_match=current.etag,
    ).result()
    assert updated.sku.capacity == 2
    hubs.begin_delete(rg, name).result()
    with pytest.raises(ResourceNotFoundError):
        hubs.get(rg, name)


def test_event_grid_topic_201_keys_and_subscription(
    sandbox: Sandbox, mgmt_client: Any, rg: str, unique_name: Any
) -> None:
    eg = mgmt_client(EventGridManagementClient)
    name = unique_name("egt")
    seq = sandbox.ctx.request_log.last_seq()
    topic = eg.topics.begin_create_or_update(
        rg, name, Topic(location=LOC, input_schema="CloudEventSchemaV1_0")
    ).result()
    assert _calls(sandbox, seq)[0][2] == 201  # Event Grid PUT answers 201 only
    assert topic.provisioning_state == "Succeeded"
    assert topic.endpoint.startswith(f"{sandbox.arm_url}/eventgrid/") and topic.endpoint.endswith(
        "/api/events"
    )
    keys = eg.topics.list_shared_access_keys(rg, name)
    assert keys.key1 and keys.key2 and keys.key1 != keys.key2
    # Updating keeps 201 (the only code the SDK accepts) and the same endpoint.
    again = eg.topics.begin_create_or_update(
        rg, name, Topic(location=LOC, input_schema="CloudEventSchemaV1_0")
    ).result()
    assert again.endpoint == topic.endpoint
    sub = eg.event_subscriptions.begin_create_or_update(
        topic.id,
        "to-hook",
        EventSubscription(
            destination=WebHookEventSubscriptionDestination(endpoint_url="https://127.0.0.1:9/hook"),
            event_delivery_schema="CloudEventSchemaV1_0",
            filter=EventSubscriptionFilter(included_event_types=["twin.output.changed"]),
        ),
    ).result()
    assert sub.provisioning_state == "Succeeded"
    assert sub.topic.lower() == topic.id.lower()
    listed = list(eg.event_subscriptions.list_by_resource(rg, "Microsoft.EventGrid", "topics", name))
    assert [s.name for s in listed] == ["to-hook"]
    eg.topics.begin_delete(rg, name).result()
    with pytest.raises(ResourceNotFoundError):
        eg.event_subscriptions.get(topic.id, "to-hook")
    with pytest.raises(ResourceNotFoundError):
        eg.topics.get(rg, name)


def test_system_topic_on_iot_hub(sandbox: Sandbox, mgmt_client: Any, rg: str, unique_name: Any) -> None:
    hub = (
        mgmt_client(IotHubClient)
        .iot_hub_resource.begin_create_or_update(
            rg, unique_name("iot"), IotHubDescription(location=LOC, sku=IotHubSkuInfo(name="S1", capacity=1))
        )
        .result()
    )
    eg = mgmt_client(EventGridManagementClient)
    st = eg.system_topics.begin_create_or_update(
        rg, "st-iot", SystemTopic(location=LOC, source=hub.id, topic_type="Microsoft.Devices.IoTHubs")
    ).result()
    assert st.provisioning_state == "Succeeded" and st.metric_resource_id
    assert st.source == hub.id
    eg.system_topics.begin_delete(rg, "st-iot").result()
    with pytest.raises(ResourceNotFoundError):
        eg.system_topics.get(rg, "st-iot")


def test_cosmos_account_database_container(
    sandbox: Sandbox, mgmt_client: Any, rg: str, unique_name: Any
) -> None:
    cosmos = mgmt_client(CosmosDBManagementClient)
    name = unique_name("cos")
    seq = sandbox.ctx.request_log.last_seq()
    account = cosmos.database_accounts.begin_create_or_update(
        rg,
        name,
        DatabaseAccountCreateUpdateParameters(
            location=LOC,
            locations=[Location(location_name=LOC, failover_priority=0)],
            database_account_offer_type="Standard",
            capabilities=[Capability(name="EnableServerless")],
        ),
    ).result()
    assert _calls(sandbox, seq)[0][2] == 200  # Cosmos account PUT: 200 only, with Azure-AsyncOperation
    # The Cosmos data plane (mounted at /cosmos/) serves the account at its document endpoint.
    assert account.document_endpoint == f"{sandbox.arm_url}/cosmos/{name}/"
    assert account.provisioning_state == "Succeeded"
    keys = cosmos.database_accounts.list_keys(rg, name)
    assert keys.primary_master_key and keys.secondary_master_key
    seq = sandbox.ctx.request_log.last_seq()
    db = cosmos.sql_resources.begin_create_update_sql_database(
        rg, name, "twin", SqlDatabaseCreateUpdateParameters(resource=SqlDatabaseResource(id="twin"))
    ).result()
    assert db.resource.id == "twin"
    first = _calls(sandbox, seq)[0]
    assert first[0] == "PUT" and first[2] == 202
    container = cosmos.sql_resources.begin_create_update_sql_container(
        rg,
        name,
        "twin",
        "hot",
        SqlContainerCreateUpdateParameters(
            resource=SqlContainerResource(
                id="hot",
                partition_key=ContainerPartitionKey(paths=["/deviceId"], kind="Hash"),
                default_ttl=-1,
            )
        ),
    ).result()
    assert container.resource.partition_key.paths == ["/deviceId"]
    cosmos.database_accounts.begin_delete(rg, name).result()
    with pytest.raises(ResourceNotFoundError):
        cosmos.sql_resources.get_sql_container(rg, name, "twin", "hot")


def test_digital_twins_state_polling_and_delete(
    sandbox: Sandbox, mgmt_client: Any, rg: str, unique_name: Any
) -> None:
    adt = mgmt_client(AzureDigitalTwinsManagementClient).digital_twins
    name = unique_name("adt")
    seq = sandbox.ctx.request_log.last_seq()
    inst = adt.begin_create_or_update(
        rg, name, DigitalTwinsDescription(location=LOC, identity=DigitalTwinsIdentity(type="SystemAssigned"))
    ).result()
    calls = _calls(sandbox, seq)
    # No polling header: the SDK polls the resource itself until provisioningState is terminal.
    assert calls[0][0] == "PUT" and calls[0][2] == 201
    assert all("/operation" not in c[1] for c in calls)
    assert calls[1][0] == "GET" and calls[1][1].endswith(name)
    assert inst.provisioning_state == "Succeeded"
    assert inst.identity.principal_id
    assert inst.host_name and inst.host_name.startswith(sandbox.arm_url.split("://", 1)[1])
    assert adt.get(rg, name).host_name == inst.host_name
    adt.begin_delete(rg, name).result()
    with pytest.raises(ResourceNotFoundError):
        adt.get(rg, name)


def test_managed_grafana(sandbox: Sandbox, mgmt_client: Any, rg: str, unique_name: Any) -> None:
    grafana = mgmt_client(DashboardManagementClient).grafana
    name = unique_name("graf")
    g = grafana.begin_create(
        rg,
        name,
        ManagedGrafana(
            location=LOC,
            sku=ResourceSku(name="Standard"),
            identity=ManagedServiceIdentity(type="SystemAssigned"),
            properties=ManagedGrafanaProperties(api_key="Enabled"),
        ),
    ).result()
    assert g.properties.provisioning_state == "Succeeded"
    # The Managed Grafana data plane (mounted at /grafana/) serves the workspace at its endpoint.
    assert g.properties.endpoint == f"{sandbox.arm_url}/grafana/{name}" and g.identity.principal_id
    grafana.begin_delete(rg, name).result()
    with pytest.raises(ResourceNotFoundError):
        grafana.get(rg, name)


def test_if_none_match_star_on_existing_is_412(sandbox: Sandbox, mgmt_client: Any, rg: str) -> None:
    from sandbox.core.auth import make_token

    url = (
        f"{sandbox.arm_url}/subscriptions/{sandbox.ctx.subscription_id}/resourceGroups/{rg}"
        "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/mi?api-version=2024-11-30"
    )
    headers = {"Authorization": f"Bearer {make_token('p', ARM_SCOPE)}", "If-None-Match": "*"}
    first = requests.put(url, json={"location": LOC}, headers=headers, verify=sandbox.ca_file, timeout=10)
    assert first.status_code == 201
    second = requests.put(url, json={"location": LOC}, headers=headers, verify=sandbox.ca_file, timeout=10)
    assert second.status_code == 412 and second.json()["error"]["code"] == "PreconditionFailed"
    etag = first.headers["ETag"]
    ok = requests.put(
        url,
        json={"location": LOC},
        headers={"Authorization": headers["Authorization"], "If-Match": etag},
        verify=sandbox.ca_file,
        timeout=10,
    )
    assert ok.status_code == 200
    stale = requests.delete(
        url,
        headers={"Authorization": headers["Authorization"], "If-Match": etag},
        verify=sandbox.ca_file,
        timeout=10,
    )
    assert stale.status_code == 412
