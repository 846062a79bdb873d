"""L2 user-functions app: a user's `autoDeploy` event action, by name (`?name=`), called by the
event checker in the L2 app (with this app's function key) when the action's rule fires. The
body is the event `{"e": rule, "reading": reading}`; the answer is what the action returned."""

from __future__ import annotations

from typing import Any

import azure.functions as func

from payload_functions.azure.runtime import http
from payload_functions.common.errors import BadRequest
from payload_functions.core.api import Request
from payload_functions.core.usercode import run_action
from shared.contracts import EVENT_ACTION_NAME_PARAM, Function, Setting

FUNCTION = Function.EVENT_ACTION
READS = frozenset({Setting.DIGITAL_TWIN_INFO})

bp = func.Blueprint()


def run(request: Request) -> dict[str, Any]:
    name = request.query.get(EVENT_ACTION_NAME_PARAM)
    if not name:
        raise BadRequest(f"?{EVENT_ACTION_NAME_PARAM}: the event action's function name is required")
    return {"action": name, "result": run_action(name, request.json())}


@bp.function_name(name="event-action")
@bp.route(route="event-action", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def event_action_function(req: func.HttpRequest) -> func.HttpResponse:
    return http(str(FUNCTION), req, run)
