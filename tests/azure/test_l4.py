"""L4: Digital Twins instance, Data Owner role (identity + deployer), models, twins and
relationships; the ADT updater's Event Grid subscription."""

from __future__ import annotations

from typing import Any

import pytest
from azure.digitaltwins.core import DigitalTwinsClient

from activities.clouds import clouds_from_environ
from activities.providers.azure._common import deployer_principal_id
from activities.providers.azure.dtdl_models import chunks, upload_order
from activities.registry import provider_for
from shared.engine.errors import PermanentError, TransientError

ADT = "azure/L4/digital-twins"
ROLE = "azure/L4/adt-role-assignment"
MODELS = "azure/L4/dtdl-models"
GRAPH = "azure/L4/twin-graph"
SUB = "azure/L4/adt-updater-subscription"


def _client(url: str) -> DigitalTwinsClient:
    cl = clouds_from_environ()
    return DigitalTwinsClient(url, cl.azure_credential(), **cl.azure_client_kwargs())


def test_instance_role_models_and_graph(walker: Any, sandbox: Any) -> None:
    w = walker()
    w.ensure_all(["azure/setup/resource-group", "azure/setup/identity", ADT])
    url = w.outputs[ADT]["ADT_INSTANCE_URL"]
    assert url == "https://" + w.read(ADT).details["hostName"]
    # Before the role: the data plane refuses the deployer; that is transient, not fatal.
    with pytest.raises(TransientError, match="not effective yet"):
        provider_for("azure", "dtdl-models").ensure(w.call(MODELS))
    assert w.ensure(ROLE).action == "created"
    assert w.ensure(MODELS).action == "created"
    assert w.ensure(GRAPH).action == "created"
    client = _client(url)
    assert {m.id for m in client.list_models()} == {m["@id"] for m in w.plan.resource(MODELS).config.models}
    rels = list(client.list_relationships("greenhouse-1"))
    assert sorted(r["$relationshipId"] for r in rels) == sorted(
        r.relationship_id for r in w.plan.resource(GRAPH).config.relationships)

    # A value written at runtime (telemetry) survives a reconcile; a removed relationship returns.
    client.update_digital_twin("climate-sensor-1", [{"op": "add", "path": "/lastTemperature", "value": 30.5}])
    client.delete_relationship("greenhouse-1", "greenhouse-1-hasSensor-soil-probe-1")
    assert w.ensure(GRAPH).action == "updated"
    assert client.get_digital_twin("climate-sensor-1")["lastTemperature"] == 30.5

    mark = sandbox.seq()
    assert [w.ensure(r).action for r in (ADT, ROLE, MODELS, GRAPH)] == ["unchanged"] * 4
    assert sandbox.mutations(mark) == []

    # Deleting the graph removes relationships first, then twins; models then go in reverse order.
    assert w.delete(GRAPH).action == "deleted"
    assert list(client.query_twins("SELECT * FROM digitaltwins")) == []
    assert w.delete(GRAPH).action == "absent"
    assert w.delete(MODELS).action == "deleted"
    assert list(client.list_models()) == []
    assert w.delete(ROLE).action == "deleted"
    assert w.delete(ADT).action == "deleted" and w.delete(ADT).action == "absent"
    assert w.delete(MODELS).action == "absent"  # the instance is gone: nothing left to delete
    w.delete("azure/setup/resource-group")


def test_deployer_gets_the_data_role_too(walker: Any, sandbox: Any) -> None:
    w = walker()
    w.ensure_all(["azure/setup/resource-group", "azure/setup/identity", ADT, ROLE])
    details = w.read(ROLE).details["assignments"]
    assert len(details) == 2 and all(details.values())
    assert any(k.endswith(deployer_principal_id()) for k in details)
    w.delete("azure/setup/resource-group")


def test_changed_model_definition_is_refused(walker: Any, sandbox: Any) -> None:
    w = walker()
    w.ensure_all(["azure/setup/resource-group", "azure/setup/identity", ADT, ROLE, MODELS])
    call = w.call(MODELS)
    models = [dict(m) for m in call.resource.config["models"]]
    models[0]["displayName"] = "Renamed"
    changed = type(call.resource)(**{**call.resource.__dict__, "config": {**call.resource.config, "models": models}})
    with pytest.raises(PermanentError, match="immutable"):
        provider_for("azure", "dtdl-models").ensure(type(call)(twin=call.twin, resource=changed))
    w.delete("azure/setup/resource-group")


