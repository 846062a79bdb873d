"""Setup (kind `resource-group`): an AWS Resource Group whose tag query selects everything tagged
`DigitalTwin=<twin>` (every taggable resource of the twin carries that tag and `Layer`)."""

from __future__ import annotations

import json
from typing import Any

from activities.providers.aws._common import (
    TAG_TWIN,
    AwsResource,
    canonical,
    client,
    get_or_none,
    ignore_missing,
    tags,
)
from activities.registry import register
from shared.engine.types import Action, EnsureResult, ResourceCall
from shared.resources.aws import AwsResourceGroupConfig


def resource_query(call: ResourceCall) -> dict[str, str]:
    query = {"ResourceTypeFilters": ["AWS::AllSupported"], "TagFilters": [{"Key": TAG_TWIN, "Values": [call.twin]}]}
    return {"Type": "TAG_FILTERS_1_0", "Query": json.dumps(query)}


def _group_tags(call: ResourceCall, config: AwsResourceGroupConfig) -> dict[str, str]:
    return {**tags(call), **config.tags}


@register("aws", "resource-group")
class ResourceGroup(AwsResource[AwsResourceGroupConfig]):
    model = AwsResourceGroupConfig
    label = "resource group"

    def describe(self, call: ResourceCall, config: AwsResourceGroupConfig) -> dict[str, Any] | None:
        found = get_or_none(lambda: client("resource-groups", config.region).get_group(GroupName=config.name))
        return None if found is None else found["Group"]

    def owner_tags(self, call: ResourceCall, config: AwsResourceGroupConfig, current: Any) -> dict[str, str]:
        return dict(client("resource-groups", config.region).get_tags(Arn=current["GroupArn"]).get("Tags") or {})

    def converge(self, call: ResourceCall, config: AwsResourceGroupConfig, action: Action) -> EnsureResult:
        rg = client("resource-groups", config.region)
        name = config.name
        wanted = resource_query(call)
        group = self.found(call, config)
        if group is None:
            rg.create_group(Name=name, Description=f"Resources of digital twin {call.twin}", ResourceQuery=wanted,
                            Tags=_group_tags(call, config))
            return EnsureResult(action="created")
        current = rg.get_group_query(GroupName=name)["GroupQuery"]["ResourceQuery"]
        if current.get("Type") != wanted["Type"] or canonical(current.get("Query") or "{}") != canonical(wanted["Query"]):
            rg.update_group_query(GroupName=name, ResourceQuery=wanted)
            action = "updated"
        have = rg.get_tags(Arn=group["GroupArn"]).get("Tags") or {}
        missing = {k: v for k, v in _group_tags(call, config).items() if have.get(k) != v}
        if missing:
            rg.tag(Arn=group["GroupArn"], Tags=missing)
            action = "updated"
        return EnsureResult(action=action)

    def details(self, call: ResourceCall, config: AwsResourceGroupConfig, current: Any) -> dict[str, Any]:
        return {"arn": current.get("GroupArn"), "name": current.get("Name")}

    def remove(self, call: ResourceCall, config: AwsResourceGroupConfig, current: Any) -> bool:
        # Deleting the group deletes only the group, never the resources it lists.
        ignore_missing(lambda: client("resource-groups", config.region).delete_group(GroupName=config.name))
        return True
