"""L1 (IoT Hub, RBAC, Event Grid), L3 (Cosmos DB), L5 (Managed Grafana) through the real SDKs."""

from __future__ import annotations

from typing import Any

import pytest
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.eventgrid import EventGridManagementClient

from activities.providers.azure._common import mgmt
from activities.registry import provider_for
from shared.engine.errors import PermanentError

HUB = "azure/L1/iot-hub"
HUB_ROLE = "azure/L1/iot-hub-role-assignment"
TOPIC = "azure/L1/iot-hub-events"
CONTAINER = "azure/L3_hot/cosmos-container"


def test_iot_hub_role_and_system_topic(walker: Any, sandbox: Any) -> None:
    w = walker()
    rids = ["azure/setup/resource-group", "azure/setup/identity", HUB, HUB_ROLE, TOPIC]
    first = w.ensure_all(rids)
    assert {first[r].action for r in (HUB, HUB_ROLE, TOPIC)} == {"created"}
    conn = w.outputs[HUB]["IOT_HUB_SERVICE_CONNECTION_STRING"]
    assert conn.startswith("HostName=") and "SharedAccessKeyName=service;SharedAccessKey=" in conn
    hub_id = w.read(HUB).details["id"]
    principal = w.outputs["azure/setup/identity"]["AZURE_IDENTITY_PRINCIPAL_ID"]
    roles = {a.role_definition_id.rsplit("/", 1)[-1]
             for a in mgmt(AuthorizationManagementClient).role_assignments.list_for_scope(hub_id)
             if a.principal_id == principal}
    assert roles == set(w.plan.resource(HUB_ROLE).config.role_definition_ids)
    topic = mgmt(EventGridManagementClient).system_topics.get(w.plan.resource(TOPIC).config.resource_group,
                                                               w.plan.resource(TOPIC).config.name)
    assert str(topic.source).lower() == hub_id.lower()

    mark = sandbox.seq()
    again = w.ensure_all(rids)
    assert {r.action for r in again.values()} == {"unchanged"}
    assert sandbox.mutations(mark) == []
    assert w.read(HUB_ROLE).exists

    assert w.delete(HUB_ROLE).action == "deleted"
    assert not w.read(HUB_ROLE).exists
    assert w.delete(HUB_ROLE).action == "absent"
    assert w.ensure(HUB_ROLE).action == "created"  # reconcile: a removed assignment comes back
    assert w.delete(TOPIC).action == "deleted" and w.delete(TOPIC).action == "absent"
    assert w.delete(HUB).action == "deleted" and not w.read(HUB).exists
    w.delete("azure/setup/resource-group")


def test_cosmos_account_and_container(walker: Any, sandbox: Any) -> None:
    w = walker()
    first = w.ensure_all(upto=CONTAINER)
    assert first[CONTAINER].action == "created"
    assert w.outputs[CONTAINER] == {"COSMOS_DB_DATABASE": "iot-data", "COSMOS_DB_CONTAINER": "hot-data"}
    account = w.outputs["azure/L3_hot/cosmos-account"]
    assert account["COSMOS_DB_ENDPOINT"].startswith("https://") and account["COSMOS_DB_KEY"]
    mark = sandbox.seq()
    assert {r.action for r in w.ensure_all(upto=CONTAINER).values()} == {"unchanged"}
    assert sandbox.mutations(mark) == []
    assert w.delete(CONTAINER).action == "deleted"
    assert not w.read(CONTAINER).exists
    assert w.ensure(CONTAINER).action == "created"
    assert w.delete("azure/L3_hot/cosmos-account").action == "deleted"
    assert w.delete(CONTAINER).action == "absent"
    w.delete("azure/setup/resource-group")