def test_upload_order_and_chunks() -> None:
    base = {"@id": "dtmi:x:Base;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3"}
    room = {"@id": "dtmi:x:Room;1", "@type": "Interface", "extends": "dtmi:x:Base;1",
            "contents": [{"@type": "Relationship", "name": "has", "target": "dtmi:x:Machine;1"}]}
    machine = {"@id": "dtmi:x:Machine;1", "@type": "Interface", "extends": ["dtmi:x:Base;1"],
               "contents": [{"@type": "Relationship", "name": "in", "target": "dtmi:x:Room;1"},
                            {"@type": "Component", "name": "c", "schema": "dtmi:x:Part;1"}]}
    part = {"@id": "dtmi:x:Part;1", "@type": "Interface"}
    order = [m["@id"] for m in upload_order([room, machine, part, base])]
    assert order.index("dtmi:x:Base;1") < order.index("dtmi:x:Room;1")
    assert order.index("dtmi:x:Part;1") < order.index("dtmi:x:Machine;1")
    assert sorted(order) == sorted(str(m["@id"]) for m in (room, machine, part, base))
    with pytest.raises(PermanentError, match="cycle"):
        upload_order([{"@id": "dtmi:x:A;1", "extends": "dtmi:x:B;1"}, {"@id": "dtmi:x:B;1", "extends": "dtmi:x:A;1"}])
    many = [{"@id": f"dtmi:x:M{i};1"} for i in range(600)]
    assert [len(c) for c in chunks(many)] == [250, 250, 100]


def test_adt_updater_subscription_after_the_function_is_indexed(walker: Any, sandbox: Any) -> None:
    w = walker()
    results = w.ensure_all(upto=SUB)
    assert results[SUB].action == "created"
    assert results["azure/L4/function-app"].action == "created"
    mark = sandbox.seq()
    assert {r.action for r in w.ensure_all(upto=SUB).values()} == {"unchanged"}
    assert sandbox.mutations(mark) == []
    assert w.delete(SUB).action == "deleted" and w.delete(SUB).action == "absent"
    w.delete("azure/setup/resource-group")


def test_writes_to_one_twin_are_rate_limited() -> None:
    import time

    from activities.providers.azure._common import Throttle

    throttle = Throttle(per_second=50)
    started = time.monotonic()
    for _ in range(11):
        throttle.wait("twin-a")
    spent = time.monotonic() - started
    assert spent >= 10 / 50 * 0.95  # 11 writes to one twin: at least 10 intervals
    other = time.monotonic()
    throttle.wait("twin-b")  # another twin is not held back
    assert time.monotonic() - other < 0.05


def test_large_graph_is_walked_across_calls(walker: Any, sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from activities.providers.azure import twin_graph

    w = walker()
    w.ensure_all(["azure/setup/resource-group", "azure/setup/identity", ADT, ROLE, MODELS])
    monkeypatch.setattr(twin_graph, "CALL_BUDGET_SECONDS", 0.0)  # one item per activity call
    polls = w.polls
    assert w.ensure(GRAPH).action == "created"
    items = len(w.plan.resource(GRAPH).config.twins) + len(w.plan.resource(GRAPH).config.relationships)
    assert w.polls - polls == items  # the decision to create, then one call per item
    assert w.read(GRAPH).exists
    w.delete("azure/setup/resource-group")


def test_models_partly_uploaded_or_raced_converge(walker: Any, sandbox: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    w = walker()
    w.ensure_all(["azure/setup/resource-group", "azure/setup/identity", ADT, ROLE])
    models = w.plan.resource(MODELS).config.models
    _client(w.outputs[ADT]["ADT_INSTANCE_URL"]).create_models([models[0]])  # someone uploaded one already
    assert w.ensure(MODELS).action == "updated"
    assert w.delete(MODELS).action == "deleted"
    # Two runs at once (a retried activity): both end well, whoever loses gets 409 and compares.
    provider = provider_for("azure", "dtdl-models")
    decided = provider.ensure(w.call(MODELS))  # none there: the upload is decided, then made by the poll
    assert decided.action == "created" and decided.pending is not None
    with ThreadPoolExecutor(2) as pool:
        actions = sorted(f.result().action for f in [pool.submit(provider.poll, w.call(MODELS, decided.pending))
                                                      for _ in range(2)])
    assert {"created", "updated"} & set(actions)  # at least one of them uploaded; neither failed
    assert w.read(MODELS).exists
    w.delete("azure/setup/resource-group")
