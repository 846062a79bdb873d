"""L3 movers' timers (kind `schedule`): an EventBridge rule with the plan's cron expression, the
mover Lambda as its target, and the Lambda permission for `events.amazonaws.com` scoped to
this rule."""

from __future__ import annotations

from typing import Any

from activities.providers.aws._common import (
    cfg,
    client,
    get_or_none,
    ignore_missing,
    lambda_arn,
    name_of,
    tag_list,
    tags,
)
from activities.providers.aws.lambda_function import ensure_permission, get_configuration, remove_permission
from activities.registry import Provider, register
from shared.engine.errors import TransientError
from shared.engine.types import Action, EnsureResult, ReadResult, ResourceCall

TARGET_ID = "mover"


def permission_sid(call: ResourceCall) -> str:
    return f"events-{name_of(call)}"


def describe(call: ResourceCall) -> dict[str, Any] | None:
    return get_or_none(lambda: client("events", call).describe_rule(Name=name_of(call)))


@register("aws", "schedule")
class Schedule(Provider):
    def ensure(self, call: ResourceCall) -> EnsureResult:
        events = client("events", call)
        name = name_of(call)
        function = str(cfg(call, "function"))
        if get_configuration(call, function) is None:
            raise TransientError(f"schedule {name}: its target Lambda {function} does not exist yet")
        expression = str(cfg(call, "expression"))
        action: Action = "unchanged"
        rule = describe(call)
        if rule is None or rule.get("ScheduleExpression") != expression or rule.get("State") != "ENABLED":
            kwargs: dict[str, Any] = {"Name": name, "ScheduleExpression": expression, "State": "ENABLED",
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
        target_arn = lambda_arn(call, function)
        targets = events.list_targets_by_rule(Rule=name).get("Targets") or []
        if [(t.get("Id"), t.get("Arn")) for t in targets] != [(TARGET_ID, target_arn)]:
            stale = [t["Id"] for t in targets if t.get("Id") != TARGET_ID]
            if stale:
                events.remove_targets(Rule=name, Ids=stale)
            events.put_targets(Rule=name, Targets=[{"Id": TARGET_ID, "Arn": target_arn}])
            action = "updated" if action == "unchanged" else action
        if ensure_permission(call, function, permission_sid(call), Action="lambda:InvokeFunction",
                             Principal="events.amazonaws.com", SourceArn=rule_arn):
            action = "updated" if action == "unchanged" else action
        return EnsureResult(action=action)

    def read(self, call: ResourceCall) -> ReadResult:
        rule = describe(call)
        if rule is None:
            return ReadResult(exists=False)
        targets = client("events", call).list_targets_by_rule(Rule=name_of(call)).get("Targets") or []
        return ReadResult(exists=True, details={"arn": rule.get("Arn"), "expression": rule.get("ScheduleExpression"),
                                                "state": rule.get("State"), "targets": [t.get("Arn") for t in targets]})

    def delete(self, call: ResourceCall) -> EnsureResult:
        events = client("events", call)
        name = name_of(call)
        removed_permission = remove_permission(call, str(cfg(call, "function")), permission_sid(call))
        if describe(call) is None:
            return EnsureResult(action="deleted" if removed_permission else "absent")
        targets = events.list_targets_by_rule(Rule=name).get("Targets") or []
        if targets:
            events.remove_targets(Rule=name, Ids=[t["Id"] for t in targets])
        ignore_missing(lambda: events.delete_rule(Name=name))
        return EnsureResult(action="deleted")
