"""The device simulator against an Azure L1/L2/L3-hot/L4 built here through ARM, Kudu and the
data planes: IoT Hub telemetry over HTTPS -> Event Grid system topic -> the dispatcher and the
ADT updater running from their deployed package in their own host -> processor -> persister ->
Cosmos DB; the ADT updater patches the twin with the app's managed identity."""

from __future__ import annotations

import argparse
import io
import json
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.digitaltwins.core import DigitalTwinsClient
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.models import RoleAssignmentCreateParameters
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
from azure.mgmt.digitaltwins import AzureDigitalTwinsManagementClient
from azure.mgmt.digitaltwins.models import DigitalTwinsDescription
from azure.mgmt.eventgrid import EventGridManagementClient
from azure.mgmt.eventgrid.models import (
    AzureFunctionEventSubscriptionDestination,
    EventSubscription,
    EventSubscriptionFilter,
    SystemTopic,
)
from azure.mgmt.iothub import IotHubClient
from azure.mgmt.iothub.models import IotHubDescription, IotHubSkuInfo

from payload_functions.packaging import build_azure_app_package
from shared.contracts import DigitalTwinInfo, adt_property_name
from shared.naming import AzureNaming
from twin_cli.commands import simulate

pytestmark = pytest.mark.slow

SPEC_FILE = Path(__file__).resolve().parents[2] / "examples" / "azure-only" / "twin.json"
SPEC = json.loads(SPEC_FILE.read_text())
TWIN = SPEC["twin"]["name"]
LOC = "westeurope"
DATA_OWNER = "bcd981a7-7f74-457b-83e1-cceb9e632ffe"


