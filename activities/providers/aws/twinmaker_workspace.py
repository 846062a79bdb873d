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
    cfg,
    client,
    error_code,
    get_or_none,
    ignore_missing,
    lambda_arn,
    missing_tags,
    name_of,
    naming,
)
from activities.providers.aws._iam import allow, delete_role, ensure_role
from activities.registry import Provider, register
from shared.contracts import Function, Output
from shared.engine.errors import TransientError
from shared.engine.types import Action, EnsureResult, ReadResult, ResourceCall

READERS = (Function.HOT_READER, Function.HOT_READER_LAST_ENTRY, Function.DT_READER, Function.DT_READER_LAST_ENTRY)


def role_name(call: ResourceCall) -> str:
    return str(cfg(call, "role_name", name_of(call)))


def bucket(call: ResourceCall) -> str:
    return str(cfg(call, "bucket", naming(call).twinmaker_bucket()))


def role_statements(call: ResourceCall) -> list[dict[str, Any]]:
    b = f"arn:aws:s3:::{bucket(call)}"
    n = naming(call)
    return [
        allow(["s3:GetBucketLocation", "s3:ListBucket"], [b], "WorkspaceBucket"),
        allow(["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], [f"{b}/*"], "WorkspaceObjects"),
        allow(["lambda:InvokeFunction"], [lambda_arn(call, n.function(str(f))) for f in READERS], "Readers"),
    ]


def get_workspace(call: ResourceCall) -> dict[str, Any] | None:
    return get_or_none(lambda: client("iottwinmaker", call).get_workspace(workspaceId=name_of(call)))


@register("aws", "twinmaker-workspace")
class TwinMakerWorkspace(Provider):
    def ensure(self, call: ResourceCall) -> EnsureResult:
        tm = client("iottwinmaker", call)
        name = name_of(call)
        role_arn, role_changed = ensure_role(call, role_name(call), "iottwinmaker.amazonaws.com", role_statements(call))
        action: Action = "updated" if role_changed else "unchanged"
        s3_location = f"arn:aws:s3:::{bucket(call)}"
        ws = get_workspace(call)
        if ws is None:
            try:
                tm.create_workspace(workspaceId=name, description=f"Digital twin {call.twin}", s3Location=s3_location,
                                    role=role_arn, tags={"DigitalTwin": call.twin, "Layer": call.resource.layer})
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
        return EnsureResult(action=action, outputs=self._outputs(call))

    def _outputs(self, call: ResourceCall) -> dict[str, str]:
        if Output.TWINMAKER_WORKSPACE_NAME not in call.resource.produces:
            return {}
        return {Output.TWINMAKER_WORKSPACE_NAME: name_of(call)}

    def read(self, call: ResourceCall) -> ReadResult:
        ws = get_workspace(call)
        if ws is None:
            return ReadResult(exists=False)
        return ReadResult(exists=True, outputs=self._outputs(call),
                          details={"arn": ws.get("arn"), "role": ws.get("role"), "s3Location": ws.get("s3Location")})

    def delete(self, call: ResourceCall) -> EnsureResult:
        # Entities and component types are their own resources, deleted before this one.
        gone = ignore_missing(lambda: client("iottwinmaker", call).delete_workspace(workspaceId=name_of(call)))
        role_gone = delete_role(call, role_name(call))
        return EnsureResult(action="deleted" if gone or role_gone else "absent")
