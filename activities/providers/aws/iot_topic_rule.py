"""L1 (kind `iot-topic-rule`): the IoT Core rule that sends the twin's topic to the dispatcher
Lambda (SQL from the plan), and the Lambda permission for `iot.amazonaws.com` scoped to this
rule. Output: `IOT_ENDPOINT`, the account's ATS data endpoint (devices and feedback use it)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from activities.providers.aws._common import (
    account_id,
    cfg,
    client,
    error_code,
    get_or_none,
    ignore_missing,
    lambda_arn,
    name_of,
    region,
    tags,
)
from activities.providers.aws.lambda_function import ensure_permission, get_configuration, remove_permission
from activities.registry import Provider, register
from shared.contracts import Output
from shared.engine.errors import TransientError
from shared.engine.types import Action, EnsureResult, ReadResult, ResourceCall

SQL_VERSION = "2016-03-23"


def rule_arn(call: ResourceCall) -> str:
    return f"arn:aws:iot:{region(call)}:{account_id(call)}:rule/{name_of(call)}"


def permission_sid(call: ResourceCall) -> str:
    return f"iot-{name_of(call)}"


def data_endpoint(call: ResourceCall) -> str:
    return str(client("iot", call).describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"])


def payload(call: ResourceCall) -> dict[str, Any]:
    return {
        "sql": str(cfg(call, "sql")),
        "description": f"{call.resource.id} of twin {call.twin}",
        "actions": [{"lambda": {"functionArn": lambda_arn(call, str(cfg(call, "function")))}}],
        "ruleDisabled": False,
        "awsIotSqlVersion": SQL_VERSION,
    }


def get_rule(call: ResourceCall) -> dict[str, Any] | None:
    try:
        found = get_or_none(lambda: client("iot", call).get_topic_rule(ruleName=name_of(call)))
    except ClientError as exc:
        # IoT answers a missing rule with UnauthorizedException (it does not reveal existence).
        if error_code(exc) == "UnauthorizedException":
            return None
        raise
    return None if found is None else found.get("rule")


def _differs(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    have_actions = [a.get("lambda", {}).get("functionArn") for a in current.get("actions") or []]
    want_actions = [a["lambda"]["functionArn"] for a in wanted["actions"]]
    return (current.get("sql") != wanted["sql"] or have_actions != want_actions
            or bool(current.get("ruleDisabled")) != wanted["ruleDisabled"])


@register("aws", "iot-topic-rule")
class IotTopicRule(Provider):
    def ensure(self, call: ResourceCall) -> EnsureResult:
        iot = client("iot", call)
        name = name_of(call)
        function = str(cfg(call, "function"))
        if get_configuration(call, function) is None:
            raise TransientError(f"IoT rule {name}: its target Lambda {function} does not exist yet")
        wanted = payload(call)
        action: Action = "unchanged"
        current = get_rule(call)
        if current is None:
            iot.create_topic_rule(ruleName=name, topicRulePayload=wanted,
                                  tags="&".join(f"{k}={v}" for k, v in sorted(tags(call).items())))
            action = "created"
        elif _differs(current, wanted):
            iot.replace_topic_rule(ruleName=name, topicRulePayload=wanted)
            action = "updated"
        # Without this permission IoT Core's invocations of the dispatcher are refused.
        if ensure_permission(call, function, permission_sid(call), Action="lambda:InvokeFunction",
                             Principal="iot.amazonaws.com", SourceArn=rule_arn(call), SourceAccount=account_id(call)):
            action = "updated" if action == "unchanged" else action
        return EnsureResult(action=action, outputs=self._outputs(call))

    def _outputs(self, call: ResourceCall) -> dict[str, str]:
        return {Output.IOT_ENDPOINT: data_endpoint(call)} if Output.IOT_ENDPOINT in call.resource.produces else {}

    def read(self, call: ResourceCall) -> ReadResult:
        current = get_rule(call)
        if current is None:
            return ReadResult(exists=False)
        return ReadResult(exists=True, outputs=self._outputs(call), details={
            "arn": rule_arn(call), "sql": current.get("sql"),
            "targets": [a.get("lambda", {}).get("functionArn") for a in current.get("actions") or []],
        })

    def delete(self, call: ResourceCall) -> EnsureResult:
        removed_permission = remove_permission(call, str(cfg(call, "function")), permission_sid(call))
        if get_rule(call) is None:
            return EnsureResult(action="deleted" if removed_permission else "absent")
        ignore_missing(lambda: client("iot", call).delete_topic_rule(ruleName=name_of(call)))
        return EnsureResult(action="deleted")
