"""L1 (kind `iot-topic-rule`): the IoT Core rule that sends the twin's topic to the dispatcher
Lambda (SQL from the plan), and the Lambda permission for `iot.amazonaws.com` scoped to this
rule. Output: `IOT_ENDPOINT`, the account's ATS data endpoint (devices and feedback use it)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from activities.providers.aws._common import (
    AwsResource,
    account_id,
    client,
    error_code,
    get_or_none,
    ignore_missing,
    lambda_arn,
    tags,
)
from activities.providers.aws.lambda_function import ensure_permission, get_configuration, remove_permission
from activities.registry import register
from shared.contracts import Output
from shared.engine.errors import TransientError
from shared.engine.types import Action, EnsureResult, ResourceCall
from shared.resources.aws import IotTopicRuleConfig

SQL_VERSION = "2016-03-23"


def rule_arn(config: IotTopicRuleConfig) -> str:
    return f"arn:aws:iot:{config.region}:{account_id()}:rule/{config.name}"


def permission_sid(config: IotTopicRuleConfig) -> str:
    return f"iot-{config.name}"


def data_endpoint(region: str) -> str:
    return str(client("iot", region).describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"])


def payload(call: ResourceCall, config: IotTopicRuleConfig) -> dict[str, Any]:
    return {
        "sql": config.sql,
        "description": f"{call.resource.id} of twin {call.twin}",
        "actions": [{"lambda": {"functionArn": lambda_arn(config.region, config.function)}}],
        "ruleDisabled": False,
        "awsIotSqlVersion": SQL_VERSION,
    }


def _differs(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    have_actions = [a.get("lambda", {}).get("functionArn") for a in current.get("actions") or []]
    want_actions = [a["lambda"]["functionArn"] for a in wanted["actions"]]
    return (current.get("sql") != wanted["sql"] or have_actions != want_actions
            or bool(current.get("ruleDisabled")) != wanted["ruleDisabled"])


@register("aws", "iot-topic-rule")
class IotTopicRule(AwsResource[IotTopicRuleConfig]):
    model = IotTopicRuleConfig
    label = "IoT rule"

    def describe(self, call: ResourceCall, config: IotTopicRuleConfig) -> dict[str, Any] | None:
        try:
            found = get_or_none(lambda: client("iot", config.region).get_topic_rule(ruleName=config.name))
        except ClientError as exc:
            # IoT answers a missing rule with UnauthorizedException (it does not reveal existence).
            if error_code(exc) == "UnauthorizedException":
                return None
            raise
        return None if found is None else found.get("rule")

    def converge(self, call: ResourceCall, config: IotTopicRuleConfig, action: Action) -> EnsureResult:
        iot = client("iot", config.region)
        name, function = config.name, config.function
        if get_configuration(config.region, function) is None:
            raise TransientError(f"IoT rule {name}: its target Lambda {function} does not exist yet")
        wanted = payload(call, config)
        current = self.found(call, config)
        if current is None:
            iot.create_topic_rule(ruleName=name, topicRulePayload=wanted,
                                  tags="&".join(f"{k}={v}" for k, v in sorted(tags(call).items())))
            action = "created"
        elif _differs(current, wanted):
            iot.replace_topic_rule(ruleName=name, topicRulePayload=wanted)
            action = "updated"
        # Without this permission IoT Core's invocations of the dispatcher are refused.
        if ensure_permission(config.region, function, permission_sid(config), Action="lambda:InvokeFunction",
                             Principal="iot.amazonaws.com", SourceArn=rule_arn(config), SourceAccount=account_id()):
            action = "updated" if action == "unchanged" else action
        return EnsureResult(action=action, outputs=self.outputs(call, config, current))

    def owner_tags(self, call: ResourceCall, config: IotTopicRuleConfig, current: Any) -> dict[str, str]:
        listed = client("iot", config.region).list_tags_for_resource(resourceArn=rule_arn(config))
        return {t["Key"]: t["Value"] for t in listed.get("tags") or []}

    def outputs(self, call: ResourceCall, config: IotTopicRuleConfig, current: Any) -> dict[str, str]:
        if Output.IOT_ENDPOINT not in call.resource.produces:
            return {}
        return {Output.IOT_ENDPOINT: data_endpoint(config.region)}

    def details(self, call: ResourceCall, config: IotTopicRuleConfig, current: Any) -> dict[str, Any]:
        return {"arn": rule_arn(config), "sql": current.get("sql"),
                "targets": [a.get("lambda", {}).get("functionArn") for a in current.get("actions") or []]}

    def remove(self, call: ResourceCall, config: IotTopicRuleConfig, current: Any) -> bool:
        ignore_missing(lambda: client("iot", config.region).delete_topic_rule(ruleName=config.name))
        return True

    def leftovers(self, call: ResourceCall, config: IotTopicRuleConfig) -> bool:
        return remove_permission(config.region, config.function, permission_sid(config))
