"""L2 event checker (private HTTP, called by the persister): evaluate the spec's rules for a
reading and carry out what fired: a user's event action (`lambda`/`function` actions: the
action's own function, by its URL, with an ID token) and device feedback (through the
token-checked `event-feedback` on L1's cloud, or, with L1 on GCP too, published here to the
feedback topic each device reads through its own subscription: `event_feedback.publish_feedback`).

GCP hosts no twin (L4 is on AWS or Azure), so operands on other devices' twin properties are
unknown and those rules are skipped; operands on the reading's own device take the reading's
values. Starting the notification workflow (Cloud Workflows) is not supported yet: such rules are
listed under `not_started` with the reason, so nothing is silently dropped."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import functions_framework

from payload_functions.common.settings import Settings
from payload_functions.core.events import Ref, action_event, check, feedback_for, send_feedback
from payload_functions.gcp.event_feedback import publish_feedback
from payload_functions.gcp.runtime import PROVIDER, HttpRequest, call_function, http
from shared.contracts import Function, Setting

FUNCTION = Function.EVENT_CHECKER
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.EVENT_RULES, Setting.USE_FEEDBACK, Setting.WORKFLOW_NAME,
                   Setting.EVENT_ACTION_URL, Setting.REMOTE_FEEDBACK_URL, Setting.INTER_CLOUD_TOKEN,
                   Setting.FEEDBACK_TOPIC})


def check_reading(raw: Any) -> dict[str, Any]:
    settings = Settings(READS)
    not_started: list[str] = []
    ran: list[str] = []

    def live_value(ref: Ref) -> Any:
        return None  # no twin service on GCP: the rule is skipped, not fired on a guess

    def fire(rule: Mapping[str, Any], reading: dict[str, Any]) -> None:
        action = rule.get("action") or {}
        kind = str(action.get("type"))
        name = action.get("functionName")
        if kind in ("lambda", "function") and name:
            call_function(settings.keyed(Setting.EVENT_ACTION_URL, str(name)), action_event(rule, reading))
            ran.append(str(name))
        elif kind == "workflow":
            wired = "wired" if settings.optional(Setting.WORKFLOW_NAME) else "not wired"
            not_started.append(f"workflow: starting Cloud Workflows executions is not supported on GCP yet "
                               f"(WORKFLOW_NAME {wired})")
        else:
            not_started.append(f"{kind}: not supported by the GCP event checker")
        feedback = feedback_for(rule, reading, settings.twin_info().twin_name)
        if feedback is not None and settings.flag(Setting.USE_FEEDBACK):
            send_feedback(feedback, settings, PROVIDER, lambda request: publish_feedback(request, settings))

    result = check(raw, settings, live_value, fire)
    if ran:
        result["actions"] = ran
    if not_started:
        result["not_started"] = sorted(set(not_started))
    return result


@functions_framework.http
def event_checker(request: HttpRequest) -> tuple[str, int, dict[str, str]]:
    return http(str(FUNCTION), request, lambda req: check_reading(req.json()))
