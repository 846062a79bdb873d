"""RBAC: built-in roles for a principal on a resource scope (IoT Hub data roles, "Azure Digital
Twins Data Owner"). The identity's principal comes from the wired `PRINCIPAL_ID` setting; on a
Digital Twins scope the deployer's own principal gets the data roles too (it uploads the models
and twins). Assignment names are deterministic GUIDs, so a re-run finds its own assignments; a 409
`RoleAssignmentExists` (same role, principal and scope under another name) counts as present.

Ownership: an assignment has no tags; its scope is a resource of the twin's resource group, whose
tags name the owner (another twin's group: refused). A delete removes only the assignments under
this resource's own deterministic names, never one someone else made for the same role."""

from __future__ import annotations

from typing import Any

from azure.core.exceptions import HttpResponseError
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.models import RoleAssignmentCreateParameters

from activities.providers.azure._common import (
    deployer_principal_id,
    deterministic_guid,
    get_or_none,
    may_delete_in_group,
    mgmt,
    ref_id,
    require_own_group,
    subscription_id,
)
from activities.providers.typed import TypedProvider, creating, to_create
from activities.registry import register
from shared.contracts import Setting
from shared.engine.errors import PermanentError, TransientError
from shared.engine.types import EnsureResult, ReadResult, ResourceCall
from shared.resources.azure import RoleAssignmentConfig

DEPLOYER_TOO = {"digital-twins"}


def role_definition_id(role: str) -> str:
    return f"/subscriptions/{subscription_id()}/providers/Microsoft.Authorization/roleDefinitions/{role}"


def _wanted(call: ResourceCall, config: RoleAssignmentConfig) -> list[tuple[str, str, str]]:
    """(scope, role guid, principal) for every assignment the resource stands for."""
    principal = call.settings.get(Setting.PRINCIPAL_ID)
    if not principal:
        raise PermanentError(
            f"{call.resource.id}: the principal to assign (setting {Setting.PRINCIPAL_ID}) is not known yet; "
            "the identity must be deployed first"
        )
    scope = ref_id(config, config.scope)
    principals = [str(principal)]
    if config.scope.kind in DEPLOYER_TOO:
        deployer = deployer_principal_id()
        if deployer not in principals:
            principals.append(deployer)
    return [(scope, role, p) for role in config.role_definition_ids for p in principals]


def _name(scope: str, role: str, principal: str) -> str:
    return deterministic_guid(scope, role, principal)


def _matches(assignment: Any, role: str, principal: str) -> bool:
    return (str(assignment.role_definition_id).lower().endswith("/" + role.lower())
            and str(assignment.principal_id).lower() == principal.lower())


def _find(scope: str, role: str, principal: str) -> Any:
    client = mgmt(AuthorizationManagementClient).role_assignments
    own = get_or_none(lambda: client.get(scope, _name(scope, role, principal)))
    if own is not None and _matches(own, role, principal):
        return own
    for assignment in client.list_for_scope(scope, filter=f"principalId eq '{principal}'"):
        if _matches(assignment, role, principal) and str(assignment.scope).lower() == scope.lower():
            return assignment
    return None


def assign(scope: str, role: str, principal: str, principal_type: str | None = None) -> bool:
    """Make sure `principal` holds `role` on `scope`; True if an assignment was created."""
    if _find(scope, role, principal) is not None:
        return False
    client = mgmt(AuthorizationManagementClient).role_assignments
    # The runtime model (API 2022-04-01) is flat; the package's type hints describe a nested one.
    params = RoleAssignmentCreateParameters(  # type: ignore[call-arg]
        role_definition_id=role_definition_id(role), principal_id=principal, principal_type=principal_type,
    )
    try:
        client.create(scope, _name(scope, role, principal), params)
        return True
    except HttpResponseError as exc:
        code = getattr(exc.error, "code", "") if exc.error is not None else ""
        if exc.status_code == 409 and "RoleAssignmentExists" in (code or str(exc)):
            return False  # the same role for the same principal, under another name: present
        if exc.status_code == 400 and "PrincipalNotFound" in (code or str(exc)):
            raise TransientError(f"principal {principal} is not visible to Azure RBAC yet (a new identity)") from exc
        raise


@register("azure", "role-assignment")
class RoleAssignment(TypedProvider[RoleAssignmentConfig]):
    model = RoleAssignmentConfig

    def ensure(self, call: ResourceCall) -> EnsureResult:
        config = self.config(call)
        require_own_group(call, config)
        wanted = _wanted(call, config)
        if not creating(call) and all(_find(*w) is None for w in wanted):
            return to_create(f"role assignments of {call.resource.id} are being created")
        created = self._assign(config, wanted)
        if creating(call):
            return EnsureResult("created")
        return EnsureResult("unchanged" if not created else ("created" if created == len(wanted) else "updated"))

    def poll(self, call: ResourceCall) -> EnsureResult:
        return self.ensure(call)  # only the creation `ensure` decided on is polled

    @staticmethod
    def _assign(config: RoleAssignmentConfig, wanted: list[tuple[str, str, str]]) -> int:
        created = 0
        for scope, role, principal in wanted:
            # The identity is a service principal; the deployer may be a user, so its type is left to RBAC.
            kind = config.principal_type if principal == wanted[0][2] else None
            created += assign(scope, role, principal, kind)
        return created

    def apply_settings(self, call: ResourceCall) -> bool:
        """A new principal (the identity was re-created) gets its assignments; True if any was made."""
        config = self.config(call)
        require_own_group(call, config)
        return self._assign(config, _wanted(call, config)) > 0

    def read(self, call: ResourceCall) -> ReadResult:
        found = {f"{role}:{principal}": _find(scope, role, principal) is not None
                 for scope, role, principal in _wanted(call, self.config(call))}
        return ReadResult(all(found.values()), details={"assignments": found})

    def delete(self, call: ResourceCall) -> EnsureResult:
        config = self.config(call)
        if not call.settings.get(Setting.PRINCIPAL_ID):
            return EnsureResult("absent")
        if not may_delete_in_group(call, config):
            return EnsureResult("absent")
        client = mgmt(AuthorizationManagementClient).role_assignments
        deleted = 0
        for scope, role, principal in _wanted(call, config):
            own = get_or_none(lambda s=scope, r=role, p=principal: client.get(s, _name(s, r, p)))  # type: ignore[misc]
            if own is None:
                continue
            try:
                client.delete(scope, str(own.name))
                deleted += 1
            except HttpResponseError as exc:
                if exc.status_code != 404:
                    raise
        return EnsureResult("deleted" if deleted else "absent")
