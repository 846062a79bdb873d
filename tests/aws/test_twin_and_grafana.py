"""L4 and L5 kinds: TwinMaker workspace, component types, entities; Managed Grafana."""

from __future__ import annotations

from typing import Any

from activities.providers.aws._common import client
from sandbox.core.profiles import Profile

ENTITIES = "aws/L4/twinmaker-entities"


def test_twinmaker_workspace_types_and_entities(walker: Any, ops: Any, sandbox: Any) -> None:
    w = walker()
    results = w.ensure_all(upto=ENTITIES)
    assert all(results[r].action == "created" for r in results if r.startswith("aws/L4/"))
    ws = f"{w.twin}-twinmaker"
    tm = client("iottwinmaker")
    got = tm.get_workspace(workspaceId=ws)
    assert got["s3Location"] == f"arn:aws:s3:::{w.twin}-twinmaker" and got["role"].endswith(f"/{w.twin}-twinmaker")
    ct = tm.get_component_type(workspaceId=ws, componentTypeId=f"{w.twin}-climate-sensor-1")
    assert ct["status"]["state"] == "ACTIVE"
    reader = w.outputs["aws/L3_hot/hot-reader"]["HOT_READER_FUNCTION_ARN"]
    last = w.outputs["aws/L3_hot/hot-reader-last-entry"]["HOT_READER_LAST_ENTRY_FUNCTION_ARN"]
    assert ct["functions"]["dataReader"]["implementedBy"]["lambda"]["arn"] == reader
    assert ct["functions"]["attributePropertyValueReaderByEntity"]["implementedBy"]["lambda"]["arn"] == last
    props = ct["propertyDefinitions"]
    assert props["temperature"]["isTimeSeries"] and props["temperature"]["isStoredExternally"]
    assert props["serial-number"]["defaultValue"] == {"stringValue": "CS-0001"}
    root = tm.get_entity(workspaceId=ws, entityId="greenhouse-1")
    assert root["parentEntityId"] == "$ROOT"
    assert {n: c["componentTypeId"] for n, c in root["components"].items()} == {
        "climate-sensor-1": f"{w.twin}-climate-sensor-1", "soil-probe-1": f"{w.twin}-soil-probe-1"}
    # Second run: nothing written anywhere along the chain.
    mark, seq = ops.mark(), sandbox.seq()
    again = w.ensure_all(upto=ENTITIES)
    assert {r: x.action for r, x in again.items() if x.action != "unchanged"} == {}
    assert ops.writes(mark) == [] and sandbox.wire_mutations(seq) == []
    # apply_settings re-points the reader; unchanged settings write nothing.
    rid = "aws/L4/component-type-soil-probe-1"
    other = reader.replace("hot-reader", "dt-reader")
    assert w.apply_settings(rid, {"DATA_READER_FUNCTION_ARN": other, "LAST_ENTRY_READER_FUNCTION_ARN": last})
    assert tm.get_component_type(workspaceId=ws, componentTypeId=f"{w.twin}-soil-probe-1")[
        "functions"]["dataReader"]["implementedBy"]["lambda"]["arn"] == other
    mark = ops.mark()
    assert not w.apply_settings(rid, {"DATA_READER_FUNCTION_ARN": other, "LAST_ENTRY_READER_FUNCTION_ARN": last})
    assert ops.writes(mark) == []
    # The next ensure reconciles to the wired reader again.
    assert w.ensure(rid).action == "updated"
    # A stale entity is removed and a missing component re-created on the next ensure.
    tm.create_entity(workspaceId=ws, entityId="stale-1", entityName="stale-1")
    tm.update_entity(workspaceId=ws, entityId="greenhouse-1",
                     componentUpdates={"soil-probe-1": {"updateType": "DELETE"}})
    assert w.ensure(ENTITIES).action == "updated"
    ids = {e["entityId"] for e in tm.list_entities(workspaceId=ws)["entitySummaries"]}
    assert ids == {"greenhouse-1"}
    assert "soil-probe-1" in tm.get_entity(workspaceId=ws, entityId="greenhouse-1")["components"]
    gone = w.delete_all(upto=ENTITIES)
    assert all(gone[r].action == "deleted" for r in gone if r.startswith("aws/"))
    assert [x for x in tm.list_workspaces()["workspaceSummaries"] if x["workspaceId"] == ws] == []


