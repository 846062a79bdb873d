"""The sandbox's Azure Digital Twins data plane, driven by the real `DigitalTwinsClient` over HTTPS.

Instances and role assignments are made through ARM with the real azure-mgmt clients, as the
deployer does; every data-plane call goes through azure-digitaltwins-core unchanged except for
the endpoint, the CA file and the static credential.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.digitaltwins.core import DigitalTwinsClient
from azure.digitaltwins.core._generated.models import QueryTwinsOptions
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.models import RoleAssignmentCreateParameters
from azure.mgmt.digitaltwins import AzureDigitalTwinsManagementClient
from azure.mgmt.digitaltwins.models import DigitalTwinsDescription
from azure.mgmt.resource.resources import ResourceManagementClient
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.core.auth import SandboxCredential
from sandbox.core.context import RoleAssignment
from sandbox.digitaltwins.query import QueryError, parse_query
from sandbox.server import Sandbox

DATA_OWNER = "bcd981a7-7f74-457b-83e1-cceb9e632ffe"
DATA_READER = "d57506d4-4c8d-48b1-8587-93c323f6a5a3"
CTX2 = "dtmi:dtdl:context;2"

BASE = {
    "@id": "dtmi:sbx:Asset;1",
    "@type": "Interface",
    "@context": CTX2,
    "displayName": "Asset",
    "contents": [
        {"@type": "Property", "name": "label", "schema": "string"},
        {"@type": "Property", "name": "temperature", "schema": "double", "writable": True},
        {"@type": "Telemetry", "name": "reading", "schema": "double"},
    ],
}
ROOM = {
    "@id": "dtmi:sbx:Room;1",
    "@type": "Interface",
    "@context": CTX2,
    "extends": "dtmi:sbx:Asset;1",
    "contents": [
        {"@type": "Property", "name": "occupied", "schema": "boolean"},
        {
            "@type": "Property",
            "name": "mode",
            "schema": {"@type": "Enum", "valueSchema": "string", "enumValues": [{"name": "on", "enumValue": "on"}, {"name": "off", "enumValue": "off"}]},
        },
    ],
}
FLOOR = {
    "@id": "dtmi:sbx:Floor;1",
    "@type": "Interface",
    "@context": CTX2,
    "extends": "dtmi:sbx:Asset;1",
    "contents": [
        {
            "@type": "Relationship",
            "name": "contains",
            "target": "dtmi:sbx:Room;1",
            "properties": [{"@type": "Property", "name": "since", "schema": "integer"}],
        },
        {"@type": "Relationship", "name": "near"},
    ],
}
SENSOR = {
    "@id": "dtmi:sbx:Sensor;1",
    "@type": "Interface",
    "@context": CTX2,
    "contents": [
        {"@type": "Property", "name": "value", "schema": "double"},
        {"@type": "Component", "name": "battery", "schema": "dtmi:sbx:Battery;1"},
    ],
}
BATTERY = {
    "@id": "dtmi:sbx:Battery;1",
    "@type": "Interface",
    "@context": CTX2,
    "contents": [{"@type": "Property", "name": "level", "schema": "integer"}],
}
MODELS = [FLOOR, ROOM, BASE, SENSOR, BATTERY]  # references resolved within the batch, in any order


@dataclass
class Adt:
    sb: Sandbox
    rg: str
    name: str
    resource_id: str
    host_name: str
    client: DigitalTwinsClient

    def client_for(self, principal: str, **kwargs: Any) -> DigitalTwinsClient:
        return DigitalTwinsClient(
            self.host_name, SandboxCredential(principal), connection_verify=self.sb.ca_file, **kwargs
        )


def _mgmt(sb: Sandbox, cls: Any) -> Any:
    e = sb.endpoints["azure"]
    return cls(
        SandboxCredential(e["deployer_principal_id"]),
        e["subscription_id"],
        base_url=e["arm"],
        connection_verify=e["ca_file"],
        polling_interval=0,
    )


def _grant(sb: Sandbox, scope: str, principal: str, role: str) -> None:
    auth = _mgmt(sb, AuthorizationManagementClient)
    sub = sb.endpoints["azure"]["subscription_id"]
    auth.role_assignments.create(
        scope,
        str(uuid.uuid4()),
        RoleAssignmentCreateParameters(
            role_definition_id=f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{role}",
            principal_id=principal,
            principal_type="ServicePrincipal",
        ),
    )


def _new_instance(sb: Sandbox, rg: str, name: str) -> Adt:
    _mgmt(sb, ResourceManagementClient).resource_groups.create_or_update(rg, {"location": "westeurope"})
    dt = _mgmt(sb, AzureDigitalTwinsManagementClient)
    inst = dt.digital_twins.begin_create_or_update(rg, name, DigitalTwinsDescription(location="westeurope")).result()
    deployer = sb.endpoints["azure"]["deployer_principal_id"]
    _grant(sb, inst.id, deployer, DATA_OWNER)
    client = DigitalTwinsClient(
        inst.host_name, SandboxCredential(deployer), connection_verify=sb.ca_file, retry_total=0
    )
    return Adt(sb, rg, name, inst.id, inst.host_name, client)


@pytest.fixture(scope="module")
def adt(sandbox: Sandbox) -> Iterator[Adt]:
    suffix = uuid.uuid4().hex[:6]
    a = _new_instance(sandbox, f"rg-adt-{suffix}", f"adt-{suffix}")
    a.client.create_models(MODELS)
    yield a
    _mgmt(sandbox, ResourceManagementClient).resource_groups.begin_delete(a.rg).result()


def _err(exc: pytest.ExceptionInfo[HttpResponseError]) -> tuple[int, str]:
    err = exc.value
    assert err.error is not None, err
    return int(err.status_code or 0), str(err.error.code)


def _msg(exc: pytest.ExceptionInfo[Any]) -> str:
    err = exc.value.error
    return str(err.message if err is not None else exc.value)


def _room(twin_id: str, adt: Adt, **props: Any) -> dict[str, Any]:
    return adt.client.upsert_digital_twin(twin_id, {"$metadata": {"$model": "dtmi:sbx:Room;1"}, **props})


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- instance lifecycle, auth and RBAC -----------------------------------------------------------


def test_host_name_is_a_working_endpoint_and_changes_when_recreated(sandbox: Sandbox) -> None:
    suffix = uuid.uuid4().hex[:6]
    a = _new_instance(sandbox, f"rg-life-{suffix}", f"life-{suffix}")
    port = sandbox.arm_url.rsplit(":", 1)[1]
    assert a.host_name.startswith(f"127.0.0.1:{port}/digitaltwins-instances/life-{suffix}-")
    a.client.create_models([BATTERY])
    assert [m.id for m in a.client.list_models()] == ["dtmi:sbx:Battery;1"]

    dt = _mgmt(sandbox, AzureDigitalTwinsManagementClient)
    dt.digital_twins.begin_delete(a.rg, a.name).result()
    with pytest.raises(HttpResponseError) as gone:
        a.client.list_models().next()
    assert gone.value.status_code == 404

    again = dt.digital_twins.begin_create_or_update(a.rg, a.name, DigitalTwinsDescription(location="westeurope")).result()
    assert again.host_name != a.host_name, "a recreated instance must get a new host name"
    _grant(sandbox, again.id, sandbox.endpoints["azure"]["deployer_principal_id"], DATA_OWNER)
    fresh = DigitalTwinsClient(
        again.host_name, SandboxCredential(sandbox.endpoints["azure"]["deployer_principal_id"]), connection_verify=sandbox.ca_file
    )
    assert list(fresh.list_models()) == [], "the new instance starts empty"
    _mgmt(sandbox, ResourceManagementClient).resource_groups.begin_delete(a.rg).result()


def test_missing_or_garbled_token_gets_401(adt: Adt) -> None:
    url = f"https://{adt.host_name}/models?api-version=2023-10-31"
    r = requests.get(url, verify=adt.sb.ca_file, timeout=10)
    assert r.status_code == 401
    assert r.json()["error"]["code"]
    r = requests.get(url, verify=adt.sb.ca_file, timeout=10, headers={"Authorization": "Bearer not-a-jwt"})
    assert r.status_code == 401


def test_403_until_the_data_owner_role_is_granted_through_arm(adt: Adt) -> None:
    principal = str(uuid.uuid4())
    client = adt.client_for(principal, retry_total=0)
    with pytest.raises(HttpResponseError) as denied:
        client.get_model("dtmi:sbx:Room;1")
    assert _err(denied) == (403, "Forbidden")
    _grant(adt.sb, adt.resource_id, principal, DATA_OWNER)
    assert client.get_model("dtmi:sbx:Room;1").id == "dtmi:sbx:Room;1"


def test_reader_role_reads_but_cannot_write_and_rg_scope_counts(adt: Adt) -> None:
    principal = str(uuid.uuid4())
    rg_scope = adt.resource_id.split("/providers/")[0]
    _grant(adt.sb, rg_scope, principal, DATA_READER)
    client = adt.client_for(principal, retry_total=0)
    assert client.get_model("dtmi:sbx:Asset;1").id == "dtmi:sbx:Asset;1"
    with pytest.raises(HttpResponseError) as denied:
        client.upsert_digital_twin(_uid("r"), {"$metadata": {"$model": "dtmi:sbx:Room;1"}})
    assert _err(denied) == (403, "Forbidden")


def test_role_assignment_not_yet_effective_gives_403_then_works(adt: Adt) -> None:
    principal = str(uuid.uuid4())
    adt.sb.ctx.role_assignments.grant(
        RoleAssignment(f"{adt.resource_id}/ra/{principal}", principal, DATA_OWNER, adt.resource_id.lower(), time.time() + 0.6)
    )
    client = adt.client_for(principal, retry_total=0)
    with pytest.raises(HttpResponseError) as early:
        client.get_model("dtmi:sbx:Asset;1")
    assert early.value.status_code == 403
    time.sleep(0.7)
    assert client.get_model("dtmi:sbx:Asset;1").decommissioned is False


# --- models --------------------------------------------------------------------------------------


def test_models_listed_with_and_without_definitions(adt: Adt) -> None:
    listed = {m.id: m for m in adt.client.list_models()}
    assert set(listed) >= {m["@id"] for m in MODELS}
    assert listed["dtmi:sbx:Asset;1"].model is None
    assert listed["dtmi:sbx:Asset;1"].display_name == {"en": "Asset"}
    full = {m.id: m for m in adt.client.list_models(include_model_definition=True)}
    assert full["dtmi:sbx:Floor;1"].model["extends"] == "dtmi:sbx:Asset;1"
    one = adt.client.get_model("dtmi:sbx:Room;1", include_model_definition=True)
    assert one.model["@id"] == "dtmi:sbx:Room;1" and one.upload_time is not None
    deps = {m.id for m in adt.client.list_models(dependencies_for=["dtmi:sbx:Floor;1"])}
    assert deps == {"dtmi:sbx:Floor;1", "dtmi:sbx:Asset;1", "dtmi:sbx:Room;1"}


def test_duplicate_model_gets_409_model_id_already_exists(adt: Adt) -> None:
    with pytest.raises(HttpResponseError) as dup:
        adt.client.create_models([BASE])
    assert _err(dup) == (409, "ModelIdAlreadyExists")
    assert "dtmi:sbx:Asset;1" in _msg(dup)


@pytest.mark.parametrize(
    ("models", "fragment"),
    [
        ([{**BATTERY, "@id": "dtmi:sbx:Orphan;1", "extends": "dtmi:sbx:Missing;1"}], "dtmi:sbx:Missing;1"),
        (
            [{**BATTERY, "@id": "dtmi:sbx:Orphan;2", "contents": [{"@type": "Relationship", "name": "r", "target": "dtmi:sbx:Nope;1"}]}],
            "dtmi:sbx:Nope;1",
        ),
        ([{**BATTERY, "@id": "dtmi:sbx:bad-id;1"}], "not a valid DTMI"),
        ([{**BATTERY, "@id": "dtmi:sbx:NoVersion"}], "not a valid DTMI"),
        ([{**BATTERY, "@id": "dtmi:sbx:NoCtx;1", "@context": "dtmi:other;1"}], "@context"),
        ([{**BATTERY, "@id": "dtmi:sbx:Clash;1", "extends": "dtmi:sbx:Battery;1"}], "declared by both"),
    ],
)
def test_invalid_models_get_400_dtdl_parser_error(adt: Adt, models: list[dict[str, Any]], fragment: str) -> None:
    with pytest.raises(HttpResponseError) as bad:
        adt.client.create_models(models)
    assert _err(bad) == (400, "DTDLParserError")
    assert fragment in _msg(bad)
    with pytest.raises(ResourceNotFoundError):
        adt.client.get_model(models[0]["@id"])  # nothing of a refused batch is stored


def test_more_than_250_models_in_one_call_get_400(adt: Adt) -> None:
    batch = [{**BATTERY, "@id": f"dtmi:sbx:bulk:M{i};1"} for i in range(251)]
    with pytest.raises(HttpResponseError) as bad:
        adt.client.create_models(batch)
    assert bad.value.status_code == 400
    assert "250" in _msg(bad)
    created = adt.client.create_models(batch[:250])
    assert len(created) == 250
    # Pages hold 100 models, so listing follows nextLink (results_per_page is broken in the SDK 1.3.0).
    pages = [list(p) for p in adt.client.list_models().by_page()]
    assert len(pages) >= 3 and all(len(p) <= 100 for p in pages)
    assert sum(1 for p in pages for m in p if m.id.startswith("dtmi:sbx:bulk:")) == 250


def test_decommission_and_delete_rules(adt: Adt) -> None:
    used = {**BATTERY, "@id": "dtmi:sbx:Gadget;1"}
    child = {**BATTERY, "@id": "dtmi:sbx:GadgetPlus;1", "contents": [], "extends": "dtmi:sbx:Gadget;1"}
    adt.client.create_models([used, child])
    twin_id = _uid("gadget")
    adt.client.upsert_digital_twin(twin_id, {"$metadata": {"$model": "dtmi:sbx:Gadget;1"}, "level": 3})

    with pytest.raises(HttpResponseError) as referenced:
        adt.client.delete_model("dtmi:sbx:Gadget;1")
    assert _err(referenced) == (409, "ModelReferencesNotDeleted")
    adt.client.delete_model("dtmi:sbx:GadgetPlus;1")
    with pytest.raises(HttpResponseError) as in_use:
        adt.client.delete_model("dtmi:sbx:Gadget;1")
    assert _err(in_use) == (409, "ModelReferencesNotDeleted")

    adt.client.decommission_model("dtmi:sbx:Gadget;1")
    assert adt.client.get_model("dtmi:sbx:Gadget;1").decommissioned is True
    with pytest.raises(HttpResponseError) as no_new:
        adt.client.upsert_digital_twin(_uid("gadget"), {"$metadata": {"$model": "dtmi:sbx:Gadget;1"}})
    assert _err(no_new) == (400, "ValidationFailed")
    adt.client.update_digital_twin(twin_id, [{"op": "replace", "path": "/level", "value": 4}])  # existing twins live on

    adt.client.delete_digital_twin(twin_id)
    adt.client.delete_model("dtmi:sbx:Gadget;1")
    with pytest.raises(ResourceNotFoundError) as gone:
        adt.client.get_model("dtmi:sbx:Gadget;1")
    assert gone.value.error.code == "ModelNotFound"  # type: ignore[union-attr]


# --- twins ---------------------------------------------------------------------------------------


def test_twin_upsert_get_etag_and_metadata(adt: Adt) -> None:
    twin_id = _uid("room")
    created = _room(twin_id, adt, label="Lab", temperature=21.5, occupied=False)
    assert created["$dtId"] == twin_id
    assert created["$etag"].startswith('W/"')
    assert created["$metadata"]["$model"] == "dtmi:sbx:Room;1"
    assert set(created["$metadata"]) >= {"$lastUpdateTime", "label", "temperature", "occupied"}
    got = adt.client.get_digital_twin(twin_id)
    assert got == created
    replaced = _room(twin_id, adt, label="Lab 2")
    assert replaced["$etag"] != created["$etag"] and "temperature" not in replaced


def test_if_none_match_star_gives_412_when_the_twin_exists(adt: Adt) -> None:
    twin_id = _uid("room")
    adt.client.upsert_digital_twin(
        twin_id, {"$metadata": {"$model": "dtmi:sbx:Room;1"}}, match_condition=MatchConditions.IfMissing
    )
    with pytest.raises(HttpResponseError) as exists:
        adt.client.upsert_digital_twin(
            twin_id, {"$metadata": {"$model": "dtmi:sbx:Room;1"}}, match_condition=MatchConditions.IfMissing
        )
    assert _err(exists) == (412, "PreconditionFailed")
    assert "If-None-Match: * header was specified but a twin with the id" in _msg(exists)


@pytest.mark.parametrize(
    ("props", "fragment"),
    [
        ({"unknown": 1}, "'unknown' is not defined"),
        ({"reading": 1.0}, "is a Telemetry"),
        ({"temperature": "hot"}, "not a valid double"),
        ({"occupied": 1}, "not a valid boolean"),
        ({"mode": "auto"}, "enum"),
        ({"$weird": 1}, "system property"),
    ],
)
def test_twin_validation_failures_get_400(adt: Adt, props: dict[str, Any], fragment: str) -> None:
    with pytest.raises(HttpResponseError) as bad:
        _room(_uid("room"), adt, **props)
    assert _err(bad) == (400, "ValidationFailed")
    assert fragment in _msg(bad)


def test_twin_of_unknown_model_is_rejected(adt: Adt) -> None:
    with pytest.raises(HttpResponseError) as bad:
        adt.client.upsert_digital_twin(_uid("x"), {"$metadata": {"$model": "dtmi:sbx:Unknown;1"}})
    assert _err(bad) == (400, "ValidationFailed")


def test_json_patch_semantics_and_if_match(adt: Adt) -> None:
    twin_id = _uid("room")
    created = _room(twin_id, adt, label="A")
    with pytest.raises(HttpResponseError) as unset:
        adt.client.update_digital_twin(twin_id, [{"op": "replace", "path": "/temperature", "value": 20.0}])
    assert _err(unset) == (400, "JsonPatchInvalid")
    assert "temperature does not exist" in _msg(unset)
    adt.client.update_digital_twin(twin_id, [{"op": "add", "path": "/temperature", "value": 20.0}])
    adt.client.update_digital_twin(twin_id, [{"op": "replace", "path": "/temperature", "value": 22.0}])
    with pytest.raises(HttpResponseError) as bad_value:
        adt.client.update_digital_twin(twin_id, [{"op": "add", "path": "/occupied", "value": "yes"}])
    assert _err(bad_value) == (400, "ValidationFailed")
    with pytest.raises(HttpResponseError) as bad_op:
        adt.client.update_digital_twin(twin_id, [{"op": "move", "path": "/label", "from": "/x"}])
    assert _err(bad_op) == (400, "JsonPatchInvalid")
    adt.client.update_digital_twin(twin_id, [{"op": "remove", "path": "/label"}])
    with pytest.raises(HttpResponseError) as twice:
        adt.client.update_digital_twin(twin_id, [{"op": "remove", "path": "/label"}])
    assert _err(twice) == (400, "JsonPatchInvalid")

    twin = adt.client.get_digital_twin(twin_id)
    assert twin["temperature"] == 22.0 and "label" not in twin and "label" not in twin["$metadata"]
    with pytest.raises(HttpResponseError) as stale:
        adt.client.update_digital_twin(
            twin_id, [{"op": "add", "path": "/label", "value": "B"}], etag=created["$etag"], match_condition=MatchConditions.IfNotModified
        )
    assert _err(stale) == (412, "PreconditionFailed")
    adt.client.update_digital_twin(
        twin_id, [{"op": "add", "path": "/label", "value": "B"}], etag=twin["$etag"], match_condition=MatchConditions.IfNotModified
    )
    after = adt.client.get_digital_twin(twin_id)
    assert after["label"] == "B" and after["$etag"] != twin["$etag"]
    assert after["$metadata"]["temperature"] == twin["$metadata"]["temperature"], "untouched property keeps its time"


def test_components_are_required_readable_and_patchable(adt: Adt) -> None:
    with pytest.raises(HttpResponseError) as missing:
        adt.client.upsert_digital_twin(_uid("s"), {"$metadata": {"$model": "dtmi:sbx:Sensor;1"}})
    assert _err(missing) == (400, "ValidationFailed")
    twin_id = _uid("sensor")
    adt.client.upsert_digital_twin(
        twin_id, {"$metadata": {"$model": "dtmi:sbx:Sensor;1"}, "value": 1.0, "battery": {"$metadata": {}, "level": 80}}
    )
    comp = adt.client.get_component(twin_id, "battery")
    assert comp["level"] == 80 and "level" in comp["$metadata"]
    adt.client.update_component(twin_id, "battery", [{"op": "replace", "path": "/level", "value": 70}])
    assert adt.client.get_digital_twin(twin_id)["battery"]["level"] == 70
    with pytest.raises(HttpResponseError) as bad:
        adt.client.update_component(twin_id, "battery", [{"op": "replace", "path": "/level", "value": "low"}])
    assert _err(bad) == (400, "ValidationFailed")


def test_get_and_delete_of_a_missing_twin_give_404(adt: Adt) -> None:
    with pytest.raises(ResourceNotFoundError) as nf:
        adt.client.get_digital_twin("does-not-exist")
    assert nf.value.error.code == "DigitalTwinNotFound"  # type: ignore[union-attr]
    with pytest.raises(ResourceNotFoundError):
        adt.client.delete_digital_twin("does-not-exist")


# --- relationships -------------------------------------------------------------------------------


def test_relationships_validate_list_and_block_twin_delete(adt: Adt) -> None:
    floor, room, other = _uid("floor"), _uid("room"), _uid("floor")
    adt.client.upsert_digital_twin(floor, {"$metadata": {"$model": "dtmi:sbx:Floor;1"}})
    adt.client.upsert_digital_twin(other, {"$metadata": {"$model": "dtmi:sbx:Floor;1"}})
    _room(room, adt)

    rel = adt.client.upsert_relationship(
        floor, "r1", {"$relationshipName": "contains", "$targetId": room, "since": 2020}
    )
    assert rel["$sourceId"] == floor and rel["$targetId"] == room and rel["$etag"].startswith('W/"')
    adt.client.upsert_relationship(floor, "n1", {"$relationshipName": "near", "$targetId": other})

    for body, fragment in [
        ({"$relationshipName": "owns", "$targetId": room}, "not defined"),
        ({"$relationshipName": "contains", "$targetId": other}, "must target twins of the model"),
        ({"$relationshipName": "contains", "$targetId": "ghost"}, "does not exist"),
        ({"$relationshipName": "contains", "$targetId": room, "since": "long ago"}, "not a valid integer"),
    ]:
        with pytest.raises(HttpResponseError) as bad:
            adt.client.upsert_relationship(floor, _uid("r"), body)
        assert _err(bad) == (400, "ValidationFailed")
        assert fragment in _msg(bad)
    with pytest.raises(HttpResponseError) as exists:
        adt.client.upsert_relationship(
            floor, "r1", {"$relationshipName": "contains", "$targetId": room}, match_condition=MatchConditions.IfMissing
        )
    assert exists.value.status_code == 412

    assert adt.client.get_relationship(floor, "r1")["since"] == 2020
    assert {r["$relationshipId"] for r in adt.client.list_relationships(floor)} == {"r1", "n1"}
    assert [r["$relationshipId"] for r in adt.client.list_relationships(floor, relationship_id="contains")] == ["r1"]
    incoming = list(adt.client.list_incoming_relationships(room))
    assert [(i.relationship_id, i.source_id, i.relationship_name) for i in incoming] == [("r1", floor, "contains")]
    adt.client.update_relationship(floor, "r1", [{"op": "replace", "path": "/since", "value": 2021}])
    assert adt.client.get_relationship(floor, "r1")["since"] == 2021

    for twin in (floor, room):  # outgoing and incoming relationships both block deletion
        with pytest.raises(HttpResponseError) as blocked:
            adt.client.delete_digital_twin(twin)
        assert _err(blocked) == (400, "RelationshipsNotDeleted")
        assert "has active relationships" in _msg(blocked)

    # More than 10 writes on `floor` within a second by now: a client with the SDK's default retry
    # policy rides out the per-twin 429s by honouring Retry-After.
    patient = adt.client_for(adt.sb.endpoints["azure"]["deployer_principal_id"])
    patient.delete_relationship(floor, "r1")
    patient.delete_relationship(floor, "n1")
    with pytest.raises(ResourceNotFoundError):
        patient.get_relationship(floor, "r1")
    for twin in (floor, room, other):
        patient.delete_digital_twin(twin)


# --- query ---------------------------------------------------------------------------------------


def test_query_forms_and_continuation(adt: Adt) -> None:
    tag = uuid.uuid4().hex[:6]
    rooms = [f"q{tag}-room-{i}" for i in range(5)]
    for i, r in enumerate(rooms):
        _room(r, adt, label=tag, temperature=float(i))
    floor = f"q{tag}-floor"
    adt.client.upsert_digital_twin(floor, {"$metadata": {"$model": "dtmi:sbx:Floor;1"}, "label": tag})
    for i, r in enumerate(rooms[:3]):
        adt.client.upsert_relationship(floor, f"c{i}", {"$relationshipName": "contains", "$targetId": r})

    everything = {t["$dtId"] for t in adt.client.query_twins("SELECT * FROM digitaltwins")}
    assert set(rooms) | {floor} <= everything
    one = list(adt.client.query_twins(f"SELECT * FROM digitaltwins WHERE $dtId = '{rooms[2]}'"))
    assert [t["$dtId"] for t in one] == [rooms[2]]
    aliased = list(adt.client.query_twins(f"SELECT T FROM DIGITALTWINS T WHERE T.$dtId = '{rooms[1]}'"))
    assert aliased[0]["T"]["$dtId"] == rooms[1]
    # IS_OF_MODEL follows `extends`: rooms and floors are Assets.
    assets = {t["$dtId"] for t in adt.client.query_twins(f"SELECT * FROM digitaltwins WHERE IS_OF_MODEL('dtmi:sbx:Asset;1') AND label = '{tag}'")}
    assert assets == set(rooms) | {floor}
    exact = {t["$dtId"] for t in adt.client.query_twins(f"SELECT * FROM digitaltwins WHERE IS_OF_MODEL('dtmi:sbx:Asset;1', exact) AND label = '{tag}'")}
    assert exact == set()
    warm = {t["$dtId"] for t in adt.client.query_twins(f"SELECT * FROM digitaltwins T WHERE T.label = '{tag}' AND T.temperature >= 3")}
    assert warm == {rooms[3], rooms[4]}
    rels = list(adt.client.query_twins(f"SELECT * FROM relationships WHERE $sourceId = '{floor}'"))
    assert sorted(r["$targetId"] for r in rels) == sorted(rooms[:3])
    count = list(adt.client.query_twins(f"SELECT COUNT() FROM digitaltwins WHERE label = '{tag}'"))
    assert count == [{"COUNT": 6}]

    # Pages of 2: the SDK follows continuationToken until it is null.
    pages = adt.client.query_twins(
        f"SELECT * FROM digitaltwins WHERE label = '{tag}'", query_twins_options=QueryTwinsOptions(max_items_per_page=2)
    ).by_page()
    sizes = [len(list(p)) for p in pages]
    assert sizes == [2, 2, 2]

    with pytest.raises(HttpResponseError) as bad:
        list(adt.client.query_twins("foo"))
    assert _err(bad) == (400, "SqlQueryError")
    assert "missing SELECT at 'foo'" in _msg(bad)


def test_query_parser_rejects_what_it_does_not_serve() -> None:
    for text in [
        "SELECT * FROM digitaltwins T JOIN CT RELATED T.contains",
        "SELECT * FROM nowhere",
        "SELECT * FROM digitaltwins WHERE",
        "SELECT * FROM digitaltwins WHERE UNKNOWN_FN(x)",
        "",
    ]:
        with pytest.raises(QueryError):
            parse_query(text)
    q = parse_query("SELECT TOP(1) * FROM digitaltwins WHERE NOT (a IN [1, 2]) OR STARTSWITH($dtId, 'x')")
    rows = q.run([{"$dtId": "y", "a": 1}, {"$dtId": "x1", "a": 2}, {"$dtId": "z", "a": 3}], lambda d, m, e: False)
    assert [r["$dtId"] for r in rows] == ["x1"]


_OPS = {"=": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_atom = st.builds(lambda op, v: (f"n {op} {v}", f"n {_OPS[op]} {v}"), st.sampled_from(sorted(_OPS)), st.integers(-3, 3))


def _combine(children: st.SearchStrategy[tuple[str, str]]) -> st.SearchStrategy[tuple[str, str]]:
    return st.one_of(
        st.builds(lambda a, b: (f"{a[0]} AND {b[0]}", f"{a[1]} and {b[1]}"), children, children),
        st.builds(lambda a, b: (f"{a[0]} OR {b[0]}", f"{a[1]} or {b[1]}"), children, children),
        st.builds(lambda a: (f"NOT {a[0]}", f"not {a[1]}"), children),
        st.builds(lambda a: (f"({a[0]})", f"({a[1]})"), children),
    )


@settings(max_examples=150, deadline=None)
@given(st.recursive(_atom, _combine, max_leaves=6))
def test_query_conditions_follow_sql_precedence(cond: tuple[str, str]) -> None:
    """Unparenthesised AND/OR/NOT bind like SQL (NOT > AND > OR), which Python shares."""
    sql, py = cond
    twins = [{"$dtId": f"t{n}", "n": n} for n in range(-3, 4)]
    rows = parse_query(f"SELECT * FROM digitaltwins WHERE {sql}").run(twins, lambda d, m, e: False)
    expected = [t["$dtId"] for t in twins if eval(py, {}, {"n": t["n"]})]  # noqa: S307 - generated arithmetic only
    assert [r["$dtId"] for r in rows] == expected, sql


def test_undefined_properties_make_conditions_undefined_not_true() -> None:
    twins = [{"$dtId": "with", "n": 1}, {"$dtId": "without"}, {"$dtId": "text", "n": "1"}]

    def ids(where: str) -> list[str]:
        return [r["$dtId"] for r in parse_query(f"SELECT * FROM digitaltwins WHERE {where}").run(twins, lambda d, m, e: False)]

    assert ids("n = 1") == ["with"]
    # Comparing a missing property, or values of different types ("1" vs 2), is undefined, and
    # NOT undefined stays undefined: only "with" (n = 1, a number) passes.
    assert ids("NOT (n = 2)") == ["with"]
    assert ids("NOT (n > 0)") == []
    assert ids("n = 1 OR IS_DEFINED(n)") == ["with", "text"]
    assert ids("NOT IS_DEFINED(n)") == ["without"]


# --- telemetry and throttling --------------------------------------------------------------------


def test_publish_telemetry_204_and_unknown_twin_404(adt: Adt) -> None:
    twin_id = _uid("room")
    _room(twin_id, adt)
    adt.client.publish_telemetry(twin_id, {"reading": 1.5}, message_id="m-1")
    inst = next(i for i in adt.sb.ctx.hooks_for("Microsoft.DigitalTwins/digitalTwinsInstances").instances() if i.name == adt.name)  # type: ignore[union-attr]
    assert [(t["twin_id"], t["message_id"], t["data"]) for t in inst.telemetry if t["twin_id"] == twin_id] == [
        (twin_id, "m-1", {"reading": 1.5})
    ]
    with pytest.raises(ResourceNotFoundError):
        adt.client.publish_telemetry("ghost-twin", {"reading": 1})


def test_eleventh_write_to_one_twin_within_a_second_gets_429_with_retry_after(adt: Adt) -> None:
    twin_id = _uid("hot")
    _room(twin_id, adt, temperature=0.0)
    admitted = [time.monotonic()]
    throttled: pytest.ExceptionInfo[HttpResponseError] | None = None
    for i in range(40):  # bounded: a 429 must come long before this on any machine
        try:
            adt.client.update_digital_twin(twin_id, [{"op": "replace", "path": "/temperature", "value": float(i)}])
            admitted.append(time.monotonic())
        except HttpResponseError as exc:
            throttled = pytest.ExceptionInfo.from_exc_info((type(exc), exc, exc.__traceback__))
            break
    assert throttled is not None, "40 quick writes to one twin were never throttled"
    assert _err(throttled) == (429, "TooManyRequests")
    assert len(admitted) >= 10, "throttled before 10 writes"
    # The refusal means the last 10 admitted writes fell within one second (server side, hence
    # also between their client-side completion times).
    assert admitted[-1] - admitted[-10] < 1.0
    retry_after = int(throttled.value.response.headers["Retry-After"])  # type: ignore[union-attr]
    assert retry_after >= 1
    _room(_uid("other"), adt)  # other twins are not throttled

    # A client with the SDK's default retry policy waits Retry-After and succeeds.
    patient = adt.client_for(adt.sb.endpoints["azure"]["deployer_principal_id"])
    patient.update_digital_twin(twin_id, [{"op": "replace", "path": "/temperature", "value": 42.0}])
    assert adt.client.get_digital_twin(twin_id)["temperature"] == 42.0
