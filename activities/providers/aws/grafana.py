"""L5 (kind `grafana`): an Amazon Managed Grafana workspace and its role (`grafana.amazonaws.com`,
read-only on the twin's TwinMaker workspace). Workspaces have generated ids, so the workspace is
found by name. Creation takes minutes: `Pending` + `poll` until `ACTIVE`; a workspace that ends
in `CREATION_FAILED` is deleted and created again once. Output: `GRAFANA_URL`.
"""

from __future__ import annotations

from typing import Any

from activities.providers.aws._common import (
    account_id,
    action_from,
    cfg,
    client,
    get_or_none,
    ignore_missing,
    merge_action,
    missing_tags,
    name_of,
    naming,
    pending,
    region,
    tags,
)
from activities.providers.aws._iam import allow, delete_role, ensure_role
from activities.registry import Provider, register
from shared.contracts import Output
from shared.engine.errors import PermanentError
from shared.engine.types import Action, EnsureResult, ReadResult, ResourceCall

BUSY = {"CREATING", "UPDATING", "DELETING", "UPGRADING", "VERSION_UPDATING", "LICENSE_REMOVAL_FAILED"}
FAILED = {"CREATION_FAILED", "UPDATE_FAILED", "DELETION_FAILED", "UPGRADE_FAILED", "VERSION_UPDATE_FAILED"}


def role_name(call: ResourceCall) -> str:
    return str(cfg(call, "role_name", name_of(call)))


def role_statements(call: ResourceCall) -> list[dict[str, Any]]:
    ws = f"arn:aws:iottwinmaker:{region(call)}:{account_id(call)}:workspace/{naming(call).twinmaker_workspace()}"
    return [allow(["iottwinmaker:Get*", "iottwinmaker:List*", "iottwinmaker:ExecuteQuery"], [ws, f"{ws}/*"],
                  "TwinRead")]


def find_workspace(call: ResourceCall) -> dict[str, Any] | None:
    """The workspace named like this resource (summary), or None."""
    gf = client("grafana", call)
    token: str | None = None
    while True:
        page = gf.list_workspaces(**({"nextToken": token} if token else {}))
        for ws in page.get("workspaces") or []:
            if ws.get("name") == name_of(call) and ws.get("status") != "DELETING":
                return dict(ws)
        token = page.get("nextToken")
        if not token:
            return None


def describe(call: ResourceCall, workspace_id: str) -> dict[str, Any] | None:
    found = get_or_none(lambda: client("grafana", call).describe_workspace(workspaceId=workspace_id))
    return None if found is None else dict(found["workspace"])


@register("aws", "grafana")
class ManagedGrafana(Provider):
    def ensure(self, call: ResourceCall) -> EnsureResult:
        return self._converge(call, "unchanged")

    def poll(self, call: ResourceCall) -> EnsureResult:
        token = call.pending.token if call.pending is not None else {}
        if token.get("stage") == "delete":
            return self._poll_delete(call)
        return self._converge(call, action_from(call))

    def _converge(self, call: ResourceCall, action: Action) -> EnsureResult:
        gf = client("grafana", call)
        name = name_of(call)
        role_arn, role_changed = ensure_role(call, role_name(call), "grafana.amazonaws.com", role_statements(call))
        if role_changed:
            action = merge_action(action, "updated")
        found = find_workspace(call)
        retried = bool(call.pending and call.pending.token.get("recreated"))
        if found is None:
            gf.create_workspace(
                workspaceName=name,
                accountAccessType=str(cfg(call, "account_access_type", "CURRENT_ACCOUNT")),
                authenticationProviders=list(cfg(call, "authentication_providers", ["AWS_SSO"])),
                permissionType=str(cfg(call, "permission_type", "CUSTOMER_MANAGED")),
                workspaceRoleArn=role_arn,
                workspaceDescription=f"Dashboards of digital twin {call.twin}",
                tags=tags(call),
            )
            return pending(merge_action(action, "created"), f"Grafana workspace {name} is being created",
                           recreated=retried)
        status = str(found.get("status"))
        if status in BUSY:
            return pending(action, f"Grafana workspace {name} is {status}", recreated=retried)
        if status in FAILED:
            if retried:
                raise PermanentError(f"Grafana workspace {name} is {status} again after a re-create")
            gf.delete_workspace(workspaceId=found["id"])
            return pending(action, f"Grafana workspace {name} was {status}: re-creating", recreated=True)
        ws = describe(call, str(found["id"])) or {}
        if ws.get("workspaceRoleArn") not in (None, role_arn):
            gf.update_workspace(workspaceId=found["id"], workspaceRoleArn=role_arn)
            return pending(merge_action(action, "updated"), f"Grafana workspace {name} is being updated")
        have = gf.list_tags_for_resource(resourceArn=self._arn(call, found)).get("tags") or {}
        add = missing_tags(have, call)
        if add:
            gf.tag_resource(resourceArn=self._arn(call, found), tags=add)
            action = merge_action(action, "updated")
        return EnsureResult(action=action, outputs=self._outputs(call, ws or found))

    def _arn(self, call: ResourceCall, ws: dict[str, Any]) -> str:
        return f"arn:aws:grafana:{region(call)}:{account_id(call)}:/workspaces/{ws['id']}"

    def _outputs(self, call: ResourceCall, ws: dict[str, Any]) -> dict[str, str]:
        if Output.GRAFANA_URL not in call.resource.produces:
            return {}
        return {Output.GRAFANA_URL: f"https://{ws['endpoint']}"}

    def read(self, call: ResourceCall) -> ReadResult:
        found = find_workspace(call)
        if found is None:
            return ReadResult(exists=False)
        ready = found.get("status") == "ACTIVE"
        return ReadResult(exists=True, outputs=self._outputs(call, found) if ready else {},
                          details={"id": found.get("id"), "status": found.get("status")})

    def delete(self, call: ResourceCall) -> EnsureResult:
        found = find_workspace(call)
        if found is not None:
            ignore_missing(lambda: client("grafana", call).delete_workspace(workspaceId=found["id"]))
            return pending("deleted", f"Grafana workspace {name_of(call)} is being deleted", stage="delete")
        return EnsureResult(action="deleted" if delete_role(call, role_name(call)) else "absent")

    def _poll_delete(self, call: ResourceCall) -> EnsureResult:
        if find_workspace(call) is not None:
            return pending("deleted", f"Grafana workspace {name_of(call)} is being deleted", stage="delete")
        delete_role(call, role_name(call))
        return EnsureResult(action="deleted")
