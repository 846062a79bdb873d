"""`rotate_token`: roll out a new inter-cloud token without rejecting an in-flight message.

Receivers (consumers in L0, the glue layer that accepts cross-cloud calls) compare the header
against `INTER_CLOUD_TOKEN` and `INTER_CLOUD_TOKEN_PREVIOUS`; senders send `INTER_CLOUD_TOKEN`.
1. receivers accept both: TOKEN = new, PREVIOUS = old (senders still send old: accepted);
2. the new token is recorded; senders switch to it (accepted by every receiver);
3. after a grace period for messages already on the wire, receivers drop PREVIOUS.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from orchestrators.common import (
    Gen,
    OperationFailed,
    Options,
    acquire,
    apply_consumers,
    output_event,
    publish,
    release_draining,
    state_entity,
)
from shared.engine import names
from shared.engine.errors import decode

bp = df.Blueprint()


def _phase(context: df.DurableOrchestrationContext, twin: str, state: dict[str, Any],
           settings: dict[str, dict[str, Any]], opts: Options, tag: str) -> Gen:
    wanted = {c: {"settings": s, "versions": {}} for c, s in settings.items()}
    changed, unchanged, failed = yield from apply_consumers(context, twin, state, wanted, opts, tag)
    if failed:
        raise OperationFailed(f"[permanent] token rotation {tag} failed for {len(failed)} consumer(s): " + "; ".join(failed[:5]))
    return len(changed)


@bp.orchestration_trigger(context_name="context", orchestration=names.ROTATE_TOKEN)
def rotate_token(context: df.DurableOrchestrationContext) -> Gen:
    """Input {"twin": name, "options": {...}, "replace": stale lock holder | None}."""
    data = context.get_input()
    twin, opts = data["twin"], Options.from_dict(data.get("options"))
    yield from acquire(context, twin, "rotate", opts, data.get("replace"))
    status: dict[str, Any] = {"operation": "rotate", "twin": twin, "step": "generating"}
    context.set_custom_status(status)
    error: str | None = None
    result: dict[str, Any] = {}
    try:
        state = yield context.call_entity(state_entity(twin), "get")
        token = state.get("outputs", {}).get(names.INTER_CLOUD_TOKEN)
        if token is None:
            raise OperationFailed(f"[permanent] twin {twin} has no {names.INTER_CLOUD_TOKEN}: deploy it first")
        old = token["value"]
        new = yield context.call_activity(names.SECRET_GENERATE, {"twin": twin, "output": names.INTER_CLOUD_TOKEN})
        # Receivers are the consumers wired to the PREVIOUS output (they accept it); the plan has
        # them all in L0, which is the fallback when a plan does not wire PREVIOUS.
        token_wires = [w for w in state.get("wires", []) if w["output"] == names.INTER_CLOUD_TOKEN
                       and state["resources"].get(w["consumer"], {}).get("state") == "deployed"]
        previous_wired = {w["consumer"]: w["setting"] for w in state.get("wires", [])
                          if w["output"] == names.INTER_CLOUD_TOKEN_PREVIOUS_OUTPUT}
        receivers: dict[str, dict[str, Any]] = {}
        senders: dict[str, dict[str, Any]] = {}
        for wire in token_wires:
            consumer = wire["consumer"]
            is_receiver = consumer in previous_wired if previous_wired else (
                state["resources"][consumer].get("layer") == names.RECEIVER_LAYER)
            (receivers if is_receiver else senders).setdefault(consumer, {})[wire["setting"]] = new
        previous_setting = {c: previous_wired.get(c, names.INTER_CLOUD_TOKEN_PREVIOUS) for c in receivers}
        # What receivers hold once the rotation is over: the recorded PREVIOUS output (empty), or nothing.
        previous_after = state.get("outputs", {}).get(names.INTER_CLOUD_TOKEN_PREVIOUS_OUTPUT, {}).get("value")

        status["step"] = "receivers accept the new token"
        context.set_custom_status(status)
        phase1 = {c: s | {previous_setting[c]: old} for c, s in receivers.items()}
        yield from _phase(context, twin, state, phase1, opts, "accept")

        recorded = yield context.call_entity(
            state_entity(twin), "record_output",
            {"name": names.INTER_CLOUD_TOKEN, "value": new, "producer": token["producer"], "secret": True},
        )
        status["step"] = "senders switch"
        context.set_custom_status(status)
        yield from _phase(context, twin, state, senders, opts, "switch")

        status["step"] = "grace period for in-flight messages"
        context.set_custom_status(status)
        yield context.create_timer(context.current_utc_datetime + timedelta(seconds=opts.grace_seconds))
        status["step"] = "receivers drop the previous token"
        context.set_custom_status(status)
        phase3 = {c: {previous_setting[c]: previous_after} for c in receivers}
        yield from _phase(context, twin, state, phase3, opts, "drop")

        versions = {names.INTER_CLOUD_TOKEN: recorded["version"]}
        yield context.call_entity(state_entity(twin), "record_applied",
                                  {"applied": {c: versions for c in [*receivers, *senders]}})
        yield from publish(context, twin, [output_event(twin, names.INTER_CLOUD_TOKEN, recorded["version"],
                                                        token["producer"], new, True)])
        result = {"twin": twin, "operation": "rotate", "version": recorded["version"],
                  "receivers": len(receivers), "senders": len(senders)}
    except Exception as exc:
        error = decode(str(exc)).message
    try:
        yield from release_draining(context, twin, opts)
    except Exception as exc:
        error = error or decode(str(exc)).message
    status["step"] = "failed" if error else "completed"
    if error:
        status["error"] = {"resource": "", "message": error[:400]}
    context.set_custom_status(status)
    if error:
        raise OperationFailed(f"[permanent] {error}")
    return result
