"""L2 event action (async invoke from the event checker): a user's `autoDeploy` action. The
Lambda's package carries exactly that action's code (`user_code/`); this handler runs it with the
event `{"e": rule, "reading": reading}` (and the Lambda context for the original
`lambda_handler(event, context)` form)."""

from __future__ import annotations

from typing import Any

from payload_functions.aws.runtime import direct
from payload_functions.core.usercode import packaged_actions, run_action
from shared.contracts import Function, Setting

FUNCTION = Function.EVENT_ACTION
READS = frozenset({Setting.DIGITAL_TWIN_INFO})


def handler(event: Any, context: Any = None) -> Any:
    def work(received: Any) -> Any:
        names = packaged_actions()
        if len(names) != 1:
            raise RuntimeError(f"an event action Lambda carries one action, this one {len(names)}")
        return {"action": names[0], "result": run_action(names[0], received, context)}

    return direct(str(FUNCTION), event, work)
