"""L2 event checker: evaluate the rules for a reading (live values from the twin when L4 is
Azure), start the notification Logic App for `logic_app` / `workflow` actions and send a fired
rule's `feedback` to its device (`event-feedback`, in the same app). The persister in the same
app calls `check_reading` in-process."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import azure.functions as func

from payload_functions.azure.digitaltwins import ADT_READS, TwinPatcher
from payload_functions.azure.event_feedback import deliver as deliver_feedback
from payload_functions.azure.runtime import http
from payload_functions.common.http import post_json
from payload_functions.common.settings import Settings
from payload_functions.core.events import Ref, check, feedback_for
from shared.contracts import Function, Setting, adt_property_name

FUNCTION = Function.EVENT_CHECKER
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.EVENT_RULES, Setting.USE_FEEDBACK,
                   Setting.LOGIC_APP_TRIGGER_URL, *ADT_READS})
WORKFLOW_ACTIONS = ("logic_app", "workflow")

bp = func.Blueprint()


def check_reading(reading: Any) -> dict[str, Any]:
    settings = Settings(READS)
    twins = TwinPatcher(settings)
    unsupported: list[str] = []
    feedback: list[dict[str, Any]] = []

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
        if action.get("type") in WORKFLOW_ACTIONS and url:
            post_json(url, {"event": dict(rule), "reading": reading})
        else:
            unsupported.append(str(action.get("type")))
        if settings.flag(Setting.USE_FEEDBACK):
            request = feedback_for(rule, reading, settings.twin_info().twin_name)
            if request is not None:
                # event-feedback is hosted in this app (the plan puts both in the L2 app): in-process.
                feedback.append(deliver_feedback(request))

    result = check(reading, settings, live_value, fire)
    if unsupported:
        result["not_started"] = sorted(set(unsupported))
    if feedback:
        result["feedback"] = feedback
    return result


@bp.function_name(name="event-checker")
@bp.route(route="event-checker", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def event_checker_function(req: func.HttpRequest) -> func.HttpResponse:
    return http(str(FUNCTION), req, lambda r: check_reading(r.json()))
