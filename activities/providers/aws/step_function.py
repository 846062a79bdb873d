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
    account_id,
    canonical,
    cfg,
    client,
    error_code,
    get_or_none,
    ignore_missing,
    lambda_arn,
    name_of,
    region,
    tag_list,
)
from activities.providers.aws._iam import allow, delete_role, ensure_role
from activities.registry import Provider, register
from shared.contracts import Output
from shared.engine.errors import PermanentError, TransientError
from shared.engine.types import Action, EnsureResult, ReadResult, ResourceCall

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


def definition(call: ResourceCall) -> dict[str, Any]:
    given = cfg(call, "definition", DEFAULT_DEFINITION_FILE)
    if isinstance(given, dict):
        return given
    if given == DEFAULT_DEFINITION_FILE:
        return LAMBDA_CHAIN
    raise PermanentError(f"{call.resource.id}: config.definition {given!r} is neither an object nor the built-in "
                         f"{DEFAULT_DEFINITION_FILE}")


def machine_arn(call: ResourceCall) -> str:
    return f"arn:aws:states:{region(call)}:{account_id(call)}:stateMachine:{name_of(call)}"


def role_name(call: ResourceCall) -> str:
    return str(cfg(call, "role_name", name_of(call)))


def describe(call: ResourceCall) -> dict[str, Any] | None:
    found = get_or_none(lambda: client("stepfunctions", call).describe_state_machine(stateMachineArn=machine_arn(call)))
    if found is None or found.get("status") == "DELETING":
        return None
    return dict(found)


@register("aws", "step-function")
class StepFunction(Provider):
    def ensure(self, call: ResourceCall) -> EnsureResult:
        sfn = client("stepfunctions", call)
        name = name_of(call)
        statements = [allow(["lambda:InvokeFunction"], [lambda_arn(call, f"{call.twin}-*")], "TwinFunctions")]
        role_arn, role_changed = ensure_role(call, role_name(call), "states.amazonaws.com", statements)
        action: Action = "updated" if role_changed else "unchanged"
        wanted = definition(call)
        current = describe(call)
        try:
            if current is None:
                sfn.create_state_machine(name=name, definition=json.dumps(wanted), roleArn=role_arn, type="STANDARD",
                                         tags=[{"key": t["Key"], "value": t["Value"]} for t in tag_list(call)])
                action = "created"
            elif canonical(current.get("definition") or "{}") != canonical(wanted) or current.get("roleArn") != role_arn:
                sfn.update_state_machine(stateMachineArn=machine_arn(call), definition=json.dumps(wanted),
                                         roleArn=role_arn)
                action = "updated"
        except ClientError as exc:
            if error_code(exc) in ("AccessDeniedException", "InvalidArn") and "role" in str(exc).lower():
                raise TransientError(f"state machine {name}: role not assumable yet (IAM propagation)") from None
            raise
        return EnsureResult(action=action, outputs=self._outputs(call))

    def _outputs(self, call: ResourceCall) -> dict[str, str]:
        if Output.LAMBDA_CHAIN_STATE_MACHINE_ARN not in call.resource.produces:
            return {}
        return {Output.LAMBDA_CHAIN_STATE_MACHINE_ARN: machine_arn(call)}

    def read(self, call: ResourceCall) -> ReadResult:
        current = describe(call)
        if current is None:
            return ReadResult(exists=False)
        return ReadResult(exists=True, outputs=self._outputs(call),
                          details={"arn": current.get("stateMachineArn"), "status": current.get("status")})

    def delete(self, call: ResourceCall) -> EnsureResult:
        gone = describe(call) is not None and ignore_missing(
            lambda: client("stepfunctions", call).delete_state_machine(stateMachineArn=machine_arn(call)))
        role_gone = delete_role(call, role_name(call))
        return EnsureResult(action="deleted" if gone or role_gone else "absent")
