"""Setup (kind `resource-group`): an AWS Resource Group whose tag query selects everything tagged
`DigitalTwin=<twin>` (every taggable resource of the twin carries that tag and `Layer`)."""

from __future__ import annotations

import json
from typing import Any

from activities.providers.aws._common import (
    TAG_TWIN,
    canonical,
    client,
    get_or_none,
    ignore_missing,
    name_of,
    tags,
)
from activities.registry import Provider, register
from shared.engine.types import Action, EnsureResult, ReadResult, ResourceCall


def resource_query(call: ResourceCall) -> dict[str, str]:
    query = {"ResourceTypeFilters": ["AWS::AllSupported"], "TagFilters": [{"Key": TAG_TWIN, "Values": [call.twin]}]}
    return {"Type": "TAG_FILTERS_1_0", "Query": json.dumps(query)}


def _group_tags(call: ResourceCall) -> dict[str, str]:
    wanted = dict(tags(call))
    wanted.update({str(k): str(v) for k, v in (call.resource.config.get("tags") or {}).items()})
    return wanted


@register("aws", "resource-group")
class ResourceGroup(Provider):
    def _get(self, call: ResourceCall) -> dict[str, Any] | None:
        found = get_or_none(lambda: client("resource-groups", call).get_group(GroupName=name_of(call)))
        return None if found is None else found["Group"]

    def ensure(self, call: ResourceCall) -> EnsureResult:
        rg = client("resource-groups", call)
        name = name_of(call)
        wanted = resource_query(call)
        group = self._get(call)
        if group is None:
            rg.create_group(Name=name, Description=f"Resources of digital twin {call.twin}", ResourceQuery=wanted,
                            Tags=_group_tags(call))
            return EnsureResult(action="created")
        action: Action = "unchanged"
        current = rg.get_group_query(GroupName=name)["GroupQuery"]["ResourceQuery"]
        if current.get("Type") != wanted["Type"] or canonical(current.get("Query") or "{}") != canonical(wanted["Query"]):
            rg.update_group_query(GroupName=name, ResourceQuery=wanted)
            action = "updated"
        have = rg.get_tags(Arn=group["GroupArn"]).get("Tags") or {}
        missing = {k: v for k, v in _group_tags(call).items() if have.get(k) != v}
        if missing:
            rg.tag(Arn=group["GroupArn"], Tags=missing)
            action = "updated"
        return EnsureResult(action=action)

    def read(self, call: ResourceCall) -> ReadResult:
        group = self._get(call)
        if group is None:
            return ReadResult(exists=False)
        return ReadResult(exists=True, details={"arn": group.get("GroupArn"), "name": group.get("Name")})

    def delete(self, call: ResourceCall) -> EnsureResult:
        # Deleting the group deletes only the group, never the resources it lists.
        gone = ignore_missing(lambda: client("resource-groups", call).delete_group(GroupName=name_of(call)))
        return EnsureResult(action="deleted" if gone else "absent")
