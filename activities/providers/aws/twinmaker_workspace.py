"""L4 (kind `twinmaker-workspace`): the IoT TwinMaker workspace, on its S3 bucket (a separate
`s3-bucket` resource) and with its own role for `iottwinmaker.amazonaws.com`, allowed exactly
what TwinMaker does for this twin: use the workspace bucket and invoke the twin's reader
Lambdas (the hot readers, or the data-connector readers when hot storage is on another cloud).
Output: `TWINMAKER_WORKSPACE_NAME`.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from activities.providers.aws._common import (
    AwsResource,
    client,
    error_code,
    get_or_none,
    ignore_missing,
    lambda_arn,
    missing_tags,
    naming,
    tags,
)
from activities.providers.aws._iam import allow, delete_role, ensure_role, role_left
from activities.registry import register
from shared.contracts import Function, Output
from shared.engine.errors import TransientError
from shared.engine.types import Action, EnsureResult, ResourceCall
from shared.resources.aws import TwinMakerWorkspaceConfig

READERS = (Function.HOT_READER, Function.HOT_READER_LAST_ENTRY, Function.DT_READER, Function.DT_READER_LAST_ENTRY)


def role_statements(call: ResourceCall, config: TwinMakerWorkspaceConfig) -> list[dict[str, Any]]:
    b = f"arn:aws:s3:::{config.bucket}"
    n = naming(call)
    return [
        allow(["s3:GetBucketLocation", "s3:ListBucket"], [b], "WorkspaceBucket"),
        allow(["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], [f"{b}/*"], "WorkspaceObjects"),
        allow(["lambda:InvokeFunction"], [lambda_arn(config.region, n.function(str(f))) for f in READERS], "Readers"),
    ]


def workspace_tags(region: str, workspace: dict[str, Any]) -> dict[str, str]:
    """The tags of a TwinMaker workspace (its owner: also the owner of what it holds)."""
    return dict(client("iottwinmaker", region).list_tags_for_resource(resourceARN=workspace["arn"]).get("tags") or {})


@register("aws", "twinmaker-workspace")
class TwinMakerWorkspace(AwsResource[TwinMakerWorkspaceConfig]):
    model = TwinMakerWorkspaceConfig
    label = "TwinMaker workspace"

    def describe(self, call: ResourceCall, config: TwinMakerWorkspaceConfig) -> dict[str, Any] | None:
        return get_or_none(lambda: client("iottwinmaker", config.region).get_workspace(workspaceId=config.name))

    def converge(self, call: ResourceCall, config: TwinMakerWorkspaceConfig, action: Action) -> EnsureResult:
        tm = client("iottwinmaker", config.region)
        name = config.name
        role_arn, role_changed = ensure_role(call, config.role_name, "iottwinmaker.amazonaws.com",
                                             role_statements(call, config))
        action = "updated" if role_changed else action
        s3_location = f"arn:aws:s3:::{config.bucket}"
        ws = self.found(call, config)
        if ws is None:
            try:
                tm.create_workspace(workspaceId=name, description=f"Digital twin {call.twin}", s3Location=s3_location,
                                    role=role_arn, tags=tags(call))
            except ClientError as exc:
                if error_code(exc) == "ValidationException" and "role" in str(exc).lower():
                    raise TransientError(f"TwinMaker workspace {name}: role not assumable yet (IAM propagation)") from None
                raise
            action = "created"
        else:
            if ws.get("role") != role_arn or ws.get("s3Location") != s3_location:
                tm.update_workspace(workspaceId=name, role=role_arn, s3Location=s3_location)
                action = "updated"
            have = tm.list_tags_for_resource(resourceARN=ws["arn"]).get("tags") or {}
            add = missing_tags(have, call)
            if add:
                tm.tag_resource(resourceARN=ws["arn"], tags=add)
                action = "updated"
        return EnsureResult(action=action, outputs=self.outputs(call, config, ws))

    def owner_tags(self, call: ResourceCall, config: TwinMakerWorkspaceConfig, current: Any) -> dict[str, str]:
        return workspace_tags(config.region, current)

    def outputs(self, call: ResourceCall, config: TwinMakerWorkspaceConfig, current: Any) -> dict[str, str]:
        if Output.TWINMAKER_WORKSPACE_NAME not in call.resource.produces:
            return {}
        return {Output.TWINMAKER_WORKSPACE_NAME: config.name}

    def details(self, call: ResourceCall, config: TwinMakerWorkspaceConfig, current: Any) -> dict[str, Any]:
        return {"arn": current.get("arn"), "role": current.get("role"), "s3Location": current.get("s3Location")}

    def remove(self, call: ResourceCall, config: TwinMakerWorkspaceConfig, current: Any) -> bool:
        # Entities and component types are their own resources, deleted before this one.
        ignore_missing(lambda: client("iottwinmaker", config.region).delete_workspace(workspaceId=config.name))
        return True

    def leftovers(self, call: ResourceCall, config: TwinMakerWorkspaceConfig) -> bool:
        return delete_role(call, config.role_name)

    def remaining_parts(self, call: ResourceCall, config: TwinMakerWorkspaceConfig) -> list[str]:
        return role_left(call, config.role_name)