def test_entities_wait_for_their_parent(walker: Any, sandbox: Any) -> None:
    w = walker(hierarchy={"aws": [{"type": "entity", "id": "site", "children": [
        {"type": "entity", "id": "hall", "children": [
            {"type": "component", "name": "climate-sensor-1", "iotDeviceId": "climate-sensor-1"}]}]}]})
    w.ensure_all(upto="aws/L4/component-type-soil-probe-1")
    w.ensure("aws/L4/component-type-climate-sensor-1")
    sandbox.sb.ctx.faults.profile = Profile("slow-entities", delay_scale=0.05)  # entities take a moment
    first = w.call(ENTITIES)
    from activities.registry import provider_for

    started = provider_for("aws", "twinmaker-entities").ensure(first)
    assert started.pending is not None and "waits for its parent site" in started.pending.description
    tm = client("iottwinmaker")
    ws = f"{w.twin}-twinmaker"
    assert [e["entityId"] for e in tm.list_entities(workspaceId=ws)["entitySummaries"]] == ["site"]
    done = w.drive(ENTITIES, started)
    assert done.action == "created"
    assert tm.get_entity(workspaceId=ws, entityId="hall")["parentEntityId"] == "site"
    sandbox.profile("instant")
    w.delete_all(upto=ENTITIES)


def test_grafana_workspace_polls_until_active(walker: Any, ops: Any, sandbox: Any) -> None:
    w = walker()
    rid = "aws/L5/grafana"
    sandbox.sb.ctx.faults.profile = Profile("slow-grafana", delay_scale=0.002)  # ~0.6 s to ACTIVE
    result = w.ensure_all(upto=rid)[rid]
    assert result.action == "created" and w.polls >= 1
    url = result.outputs["GRAFANA_URL"]
    # The sandbox serves the workspace's Grafana HTTP API itself (AWS: `g-....grafana-workspace...`).
    assert url.startswith("https://") and "/grafana/g-" in url
    sandbox.profile("instant")
    mark, seq = ops.mark(), sandbox.seq()
    assert w.ensure(rid).action == "unchanged"
    assert ops.writes(mark) == [] and sandbox.wire_mutations(seq) == []
    assert w.read(rid).details["status"] == "ACTIVE"
    assert w.delete(rid).action == "deleted"
    assert w.delete(rid).action == "absent"
    w.delete_all(upto=rid)


def test_grafana_creation_failure_is_recreated(walker: Any, sandbox: Any) -> None:
    w = walker()
    rid = "aws/L5/grafana"
    w.ensure_all(upto="aws/setup/resource-group")
    # Every long operation fails once: the workspace ends CREATION_FAILED, is deleted and re-created.
    sandbox.sb.ctx.faults.profile = Profile("fail-once", lro_fail_once_rate=1.0)
    result = w.ensure(rid)
    assert result.action == "created" and result.outputs["GRAFANA_URL"].startswith("https://")
    sandbox.profile("instant")
    names = [x for x in client("grafana").list_workspaces()["workspaces"] if x["name"] == f"{w.twin}-grafana"]
    assert [x["status"] for x in names] == ["ACTIVE"]
    w.delete(rid)


def test_grafana_datasource_is_created_reconciled_and_deleted(walker: Any) -> None:
    w = walker()
    rid = "aws/L5/grafana-datasource"
    w.ensure_all(upto="aws/L5/grafana")
    w.ensure_all(upto="aws/L3_hot/hot-reader")
    assert w.ensure(rid).action == "created"
    assert w.ensure(rid).action == "unchanged"
    found = w.read(rid)
    assert found.exists and found.details["type"] == "marcusolsson-json-datasource"
    assert w.delete(rid).action == "deleted"
    assert w.delete(rid).action == "absent"
    assert not w.read(rid).exists
