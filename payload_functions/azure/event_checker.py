"""L2 event checker: evaluate the rules for a reading (live values from the twin when L4 is
Azure), run users' `lambda` / `function` actions (`event-action` in the user-functions app, with
its key), start the notification Logic App for `logic_app` / `workflow` actions and send a fired
rule's `feedback` to its device (`event-feedback` in the same app when L1 is Azure too, else the
token-checked one on L1's cloud). The persister in the same app calls `check_reading` in-process."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

import azure.functions as func

from payload_functions.azure.digitaltwins import ADT_READS, TwinPatcher
from payload_functions.azure.event_feedback import deliver as deliver_feedback
from payload_functions.azure.runtime import FUNCTION_KEY_HEADER, http
from payload_functions.common.http import post_json
from payload_functions.common.settings import Settings
from payload_functions.core.events import Ref, action_event, check, feedback_for, send_feedback
from shared.contracts import EVENT_ACTION_NAME_PARAM, Function, Setting, adt_property_name

FUNCTION = Function.EVENT_CHECKER
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.EVENT_RULES, Setting.USE_FEEDBACK,
                   Setting.LOGIC_APP_TRIGGER_URL, Setting.EVENT_ACTION_URL, Setting.USER_FUNCTIONS_KEY,
                   Setting.REMOTE_FEEDBACK_URL, Setting.INTER_CLOUD_TOKEN, *ADT_READS})
WORKFLOW_ACTIONS = ("logic_app", "workflow")
FUNCTION_ACTIONS = ("lambda", "function")

bp = func.Blueprint()


def check_reading(reading: Any) -> dict[str, Any]:
    settings = Settings(READS)
    twins = TwinPatcher(settings)
    unsupported: list[str] = []
    feedback: list[dict[str, Any]] = []
    actions: list[dict[str, Any]] = []

    def live_value(ref: Ref) -> Any:
        if settings.optional(Setting.ADT_INSTANCE_URL) is None:
            return None
        try:
            twin = twins.client().get_digital_twin(ref.entity)
        except Exception:  # an unknown twin leaves the value unknown: the rule is skipped
            return None
        return twin.get(ref.property, twin.get(adt_property_name(ref.property)))

    def fire(rule: Mapping[str, Any], reading: dict[str, Any]) -> None:
        action = rule.get("action") or {}
        url = settings.optional(Setting.LOGIC_APP_TRIGGER_URL)
        kind = action.get("type")
        actions_url = settings.optional(Setting.EVENT_ACTION_URL)
        if kind in WORKFLOW_ACTIONS and url:
            post_json(url, {"event": dict(rule), "reading": reading})
        elif kind in FUNCTION_ACTIONS and action.get("functionName") and actions_url:
            # A deployed (autoDeploy) action: its code runs in the user-functions app.
            name = str(action["functionName"])
            target = f"{actions_url}?{urllib.parse.urlencode({EVENT_ACTION_NAME_PARAM: name})}"
            answered = post_json(target, action_event(rule, reading),
                                 headers={FUNCTION_KEY_HEADER: settings.require(Setting.USER_FUNCTIONS_KEY)})
            actions.append({"action": name, "status": answered.status})
        else:
            unsupported.append(str(kind))
        if settings.flag(Setting.USE_FEEDBACK):
            request = feedback_for(rule, reading, settings.twin_info().twin_name)
            if request is not None:
                # In-process when this app hosts event-feedback (L1 on Azure too), else remote.
                feedback.append(send_feedback(request, settings, "azure", deliver_feedback))

    result = check(reading, settings, live_value, fire)
    if unsupported:
        result["not_started"] = sorted(set(unsupported))
    if feedback:
        result["feedback"] = feedback
    if actions:
        result["actions"] = actions
    return result


@bp.function_name(name="event-checker")
@bp.route(route="event-checker", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def event_checker_function(req: func.HttpRequest) -> func.HttpResponse:
    return http(str(FUNCTION), req, lambda r: check_reading(r.json()))
