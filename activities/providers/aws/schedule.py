"""L3 movers' timers (kind `schedule`): an EventBridge rule with the plan's cron expression, the
mover Lambda as its target, and the Lambda permission for `events.amazonaws.com` scoped to
this rule."""

from __future__ import annotations

from typing import Any

from activities.providers.aws._common import (
    AwsResource,
    client,
    get_or_none,
    ignore_missing,
    lambda_arn,
    tag_list,
    tags,
)
from activities.providers.aws.lambda_function import ensure_permission, get_configuration, remove_permission
from activities.registry import register
from shared.engine.errors import TransientError
from shared.engine.types import Action, EnsureResult, ResourceCall
from shared.resources.aws import ScheduleConfig

TARGET_ID = "mover"


def permission_sid(config: ScheduleConfig) -> str:
    return f"events-{config.name}"


@register("aws", "schedule")
class Schedule(AwsResource[ScheduleConfig]):
    model = ScheduleConfig
    label = "schedule"

    def describe(self, call: ResourceCall, config: ScheduleConfig) -> dict[str, Any] | None:
        return get_or_none(lambda: client("events", config.region).describe_rule(Name=config.name))

    def converge(self, call: ResourceCall, config: ScheduleConfig, action: Action) -> EnsureResult:
        events = client("events", config.region)
        name, function = config.name, config.function
        if get_configuration(config.region, function) is None:
            raise TransientError(f"schedule {name}: its target Lambda {function} does not exist yet")
        rule = self.found(call, config)
        if rule is None or rule.get("ScheduleExpression") != config.expression or rule.get("State") != "ENABLED":
            kwargs: dict[str, Any] = {"Name": name, "ScheduleExpression": config.expression, "State": "ENABLED",
                                      "Description": f"{call.resource.id} of twin {call.twin}"}
            if rule is None:
                kwargs["Tags"] = tag_list(call)
            rule_arn = events.put_rule(**kwargs)["RuleArn"]
            action = "created" if rule is None else "updated"
        else:
            rule_arn = rule["Arn"]
            have = {t["Key"]: t["Value"] for t in events.list_tags_for_resource(ResourceARN=rule_arn).get("Tags") or []}
            missing = {k: v for k, v in tags(call).items() if have.get(k) != v}
            if missing:
                events.tag_resource(ResourceARN=rule_arn, Tags=[{"Key": k, "Value": v} for k, v in missing.items()])
                action = "updated"
        target_arn = lambda_arn(config.region, function)
        targets = events.list_targets_by_rule(Rule=name).get("Targets") or []
        if [(t.get("Id"), t.get("Arn")) for t in targets] != [(TARGET_ID, target_arn)]:
            stale = [t["Id"] for t in targets if t.get("Id") != TARGET_ID]
            if stale:
                events.remove_targets(Rule=name, Ids=stale)
            events.put_targets(Rule=name, Targets=[{"Id": TARGET_ID, "Arn": target_arn}])
            action = "updated" if action == "unchanged" else action
        if ensure_permission(config.region, function, permission_sid(config), Action="lambda:InvokeFunction",
                             Principal="events.amazonaws.com", SourceArn=rule_arn):
            action = "updated" if action == "unchanged" else action
        return EnsureResult(action=action)

    def owner_tags(self, call: ResourceCall, config: ScheduleConfig, current: Any) -> dict[str, str]:
        listed = client("events", config.region).list_tags_for_resource(ResourceARN=current["Arn"])
        return {t["Key"]: t["Value"] for t in listed.get("Tags") or []}

    def details(self, call: ResourceCall, config: ScheduleConfig, current: Any) -> dict[str, Any]:
        targets = client("events", config.region).list_targets_by_rule(Rule=config.name).get("Targets") or []
        return {"arn": current.get("Arn"), "expression": current.get("ScheduleExpression"),
                "state": current.get("State"), "targets": [t.get("Arn") for t in targets]}

    def remove(self, call: ResourceCall, config: ScheduleConfig, current: Any) -> bool:
        events = client("events", config.region)
        targets = events.list_targets_by_rule(Rule=config.name).get("Targets") or []
        if targets:
            events.remove_targets(Rule=config.name, Ids=[t["Id"] for t in targets])
        ignore_missing(lambda: events.delete_rule(Name=config.name))
        return True

    def leftovers(self, call: ResourceCall, config: ScheduleConfig) -> bool:
        return remove_permission(config.region, config.function, permission_sid(config))
