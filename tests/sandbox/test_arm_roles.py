"""Role definitions and role assignments through AuthorizationManagementClient, as the data
planes see them (`ctx.role_assignments`)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.models import RoleAssignmentCreateParameters
from azure.mgmt.digitaltwins import AzureDigitalTwinsManagementClient
from azure.mgmt.digitaltwins.models import DigitalTwinsDescription
from azure.mgmt.resource.resources import ResourceManagementClient

from sandbox.core.auth import SandboxCredential
from sandbox.server import Sandbox

LOC = "westeurope"
ADT_DATA_OWNER = "bcd981a7-7f74-457b-83e1-cceb9e632ffe"

ROLES_WE_USE = {
    "Azure Digital Twins Data Owner": ADT_DATA_OWNER,
    "Azure Digital Twins Data Reader": "d57506d4-4c8d-48b1-8587-93c323f6a5a3",
    "Grafana Admin": "22926164-76b3-42b3-bc55-97df8dab3e41",
    "Grafana Editor": "a79a5197-3a5c-4973-a920-486035ffd60f",
    "IoT Hub Data Contributor": "4fc6c259-987e-4a07-842e-c321cc9d413f",
    "IoT Hub Registry Contributor": "4ea46cd5-c1b2-4a8e-910b-273211f9ce47",
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
}


def _adt(sb: Sandbox, mgmt_client: Any, unique_name: Any) -> tuple[str, str]:
    rg = unique_name("rg")
    mgmt_client(ResourceManagementClient).resource_groups.create_or_update(rg, {"location": LOC})
    inst = (
        mgmt_client(AzureDigitalTwinsManagementClient)
        .digital_twins.begin_create_or_update(rg, unique_name("adt"), DigitalTwinsDescription(location=LOC))
        .result()
    )
    return rg, inst.id


@pytest.mark.parametrize("role_name", sorted(ROLES_WE_USE))
def test_role_definition_lookup_by_name(sandbox: Sandbox, mgmt_client: Any, role_name: str) -> None:
    auth = mgmt_client(AuthorizationManagementClient)
    scope = f"/subscriptions/{sandbox.ctx.subscription_id}"
    found = list(auth.role_definitions.list(scope, filter=f"roleName eq '{role_name}'"))
    assert [d.name for d in found] == [ROLES_WE_USE[role_name]]
    assert found[0].role_name == role_name and found[0].role_type == "BuiltInRole"
    assert auth.role_definitions.get(scope, ROLES_WE_USE[role_name]).role_name == role_name


def test_role_definition_unknown_name_is_empty_and_unknown_id_404(sandbox: Sandbox, mgmt_client: Any) -> None:
    auth = mgmt_client(AuthorizationManagementClient)
    scope = f"/subscriptions/{sandbox.ctx.subscription_id}"
    assert list(auth.role_definitions.list(scope, filter="roleName eq 'No Such Role'")) == []
    with pytest.raises(ResourceNotFoundError):
        auth.role_definitions.get(scope, str(uuid.uuid4()))


def test_role_assignment_lifecycle_and_conflicts(
    sandbox: Sandbox, mgmt_client: Any, unique_name: Any
) -> None:
    auth = mgmt_client(AuthorizationManagementClient)
    _, adt_id = _adt(sandbox, mgmt_client, unique_name)
    principal = str(uuid.uuid4())
    role_id = f"/subscriptions/{sandbox.ctx.subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{ADT_DATA_OWNER}"
    params = RoleAssignmentCreateParameters(
        role_definition_id=role_id, principal_id=principal, principal_type="ServicePrincipal"
    )
    name = str(uuid.uuid4())
    ra = auth.role_assignments.create(adt_id, name, params)
    assert ra.name == name and ra.principal_id == principal and ra.scope == adt_id
    assert sandbox.ctx.role_assignments.allows(principal, adt_id, {ADT_DATA_OWNER})
    assert sandbox.ctx.role_assignments.allows(principal, adt_id + "/digitaltwins/x", {ADT_DATA_OWNER})
    assert not sandbox.ctx.role_assignments.allows(str(uuid.uuid4()), adt_id, {ADT_DATA_OWNER})
    # Same principal, role and scope under another name: 409 RoleAssignmentExists.
    with pytest.raises(ResourceExistsError) as err:
        auth.role_assignments.create(adt_id, str(uuid.uuid4()), params)
    assert err.value.status_code == 409 and err.value.error.code == "RoleAssignmentExists"
    # The same name again: also RoleAssignmentExists (callers treat it as success).
    with pytest.raises(ResourceExistsError):
        auth.role_assignments.create(adt_id, name, params)
    assert [
        a.name for a in auth.role_assignments.list_for_scope(adt_id, filter=f"principalId eq '{principal}'")
    ] == [name]
    assert auth.role_assignments.get(adt_id, name).role_definition_id.endswith(ADT_DATA_OWNER)
    auth.role_assignments.delete(adt_id, name)
    assert not sandbox.ctx.role_assignments.allows(principal, adt_id, {ADT_DATA_OWNER})
    with pytest.raises(ResourceNotFoundError):
        auth.role_assignments.get(adt_id, name)
    # After the delete, the same assignment can be made again.
    auth.role_assignments.create(adt_id, str(uuid.uuid4()), params)


def test_role_assignment_validation(sandbox: Sandbox, mgmt_client: Any, unique_name: Any) -> None:
    auth = mgmt_client(AuthorizationManagementClient)
    rg, adt_id = _adt(sandbox, mgmt_client, unique_name)
    sub = sandbox.ctx.subscription_id
    good_role = f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{ADT_DATA_OWNER}"
    with pytest.raises(HttpResponseError) as err:
        auth.role_assignments.create(
            adt_id,
            "not-a-guid",
            RoleAssignmentCreateParameters(role_definition_id=good_role, principal_id=str(uuid.uuid4())),
        )
    assert err.value.status_code == 400 and err.value.error.code == "InvalidRoleAssignmentId"
    with pytest.raises(HttpResponseError) as err:
        auth.role_assignments.create(
            adt_id,
            str(uuid.uuid4()),
            RoleAssignmentCreateParameters(
                role_definition_id=f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{uuid.uuid4()}",
                principal_id=str(uuid.uuid4()),
            ),
        )
    assert err.value.error.code == "RoleDefinitionDoesNotExist"
    missing_scope = adt_id + "-missing"
    with pytest.raises(ResourceNotFoundError):
        auth.role_assignments.create(
            missing_scope,
            str(uuid.uuid4()),
            RoleAssignmentCreateParameters(role_definition_id=good_role, principal_id=str(uuid.uuid4())),
        )


def test_deleting_the_scope_revokes_its_assignments(
    sandbox: Sandbox, mgmt_client: Any, unique_name: Any
) -> None:
    auth = mgmt_client(AuthorizationManagementClient)
    rg, adt_id = _adt(sandbox, mgmt_client, unique_name)
    principal = str(uuid.uuid4())
    role_id = f"/subscriptions/{sandbox.ctx.subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{ADT_DATA_OWNER}"
    auth.role_assignments.create(
        adt_id,
        str(uuid.uuid4()),
        RoleAssignmentCreateParameters(role_definition_id=role_id, principal_id=principal),
    )
    assert sandbox.ctx.role_assignments.allows(principal, adt_id, {ADT_DATA_OWNER})
    mgmt_client(ResourceManagementClient).resource_groups.begin_delete(rg).result()
    assert not sandbox.ctx.role_assignments.allows(principal, adt_id, {ADT_DATA_OWNER})


def test_rbac_propagation_delay_follows_the_profile(sandbox_factory: Any) -> None:
    sb: Sandbox = sandbox_factory(profile="flaky", seed=3)
    # Only the RBAC delay matters here: switch off throttling by using a profile with the same delay.
    from dataclasses import replace

    sb.ctx.faults.profile = replace(
        sb.ctx.faults.profile, throttle_rate=0.0, unavailable_rate=0.0, lro_fail_once_rate=0.0
    )
    cred = SandboxCredential(sb.endpoints["azure"]["deployer_principal_id"])
    kw = {"base_url": sb.arm_url, "connection_verify": sb.ca_file, "polling_interval": 0}
    rm = ResourceManagementClient(cred, sb.ctx.subscription_id, **kw)
    rm.resource_groups.create_or_update("rg", {"location": LOC})
    scope = f"/subscriptions/{sb.ctx.subscription_id}/resourceGroups/rg"
    principal = str(uuid.uuid4())
    auth = AuthorizationManagementClient(cred, sb.ctx.subscription_id, **kw)
    before = time.time()
    auth.role_assignments.create(
        scope,
        str(uuid.uuid4()),
        RoleAssignmentCreateParameters(
            role_definition_id=f"/subscriptions/{sb.ctx.subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{ADT_DATA_OWNER}",
            principal_id=principal,
        ),
    )
    delay = sb.ctx.faults.profile.rbac_propagation_seconds
    assert delay > 0
    assert not sb.ctx.role_assignments.allows(principal, scope, {ADT_DATA_OWNER}, now=before)
    assert sb.ctx.role_assignments.allows(
        principal, scope + "/providers/x/y/z", {ADT_DATA_OWNER}, now=before + delay + 0.5
    )
