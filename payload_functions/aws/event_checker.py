"""L2 event checker (async invoke from the persister): evaluate the rules; fire Lambda actions,
the Step Functions chain and device feedback (the L2 `event-feedback` when L1 is on AWS too, else
the token-checked `event-feedback` on L1's cloud)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from payload_functions.aws.runtime import client, direct, invoke_async, naming
from payload_functions.common.errors import UpstreamError
from payload_functions.common.settings import Settings
from payload_functions.core.events import Ref, action_event, check, feedback_for, send_feedback
from shared.contracts import Function, Setting

FUNCTION = Function.EVENT_CHECKER
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.EVENT_RULES, Setting.USE_FEEDBACK,
                   Setting.LAMBDA_CHAIN_STATE_MACHINE_ARN, Setting.TWINMAKER_WORKSPACE_NAME,
                   Setting.REMOTE_FEEDBACK_URL, Setting.INTER_CLOUD_TOKEN})


def handler(event: Any, context: Any = None) -> Any:
    settings = Settings(READS)

    def live_value(ref: Ref) -> Any:
        workspace = settings.optional(Setting.TWINMAKER_WORKSPACE_NAME)
        if workspace is None:
            return None
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            found = client("iottwinmaker").get_property_value(
                workspaceId=workspace, entityId=ref.entity, componentName=ref.component,
                selectedProperties=[ref.property])
        except (ClientError, BotoCoreError):
            return None
        value = ((found.get("propertyValues") or {}).get(ref.property) or {}).get("propertyValue") or {}
        return next((v for v in value.values() if v is not None), None)

    def fire(rule: Mapping[str, Any], reading: dict[str, Any]) -> None:
        action = rule.get("action") or {}
        names = naming(settings)
        kind = action.get("type")
        if kind in ("lambda", "function") and action.get("functionName"):
            invoke_async(names.event_action(str(action["functionName"])), action_event(rule, reading))
        arn = settings.optional(Setting.LAMBDA_CHAIN_STATE_MACHINE_ARN)
        if kind == "step_function" and arn:
            try:
                client("stepfunctions").start_execution(
                    stateMachineArn=arn, input=json.dumps({"event": dict(rule), "reading": reading}, default=str))
            except Exception as exc:  # boto errors: name the type, never the input
                raise UpstreamError(f"starting the notification workflow failed: {type(exc).__name__}") from None
        feedback = feedback_for(rule, reading, names.twin)
        if feedback is not None and settings.flag(Setting.USE_FEEDBACK):
            send_feedback(feedback, settings, "aws",
                          lambda request: invoke_async(names.function(str(Function.EVENT_FEEDBACK)), request))

    return direct(str(FUNCTION), event, lambda e: check(e, settings, live_value, fire))
