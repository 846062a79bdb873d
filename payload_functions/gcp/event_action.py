"""L2 event action (private HTTP, called by the event checker with an ID token): a user's
`autoDeploy` action. The function's package carries exactly that action's code (`user_code/`);
this entry point runs it with the event `{"e": rule, "reading": reading}` (`core.events.
action_event`), as `action(event)` or the original `lambda_handler(event, context)` (context None)."""

from __future__ import annotations

from typing import Any

import functions_framework

from payload_functions.common.errors import PayloadError
from payload_functions.core.usercode import packaged_actions, run_action
from payload_functions.gcp.runtime import HttpRequest, http
from shared.contracts import Function, Setting

FUNCTION = Function.EVENT_ACTION
READS = frozenset({Setting.DIGITAL_TWIN_INFO})


def run(received: Any) -> dict[str, Any]:
    names = packaged_actions()
    if len(names) != 1:
        raise PayloadError(500, f"[SYSTEM_ERROR] an event action function carries one action, this one {len(names)}")
    return {"action": names[0], "result": run_action(names[0], received)}


@functions_framework.http
def event_action(request: HttpRequest) -> tuple[str, int, dict[str, str]]:
    return http(str(FUNCTION), request, lambda req: run(req.json()))
