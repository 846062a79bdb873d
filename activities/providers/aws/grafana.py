"""L5 (kind `grafana`): an Amazon Managed Grafana workspace and its role (`grafana.amazonaws.com`,
read-only on the twin's TwinMaker workspace). Workspaces have generated ids, so the workspace is
found by name. Creation takes minutes: `Pending` + `poll` until `ACTIVE`; a workspace that ends
in `CREATION_FAILED` is deleted and created again once. Output: `GRAFANA_URL`.
"""

from __future__ import annotations

from typing import Any

from activities.providers.aws._common import (
    AwsResource,
    account_id,
    client,
    get_or_none,
    ignore_missing,
    missing_tags,
    naming,
    pending,
    tags,
)
from activities.providers.aws._iam import allow, delete_role, ensure_role, role_left
from activities.providers.lifecycle import merge_action
from activities.registry import register
from shared.contracts import Output
from shared.engine.errors import PermanentError
from shared.engine.types import Action, EnsureResult, ResourceCall
from shared.resources.aws import AwsGrafanaConfig

BUSY = {"CREATING", "UPDATING", "DELETING", "UPGRADING", "VERSION_UPDATING", "LICENSE_REMOVAL_FAILED"}
FAILED = {"CREATION_FAILED", "UPDATE_FAILED", "DELETION_FAILED", "UPGRADE_FAILED", "VERSION_UPDATE_FAILED"}


def role_statements(call: ResourceCall, config: AwsGrafanaConfig) -> list[dict[str, Any]]:
    ws = f"arn:aws:iottwinmaker:{config.region}:{account_id()}:workspace/{naming(call).twinmaker_workspace()}"
    return [allow(["iottwinmaker:Get*", "iottwinmaker:List*", "iottwinmaker:ExecuteQuery"], [ws, f"{ws}/*"],
                  "TwinRead")]


def find_workspace(region: str, name: str) -> dict[str, Any] | None:
    """The workspace called `name` (summary), or None."""
    gf = client("grafana", region)
    token: str | None = None
    while True:
        page = gf.list_workspaces(**({"nextToken": token} if token else {}))
        for ws in page.get("workspaces") or []:
            if ws.get("name") == name and ws.get("status") != "DELETING":
                return dict(ws)
        token = page.get("nextToken")
        if not token:
            return None


def workspace_tags(region: str, workspace: dict[str, Any]) -> dict[str, str]:
    """The tags of a Grafana workspace (summary or description): its owner's."""
    arn = f"arn:aws:grafana:{region}:{account_id()}:/workspaces/{workspace['id']}"
    return dict(client("grafana", region).list_tags_for_resource(resourceArn=arn).get("tags") or {})


def describe(region: str, workspace_id: str) -> dict[str, Any] | None:
    found = get_or_none(lambda: client("grafana", region).describe_workspace(workspaceId=workspace_id))
    return None if found is None else dict(found["workspace"])


@register("aws", "grafana")
class ManagedGrafana(AwsResource[AwsGrafanaConfig]):
    model = AwsGrafanaConfig
    label = "Grafana workspace"

    def describe(self, call: ResourceCall, config: AwsGrafanaConfig) -> dict[str, Any] | None:
        return find_workspace(config.region, config.name)

    def ready(self, current: Any) -> bool:
        return bool(current.get("status") == "ACTIVE")

    def converge(self, call: ResourceCall, config: AwsGrafanaConfig, action: Action) -> EnsureResult:
        gf = client("grafana", config.region)
        name = config.name
        role_arn, role_changed = ensure_role(call, config.role_name, "grafana.amazonaws.com",
                                             role_statements(call, config))
        if role_changed:
            action = merge_action(action, "updated")
        found = self.found(call, config)
        retried = bool(call.pending and call.pending.token.get("recreated"))
        if found is None:
            gf.create_workspace(
                workspaceName=name,
                accountAccessType=config.account_access_type,
                authenticationProviders=list(config.authentication_providers),
                permissionType=config.permission_type,
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
        ws = describe(config.region, str(found["id"])) or {}
        if ws.get("workspaceRoleArn") not in (None, role_arn):
            gf.update_workspace(workspaceId=found["id"], workspaceRoleArn=role_arn)
            return pending(merge_action(action, "updated"), f"Grafana workspace {name} is being updated")
        arn = f"arn:aws:grafana:{config.region}:{account_id()}:/workspaces/{found['id']}"
        have = gf.list_tags_for_resource(resourceArn=arn).get("tags") or {}
        add = missing_tags(have, call)
        if add:
            gf.tag_resource(resourceArn=arn, tags=add)
            action = merge_action(action, "updated")
        return EnsureResult(action=action, outputs=self.outputs(call, config, ws or found))

    def owner_tags(self, call: ResourceCall, config: AwsGrafanaConfig, current: Any) -> dict[str, str]:
        return workspace_tags(config.region, current)

    def outputs(self, call: ResourceCall, config: AwsGrafanaConfig, current: Any) -> dict[str, str]:
        if Output.GRAFANA_URL not in call.resource.produces:
            return {}
        return {Output.GRAFANA_URL: f"https://{current['endpoint']}"}

    def details(self, call: ResourceCall, config: AwsGrafanaConfig, current: Any) -> dict[str, Any]:
        return {"id": current.get("id"), "status": current.get("status")}

    def remove(self, call: ResourceCall, config: AwsGrafanaConfig, current: Any) -> bool:
        ignore_missing(lambda: client("grafana", config.region).delete_workspace(workspaceId=current["id"]))
        return False  # deleting a workspace takes minutes: polled

    def leftovers(self, call: ResourceCall, config: AwsGrafanaConfig) -> bool:
        return delete_role(call, config.role_name)

    def remaining(self, call: ResourceCall, config: AwsGrafanaConfig) -> list[str]:
        return [*super().remaining(call, config), *role_left(call, config.role_name)]
