"""Pure parts of the out-of-band path: which ARM resource is which twin's producer, and the state
entity keeping the latest observation when two refreshes race."""

from __future__ import annotations

from control_plane.events import producers_of, resource_group_of
from orchestrators.refresh import producers
from orchestrators.twin_state import apply
from shared.engine.state import TwinState
from shared.naming import AzureNaming

SUB = "/subscriptions/00000000-0000-0000-0000-000000000000"
ADT_ID = f"{SUB}/resourceGroups/demo-rg/providers/Microsoft.DigitalTwins/digitalTwinsInstances/demo-adt"


def _state() -> TwinState:
    return TwinState.from_dict({"resources": {
        "azure/L4/digital-twins": {"provider": "azure", "kind": "digital-twins", "state": "deployed",
                                   "produces": ["ADT_INSTANCE_URL"],
                                   "config": {"name": "demo-adt", "resource_group": "demo-rg"}},
        "azure/L4/models": {"provider": "azure", "kind": "dtdl-models", "state": "deployed", "produces": [],
                            "config": {"name": "demo-adt", "resource_group": "demo-rg"}},
        "control/setup/inter-cloud-token": {"provider": "control", "kind": "secret", "state": "deployed",
                                            "produces": ["INTER_CLOUD_TOKEN"], "config": {}},
        "aws/L3_hot/hot-table": {"provider": "aws", "kind": "dynamodb-table", "state": "failed",
                                 "produces": ["DYNAMODB_TABLE_NAME"], "config": {"name": "demo-hot"}},
    }})


def test_an_arm_resource_id_leads_to_its_twin_and_producer() -> None:
    located = resource_group_of(ADT_ID)
    assert located == ("demo-rg", ["Microsoft.DigitalTwins", "digitalTwinsInstances", "demo-adt"])
    assert AzureNaming.twin_of_resource_group("demo-rg") == "demo"
    assert AzureNaming.twin_of_resource_group("unrelated") is None
    assert producers_of(_state(), *located) == ["azure/L4/digital-twins"]
    # A child (app settings of a site) or another group is nobody's producer.
    assert producers_of(_state(), "demo-rg", ["Microsoft.Web", "sites", "demo-adt", "config", "appsettings"]) == []
    assert producers_of(_state(), "other-rg", ["Microsoft.DigitalTwins", "digitalTwinsInstances", "demo-adt"]) == []
    assert resource_group_of(f"{SUB}/providers/Microsoft.Web/sites/x") is None


def test_refresh_reads_deployed_cloud_producers_only() -> None:
    assert producers(_state(), None) == ["azure/L4/digital-twins"]
    assert producers(_state(), ["aws/L3_hot/hot-table"]) == []


def test_an_older_observation_never_overwrites_a_newer_one() -> None:
    state = _state()
    def observe(state: TwinState, data: dict) -> object:
        return apply(state, "observe_outputs", data)

    url = {"ADT_INSTANCE_URL": {"value": "https://new", "secret": False}}
    newer = observe(state, {"producer": "azure/L4/digital-twins", "outputs": url, "observed_at": "2026-01-01T00:00:02+00:00"})
    assert newer == {"stale": False, "outputs": {"ADT_INSTANCE_URL": {"version": 1, "changed": True}}}
    older = observe(state, {"producer": "azure/L4/digital-twins", "observed_at": "2026-01-01T00:00:01+00:00",
                            "outputs": {"ADT_INSTANCE_URL": {"value": "https://old", "secret": False}}})
    assert older["stale"] is True
    assert state.outputs["ADT_INSTANCE_URL"].value == "https://new"
    same = observe(state, {"producer": "azure/L4/digital-twins", "outputs": url, "observed_at": "2026-01-01T00:00:03+00:00"})
    assert same["outputs"]["ADT_INSTANCE_URL"] == {"version": 1, "changed": False}
    assert observe(state, {"producer": "nope", "outputs": url, "observed_at": "z"})["stale"] is True
