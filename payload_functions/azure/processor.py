"""L2 processor: the device's own `process` (run by `user-processor` in the user-functions app,
with its key) or pass-through, then the persister in-process (the same app hosts both, so no key
or URL is needed between them)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import azure.functions as func

from payload_functions.azure.persister import persist_reading
from payload_functions.azure.runtime import FUNCTION_KEY_HEADER, http
from payload_functions.common.http import post_json
from payload_functions.common.settings import InvalidSetting, Settings
from payload_functions.core.pipeline import process
from shared.contracts import Function, Setting

FUNCTION = Function.PROCESSOR
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.USER_PROCESSOR_URL, Setting.USER_FUNCTIONS_KEY,
                   Setting.USER_PROCESSOR_DEVICES})

bp = func.Blueprint()


def user_processors(settings: Settings) -> Callable[[str], Callable[[dict[str, Any]], Any] | None]:
    """Device -> a call to `user-processor` for devices with their own code, else None."""
    raw = settings.optional(Setting.USER_PROCESSOR_DEVICES)
    try:
        devices = set(json.loads(raw)) if raw else set()
    except (ValueError, TypeError):
        raise InvalidSetting(str(Setting.USER_PROCESSOR_DEVICES), "expected a JSON list of device ids") from None

    def resolve(device: str) -> Callable[[dict[str, Any]], Any] | None:
        if device not in devices:
            return None

        def call(event: dict[str, Any]) -> Any:
            url = settings.require(Setting.USER_PROCESSOR_URL)
            key = settings.require(Setting.USER_FUNCTIONS_KEY)
            return post_json(url, event, headers={FUNCTION_KEY_HEADER: key}).body

        return call

    return resolve


@bp.function_name(name="processor")
@bp.route(route="processor", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def processor_function(req: func.HttpRequest) -> func.HttpResponse:
    settings = Settings(READS)
    return http(str(FUNCTION), req, lambda r: process(r.json(), persist_reading, user_processors(settings)))
