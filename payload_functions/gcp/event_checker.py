"""L2 event checker (private HTTP, called by the persister): evaluate the spec's rules for a
reading. GCP hosts no twin (L4 is on AWS or Azure), so operands on other devices' twin
properties are unknown and those rules are skipped; operands on the reading's own device take the
reading's values.

Fired rules' actions are reported, not yet carried out on GCP: starting the notification
workflow (`WORKFLOW_NAME`, Cloud Workflows), user event-action functions and device feedback
come with the GCP provider. The answer lists each under `not_started` with the reason, so nothing
is silently dropped."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import functions_framework

from payload_functions.common.settings import Settings
from payload_functions.core.events import Ref, check, feedback_for
from payload_functions.gcp.runtime import HttpRequest, http
from shared.contracts import Function, Setting

FUNCTION = Function.EVENT_CHECKER
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.EVENT_RULES, Setting.USE_FEEDBACK, Setting.WORKFLOW_NAME})


def check_reading(raw: Any) -> dict[str, Any]:
    settings = Settings(READS)
    not_started: list[str] = []

    def live_value(ref: Ref) -> Any:
        return None  # no twin service on GCP: the rule is skipped, not fired on a guess

    def fire(rule: Mapping[str, Any], reading: dict[str, Any]) -> None:
        action = rule.get("action") or {}
        kind = str(action.get("type"))
        if kind == "workflow":
            wired = "wired" if settings.optional(Setting.WORKFLOW_NAME) else "not wired"
            not_started.append(f"workflow: starting Cloud Workflows executions is not supported on GCP yet "
                               f"(WORKFLOW_NAME {wired})")
        else:
            not_started.append(f"{kind}: not supported by the GCP event checker")
        if settings.flag(Setting.USE_FEEDBACK) and feedback_for(rule, reading, settings.twin_info().twin_name):
            not_started.append("feedback: devices on GCP have no feedback channel yet")

    result = check(raw, settings, live_value, fire)
    if not_started:
        result["not_started"] = sorted(set(not_started))
    return result


@functions_framework.http
def event_checker(request: HttpRequest) -> tuple[str, int, dict[str, str]]:
    return http(str(FUNCTION), request, lambda req: check_reading(req.json()))
