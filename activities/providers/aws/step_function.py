"""L2 notification workflow (kind `step-function`): the "lambda chain" state machine the event
checker starts (`LAMBDA_CHAIN_STATE_MACHINE_ARN`), with its own role for `states.amazonaws.com`
allowed to invoke only this twin's functions.

The plan names the original project's definition file (`state_machines/aws_step_function.json`);
its content is built in here (two Lambda tasks in sequence, ARNs taken from the input), and a
definition given inline as an object is used as is.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from activities.providers.aws._common import (
    AwsResource,
    account_id,
    canonical,
    client,
    error_code,
    get_or_none,
    ignore_missing,
    lambda_arn,
    tag_list,
)
from activities.providers.aws._iam import allow, delete_role, ensure_role, role_left
from activities.registry import register
from shared.contracts import Output
from shared.engine.errors import PermanentError, TransientError
from shared.engine.types import Action, EnsureResult, ResourceCall
from shared.resources.aws import StepFunctionConfig

DEFAULT_DEFINITION_FILE = "state_machines/aws_step_function.json"
LAMBDA_CHAIN: dict[str, Any] = {
    "Comment": "Executing two lambda functions consecutively",
    "StartAt": "LambdaA",
    "States": {
        "LambdaA": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName.$": "$.LambdaAArn", "Payload.$": "$.InputData"},
            "ResultPath": "$.LambdaAResult",
            "Next": "LambdaB",
        },
        "LambdaB": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName.$": "$.LambdaBArn",
                           "Payload": {"fromA.$": "$.LambdaAResult.Payload", "event.$": "$.InputData"}},
            "OutputPath": "$.Payload",
            "End": True,
        },
    },
}


def definition(call: ResourceCall, config: StepFunctionConfig) -> dict[str, Any]:
    if isinstance(config.definition, dict):
        return config.definition
    if config.definition == DEFAULT_DEFINITION_FILE:
        return LAMBDA_CHAIN
    raise PermanentError(f"{call.resource.id}: config.definition {config.definition!r} is neither an object nor the "
                         f"built-in {DEFAULT_DEFINITION_FILE}")


def machine_arn(config: StepFunctionConfig) -> str:
    return f"arn:aws:states:{config.region}:{account_id()}:stateMachine:{config.name}"


@register("aws", "step-function")
class StepFunction(AwsResource[StepFunctionConfig]):
    """The state machine and its role (named like it)."""

    model = StepFunctionConfig
    label = "state machine"

    def describe(self, call: ResourceCall, config: StepFunctionConfig) -> dict[str, Any] | None:
        found = get_or_none(lambda: client("stepfunctions", config.region).describe_state_machine(
            stateMachineArn=machine_arn(config)))
        if found is None or found.get("status") == "DELETING":
            return None
        return dict(found)

    def converge(self, call: ResourceCall, config: StepFunctionConfig, action: Action) -> EnsureResult:
        sfn = client("stepfunctions", config.region)
        name = config.name
        statements = [allow(["lambda:InvokeFunction"], [lambda_arn(config.region, f"{call.twin}-*")], "TwinFunctions")]
        role_arn, role_changed = ensure_role(call, name, "states.amazonaws.com", statements)
        action = "updated" if role_changed else action
        wanted = definition(call, config)
        current = self.found(call, config)
        try:
            if current is None:
                sfn.create_state_machine(name=name, definition=json.dumps(wanted), roleArn=role_arn, type="STANDARD",
                                         tags=[{"key": t["Key"], "value": t["Value"]} for t in tag_list(call)])
                action = "created"
            elif canonical(current.get("definition") or "{}") != canonical(wanted) or current.get("roleArn") != role_arn:
                sfn.update_state_machine(stateMachineArn=machine_arn(config), definition=json.dumps(wanted),
                                         roleArn=role_arn)
                action = "updated"
        except ClientError as exc:
            if error_code(exc) in ("AccessDeniedException", "InvalidArn") and "role" in str(exc).lower():
                raise TransientError(f"state machine {name}: role not assumable yet (IAM propagation)") from None
            raise
        return EnsureResult(action=action, outputs=self.outputs(call, config, current))

    def owner_tags(self, call: ResourceCall, config: StepFunctionConfig, current: Any) -> dict[str, str]:
        listed = client("stepfunctions", config.region).list_tags_for_resource(resourceArn=machine_arn(config))
        return {t["key"]: t["value"] for t in listed.get("tags") or []}

    def outputs(self, call: ResourceCall, config: StepFunctionConfig, current: Any) -> dict[str, str]:
        if Output.LAMBDA_CHAIN_STATE_MACHINE_ARN not in call.resource.produces:
            return {}
        return {Output.LAMBDA_CHAIN_STATE_MACHINE_ARN: machine_arn(config)}

    def details(self, call: ResourceCall, config: StepFunctionConfig, current: Any) -> dict[str, Any]:
        return {"arn": current.get("stateMachineArn"), "status": current.get("status")}

    def remove(self, call: ResourceCall, config: StepFunctionConfig, current: Any) -> bool:
        ignore_missing(lambda: client("stepfunctions", config.region).delete_state_machine(
            stateMachineArn=machine_arn(config)))
        return True

    def leftovers(self, call: ResourceCall, config: StepFunctionConfig) -> bool:
        return delete_role(call, config.name)

    def remaining_parts(self, call: ResourceCall, config: StepFunctionConfig) -> list[str]:
        return role_left(call, config.name)