def _deploy_azure_twin(env: Any) -> None:
    names = AzureNaming(TWIN)
    rg = names.resource_group()
    env.group(rg)
    ident = env.identity(rg, names.identity())

    # L4: the instance, roles for the deployer and the apps' identity, one model per device.
    adt = AzureDigitalTwinsManagementClient(env.cred, env.sub, **env.kw).digital_twins.begin_create_or_update(
        rg, names.digital_twins(), DigitalTwinsDescription(location=LOC)).result()
    auth = AuthorizationManagementClient(env.cred, env.sub, **env.kw)
    for principal in (env.sb.endpoints["azure"]["deployer_principal_id"], ident.principal_id):
        auth.role_assignments.create(adt.id, str(uuid.uuid4()), RoleAssignmentCreateParameters(
            role_definition_id=f"/subscriptions/{env.sub}/providers/Microsoft.Authorization/roleDefinitions/{DATA_OWNER}",
            principal_id=principal, principal_type="ServicePrincipal"))
    twins = DigitalTwinsClient(adt.host_name, env.cred, connection_verify=env.sb.ca_file)
    for device in SPEC["devices"]:
        model = f"dtmi:rt:{device['id'].replace('-', '_')};1"
        twins.create_models([{"@id": model, "@type": "Interface", "@context": "dtmi:dtdl:context;3", "contents": [
            {"@type": "Property", "name": adt_property_name(p["name"]), "schema": "double"}
            for p in device["properties"]]}])
        twins.upsert_digital_twin(device["id"], {"$metadata": {"$model": model}})

    # L3 hot: Cosmos DB account, database and container keyed by device.
    cosmos = CosmosDBManagementClient(env.cred, env.sub, **env.kw)
    account = cosmos.database_accounts.begin_create_or_update(rg, names.cosmos_account(), DatabaseAccountCreateUpdateParameters(
        location=LOC, properties=DatabaseAccountCreateUpdateProperties(
            locations=[Location(location_name=LOC, failover_priority=0)]))).result()
    cosmos.sql_resources.begin_create_update_sql_database(rg, names.cosmos_account(), names.COSMOS_DATABASE, SqlDatabaseCreateUpdateParameters(
        properties=SqlDatabaseCreateUpdateProperties(resource=SqlDatabaseResource(id=names.COSMOS_DATABASE)))).result()
    cosmos.sql_resources.begin_create_update_sql_container(
        rg, names.cosmos_account(), names.COSMOS_DATABASE, names.COSMOS_CONTAINER, SqlContainerCreateUpdateParameters(
            properties=SqlContainerCreateUpdateProperties(resource=SqlContainerResource(
                id=names.COSMOS_CONTAINER, partition_key=ContainerPartitionKey(paths=["/device_id"], kind="Hash"))))).result()
    cosmos_key = cosmos.database_accounts.list_keys(rg, names.cosmos_account()).primary_master_key

    # L1: the hub and its devices (registry ids `{twin}-{device}`).
    hubs = IotHubClient(env.cred, env.sub, **env.kw)
    hub = hubs.iot_hub_resource.begin_create_or_update(
        rg, names.iot_hub(), IotHubDescription(location=LOC, sku=IotHubSkuInfo(name="S1", capacity=1))).result()
    owner = next(k for k in hubs.iot_hub_resource.list_keys(rg, names.iot_hub()) if k.key_name == "iothubowner")
    host = hub.properties.host_name
    for device in SPEC["devices"]:
        registry_id = names.iot_device(device["id"])
        r = requests.put(f"https://{host}/devices/{urllib.parse.quote(registry_id)}", params={"api-version": "2021-04-12"},
                         json={"deviceId": registry_id}, verify=env.sb.ca_file, timeout=30,
                         headers={"Authorization": simulate._sas(host, owner.primary_key, "iothubowner")})
        assert r.status_code == 200, r.text

    # One Function App hosting L1's dispatcher, L2's processor + persister, and L4's ADT updater.
    app = names.function_app("L2")
    info = DigitalTwinInfo(TWIN, "PRODUCTION", 7, 60, {layer: "azure" for layer in (
        "L1", "L2", "L3_hot", "L3_cold", "L3_archive", "L4", "L5")}).to_json()
    site = env.function_app(rg, app, {}, identity_id=ident.id)
    master = env.web.web_apps.list_host_keys(rg, app).master_key
    env.set_settings(rg, app, {
        "DIGITAL_TWIN_INFO": info, "TARGET_FUNCTION": "processor",
        "PROCESSOR_URL": f"https://{site.default_host_name}/api/processor", "PROCESSOR_KEY": master,
        "COSMOS_DB_ENDPOINT": account.document_endpoint, "COSMOS_DB_KEY": cosmos_key,
        "COSMOS_DB_DATABASE": names.COSMOS_DATABASE, "COSMOS_DB_CONTAINER": names.COSMOS_CONTAINER,
        "ADT_INSTANCE_URL": f"https://{adt.host_name}", "AZURE_CLIENT_ID": ident.client_id,
    })
    env.zip_deploy(site, build_azure_app_package(app, ["dispatcher", "processor", "persister", "adt-updater"]).data)
    env.web.web_apps.sync_function_triggers(rg, app)
    env.runtime.wait_running(app)

    eg = EventGridManagementClient(env.cred, env.sub, **env.kw)
    eg.system_topics.begin_create_or_update(rg, names.iot_system_topic(), SystemTopic(
        location=LOC, source=hub.id, topic_type="Microsoft.Devices.IoTHubs")).result()
    for fn in ("dispatcher", "adt-updater"):
        eg.system_topic_event_subscriptions.begin_create_or_update(rg, names.iot_system_topic(), f"to-{fn}", EventSubscription(
            destination=AzureFunctionEventSubscriptionDestination(resource_id=f"{site.id}/functions/{fn}",
                                                                  max_events_per_batch=1),
            filter=EventSubscriptionFilter(included_event_types=["Microsoft.Devices.DeviceTelemetry"]))).result()


def test_simulated_azure_messages_reach_cosmos_and_the_twin(azure_env: Any) -> None:
    _deploy_azure_twin(azure_env)
    parser = argparse.ArgumentParser()
    simulate.register(parser.add_subparsers())
    args = parser.parse_args(["simulate", str(SPEC_FILE), "--sandbox", str(azure_env.sb.state_dir), "--count", "2",
                              "--json"])
    out, err = io.StringIO(), io.StringIO()
    code = simulate.run(args, out, err)
    assert code == 0, (out.getvalue(), err.getvalue())
    report = json.loads(out.getvalue())
    assert report["ok"] and len(report["messages"]) == 2 * len(SPEC["devices"])
    print("latencies ms (stored, twin):", [(m["stored_ms"], m["twin_ms"]) for m in report["messages"]])
    for m in report["messages"]:
        assert m["errors"] == [] and m["stored_ms"] is not None and m["twin_ms"] is not None, m
