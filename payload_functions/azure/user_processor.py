"""L2 user-functions app: a device's own `process(event)`, called by the `processor` in the L2
app (with this app's function key) before it persists. The package carries every device's code
(`user_code/`); the device comes from the event. Answers the processed event; a failure of the
user's code is 422 `[USER_LOGIC_ERROR]`."""

from __future__ import annotations

from typing import Any

import azure.functions as func

from payload_functions.azure.runtime import http
from payload_functions.common.errors import BadRequest, PayloadError
from payload_functions.common.telemetry import normalise
from payload_functions.core.api import Request
from payload_functions.core.usercode import call_process, packaged_processor
from shared.contracts import Function, Setting, Telemetry

FUNCTION = Function.USER_PROCESSOR
READS = frozenset({Setting.DIGITAL_TWIN_INFO})

bp = func.Blueprint()


def run(request: Request) -> dict[str, Any]:
    event = request.json()
    if not isinstance(event, dict):
        raise BadRequest("body: the event must be a JSON object")
    device = str(normalise(event)[Telemetry.DEVICE_ID])
    fn = packaged_processor(device)
    if fn is None:
        raise PayloadError(404, f"device {device[:64]!r} has no processor of its own in this app")
    return dict(call_process(fn, event, device))


@bp.function_name(name="user-processor")
@bp.route(route="user-processor", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def user_processor_function(req: func.HttpRequest) -> func.HttpResponse:
    return http(str(FUNCTION), req, run)
