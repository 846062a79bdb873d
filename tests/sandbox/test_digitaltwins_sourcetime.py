"""The sandbox's Digital Twins keep ADT's per-property `sourceTime` (`$metadata.<prop>.sourceTime`):
settable by JSON Patch on `/$metadata/<prop>/sourceTime` (and `/<component>/$metadata/...`) or on
create, returned on GET, kept when only the value is written later; validated as ISO 8601. The
If-Match check and the 10 writes/s per twin limit apply to these patches as to any other.
Driven by the real `DigitalTwinsClient` over HTTPS."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError
from azure.digitaltwins.core import DigitalTwinsClient
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.models import RoleAssignmentCreateParameters
from azure.mgmt.digitaltwins import AzureDigitalTwinsManagementClient
from azure.mgmt.digitaltwins.models import DigitalTwinsDescription
from azure.mgmt.resource.resources import ResourceManagementClient

from sandbox.core.auth import SandboxCredential
from sandbox.server import Sandbox

DATA_OWNER = "bcd981a7-7f74-457b-83e1-cceb9e632ffe"
CTX = "dtmi:dtdl:context;2"
SENSOR = {
    "@id": "dtmi:st:Sensor;1", "@type": "Interface", "@context": CTX,
    "contents": [
        {"@type": "Property", "name": "lastTemperature", "schema": "double"},
        {"@type": "Property", "name": "lastHumidity", "schema": "double"},
        {"@type": "Component", "name": "battery", "schema": "dtmi:st:Battery;1"},
    ],
}
BATTERY = {"@id": "dtmi:st:Battery;1", "@type": "Interface", "@context": CTX,
           "contents": [{"@type": "Property", "name": "level", "schema": "integer"}]}
T1 = "2025-01-31T12:00:00.000Z"
T2 = "2025-01-31T12:00:01.500Z"


def _mgmt(sb: Sandbox, cls: Any) -> Any:
    e = sb.endpoints["azure"]
    return cls(SandboxCredential(e["deployer_principal_id"]), e["subscription_id"], base_url=e["arm"],
               connection_verify=e["ca_file"], polling_interval=0)


@pytest.fixture(scope="module")
def client(sandbox: Sandbox) -> Iterator[DigitalTwinsClient]:
    suffix = uuid.uuid4().hex[:6]
    rg, name = f"rg-st-{suffix}", f"adt-st-{suffix}"
    _mgmt(sandbox, ResourceManagementClient).resource_groups.create_or_update(rg, {"location": "westeurope"})
    inst = _mgmt(sandbox, AzureDigitalTwinsManagementClient).digital_twins.begin_create_or_update(
        rg, name, DigitalTwinsDescription(location="westeurope")).result()
    deployer = sandbox.endpoints["azure"]["deployer_principal_id"]
    sub = sandbox.endpoints["azure"]["subscription_id"]
    _mgmt(sandbox, AuthorizationManagementClient).role_assignments.create(inst.id, str(uuid.uuid4()), RoleAssignmentCreateParameters(
        role_definition_id=f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{DATA_OWNER}",
        principal_id=deployer, principal_type="ServicePrincipal"))
    c = DigitalTwinsClient(inst.host_name, SandboxCredential(deployer), connection_verify=sandbox.ca_file, retry_total=0)
    c.create_models([SENSOR, BATTERY])
    yield c
    _mgmt(sandbox, ResourceManagementClient).resource_groups.begin_delete(rg).result()


def _sensor(client: DigitalTwinsClient, **props: Any) -> str:
    twin_id = f"s-{uuid.uuid4().hex[:8]}"
    client.upsert_digital_twin(twin_id, {"$metadata": {"$model": "dtmi:st:Sensor;1"},
                                         "battery": {"$metadata": {}}, **props})
    return twin_id


def _err(exc: pytest.ExceptionInfo[HttpResponseError]) -> tuple[int, str]:
    assert exc.value.error is not None, exc.value
    return int(exc.value.status_code or 0), str(exc.value.error.code)


def test_value_and_source_time_in_one_patch_in_either_order(client: DigitalTwinsClient) -> None:
    twin_id = _sensor(client)
    client.update_digital_twin(twin_id, [  # sourceTime listed before the (new) value: still fine
        {"op": "add", "path": "/$metadata/lastTemperature/sourceTime", "value": T1},
        {"op": "add", "path": "/lastTemperature", "value": 20.5},
    ])
    twin = client.get_digital_twin(twin_id)
    assert twin["lastTemperature"] == 20.5
    meta = twin["$metadata"]["lastTemperature"]
    assert meta["sourceTime"] == T1 and meta["lastUpdateTime"]
    # `replace` works on a property that has no sourceTime yet, as the ADT SDK samples use it.
    client.update_digital_twin(twin_id, [{"op": "add", "path": "/lastHumidity", "value": 40.0},
                                         {"op": "replace", "path": "/$metadata/lastHumidity/sourceTime", "value": T2}])
    assert client.get_digital_twin(twin_id)["$metadata"]["lastHumidity"]["sourceTime"] == T2


def test_source_time_survives_a_value_only_write_and_can_be_moved_alone(client: DigitalTwinsClient) -> None:
    twin_id = _sensor(client, lastTemperature=1.0)
    client.update_digital_twin(twin_id, [{"op": "replace", "path": "/$metadata/lastTemperature/sourceTime", "value": T1}])
    first = client.get_digital_twin(twin_id)["$metadata"]["lastTemperature"]
    assert first["sourceTime"] == T1
    client.update_digital_twin(twin_id, [{"op": "replace", "path": "/lastTemperature", "value": 2.0}])
    second = client.get_digital_twin(twin_id)
    assert second["lastTemperature"] == 2.0
    assert second["$metadata"]["lastTemperature"]["sourceTime"] == T1, "ADT keeps sourceTime on value-only writes"
    assert second["$metadata"]["lastTemperature"]["lastUpdateTime"] != first["lastUpdateTime"]
    client.update_digital_twin(twin_id, [{"op": "remove", "path": "/$metadata/lastTemperature/sourceTime"}])
    assert "sourceTime" not in client.get_digital_twin(twin_id)["$metadata"]["lastTemperature"]


def test_source_time_on_create_and_in_a_component(client: DigitalTwinsClient) -> None:
    twin_id = f"s-{uuid.uuid4().hex[:8]}"
    created = client.upsert_digital_twin(twin_id, {
        "$metadata": {"$model": "dtmi:st:Sensor;1", "lastTemperature": {"sourceTime": T1}},
        "lastTemperature": 3.0, "battery": {"$metadata": {"level": {"sourceTime": T1}}, "level": 90}})
    assert created["$metadata"]["lastTemperature"]["sourceTime"] == T1
    assert created["battery"]["$metadata"]["level"]["sourceTime"] == T1
    client.update_digital_twin(twin_id, [{"op": "replace", "path": "/battery/level", "value": 80},
                                         {"op": "add", "path": "/battery/$metadata/level/sourceTime", "value": T2}])
    assert client.get_component(twin_id, "battery")["$metadata"]["level"]["sourceTime"] == T2
    client.update_component(twin_id, "battery", [{"op": "add", "path": "/$metadata/level/sourceTime", "value": T1}])
    assert client.get_digital_twin(twin_id)["battery"]["$metadata"]["level"]["sourceTime"] == T1


@pytest.mark.parametrize(("ops", "expected", "fragment"), [
    ([{"op": "add", "path": "/$metadata/lastTemperature/sourceTime", "value": "yesterday"}],
     (400, "ValidationFailed"), "ISO 8601"),
    ([{"op": "add", "path": "/$metadata/lastTemperature/sourceTime", "value": 1738324800}],
     (400, "ValidationFailed"), "ISO 8601"),
    ([{"op": "add", "path": "/$metadata/lastTemperature/sourceTime", "value": "2025-01-31"}],
     (400, "ValidationFailed"), "ISO 8601"),
    ([{"op": "add", "path": "/$metadata/lastHumidity/sourceTime", "value": T1}],
     (400, "JsonPatchInvalid"), "lastHumidity has no value"),
    ([{"op": "add", "path": "/$metadata/lastTemperature/lastUpdateTime", "value": T1}],
     (400, "JsonPatchInvalid"), "system properties"),
    ([{"op": "remove", "path": "/$metadata/lastTemperature/sourceTime"}],
     (400, "JsonPatchInvalid"), "sourceTime does not exist"),
])
def test_bad_source_time_patches_are_refused_and_change_nothing(
    client: DigitalTwinsClient, ops: list[dict[str, Any]], expected: tuple[int, str], fragment: str,
) -> None:
    twin_id = _sensor(client, lastTemperature=1.0)
    before = client.get_digital_twin(twin_id)
    with pytest.raises(HttpResponseError) as err:
        client.update_digital_twin(twin_id, [{"op": "replace", "path": "/lastTemperature", "value": 9.0}, *ops])
    assert _err(err) == expected
    assert err.value.error is not None and fragment in str(err.value.error.message)
    assert client.get_digital_twin(twin_id) == before


def test_if_match_guards_source_time_patches(client: DigitalTwinsClient) -> None:
    twin_id = _sensor(client, lastTemperature=1.0)
    read = client.get_digital_twin(twin_id)
    client.update_digital_twin(twin_id, [{"op": "add", "path": "/$metadata/lastTemperature/sourceTime", "value": T2}],
                               etag=read["$etag"], match_condition=MatchConditions.IfNotModified)
    with pytest.raises(HttpResponseError) as stale:  # the etag read before that write no longer matches
        client.update_digital_twin(
            twin_id, [{"op": "add", "path": "/lastTemperature", "value": 0.5},
                      {"op": "add", "path": "/$metadata/lastTemperature/sourceTime", "value": T1}],
            etag=read["$etag"], match_condition=MatchConditions.IfNotModified)
    assert _err(stale) == (412, "PreconditionFailed")
    twin = client.get_digital_twin(twin_id)
    assert twin["lastTemperature"] == 1.0 and twin["$metadata"]["lastTemperature"]["sourceTime"] == T2


def test_source_time_patches_count_against_ten_writes_per_second(client: DigitalTwinsClient) -> None:
    twin_id = _sensor(client, lastTemperature=0.0)
    admitted = [time.monotonic()]
    throttled: HttpResponseError | None = None
    for i in range(40):  # bounded: a 429 must come long before this
        try:
            client.update_digital_twin(twin_id, [
                {"op": "replace", "path": "/lastTemperature", "value": float(i)},
                {"op": "add", "path": "/$metadata/lastTemperature/sourceTime", "value": f"2025-01-31T12:00:{i:02d}.000Z"}])
            admitted.append(time.monotonic())
        except HttpResponseError as exc:
            throttled = exc
            break
    assert throttled is not None and throttled.status_code == 429
    assert len(admitted) >= 10 and admitted[-1] - admitted[-10] < 1.0
    assert throttled.response is not None and int(throttled.response.headers["Retry-After"]) >= 1  # type: ignore[attr-defined]