def test_blob_containers_record_their_tier(walker: Any, sandbox: Any) -> None:
    w = walker()
    w.ensure_all(upto="azure/L3_archive/archive-container")
    w.ensure("azure/L3_cold/cold-container")
    assert w.read("azure/L3_cold/cold-container").exists
    assert w.outputs["azure/L3_archive/archive-container"] == {"ARCHIVE_STORAGE_CONTAINER": "archive-data"}
    from azure.mgmt.storage import StorageManagementClient

    cfg = w.plan.resource("azure/L3_archive/archive-container").config
    c = mgmt(StorageManagementClient).blob_containers.get(cfg.resource_group, cfg.storage_account, cfg.name)
    assert c.metadata == {"access_tier": "Archive"}
    mark = sandbox.seq()
    assert w.ensure("azure/L3_archive/archive-container").action == "unchanged"
    assert sandbox.mutations(mark) == []
    w.delete("azure/setup/resource-group")


def test_grafana_and_its_datasource(walker: Any, sandbox: Any) -> None:
    w = walker()
    w.ensure_all(["azure/setup/resource-group", "control/setup/inter-cloud-token", "azure/L5/grafana"])
    endpoint = w.outputs["azure/L5/grafana"]["GRAFANA_URL"]
    assert endpoint.startswith("https://")
    mark = sandbox.seq()
    assert w.ensure("azure/L5/grafana").action == "unchanged"
    assert sandbox.mutations(mark) == []
    w.outputs["azure/L3_hot/function-app"] = {"LOCAL_HOT_READER_URL": "https://reader.example/api/hot-reader"}
    ds = "azure/L5/grafana-datasource"
    if "127.0.0.1" not in endpoint:
        # This sandbox serves no Grafana data plane: the datasource fails clearly, not with a traceback.
        with pytest.raises(PermanentError, match="does not serve the Managed Grafana data plane"):
            w.ensure(ds)
    else:
        w.retry_transient = True  # the Grafana Admin role of the deployer takes a moment
        reader = w.outputs.pop("azure/L3_hot/function-app")  # the reader URL is late-bound
        assert w.ensure(ds).action == "created"
        assert w.read(ds).exists
        w.outputs["azure/L3_hot/function-app"] = reader  # propagation brings it
        assert provider_for("azure", "grafana-datasource").apply_settings(w.call(ds)) is True
        mark = sandbox.seq()
        assert w.ensure(ds).action == "unchanged"
        assert sandbox.mutations(mark) == []
        # A rotated token is written again (its value cannot be read back: its hash is compared).
        w.outputs["control/setup/inter-cloud-token"] = {**w.outputs["control/setup/inter-cloud-token"],
                                                        "INTER_CLOUD_TOKEN": "rotated-token-value"}
        assert w.ensure(ds).action == "updated"
        assert w.delete(ds).action == "deleted" and w.delete(ds).action == "absent"
    assert w.delete("azure/L5/grafana").action == "deleted"
    assert w.delete(ds).action == "absent"
    w.delete("azure/setup/resource-group")


def test_role_assigned_by_someone_else_counts_as_present(walker: Any, sandbox: Any) -> None:
    import uuid

    from activities.providers.azure.role_assignment import role_definition_id

    w = walker()
    w.ensure_all(["azure/setup/resource-group", "azure/setup/identity", HUB])
    hub_id = w.read(HUB).details["id"]
    principal = w.outputs["azure/setup/identity"]["AZURE_IDENTITY_PRINCIPAL_ID"]
    roles = w.plan.resource(HUB_ROLE).config.role_definition_ids
    client = mgmt(AuthorizationManagementClient).role_assignments
    client.create(hub_id, str(uuid.uuid4()), {"properties": {"roleDefinitionId": role_definition_id(roles[0]),
                                                             "principalId": principal}})
    assert w.ensure(HUB_ROLE).action == "updated"  # only the other role was missing
    mine = [a for a in client.list_for_scope(hub_id) if a.principal_id == principal]
    assert sorted(a.role_definition_id.rsplit("/", 1)[-1] for a in mine) == sorted(roles)
    w.delete("azure/setup/resource-group")
