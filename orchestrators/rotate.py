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
    acquire,
    apply_consumers,
    call_state,
    output_event,
    publish,
    release_draining,
    signal_state,
)
from shared.engine import names
from shared.engine.errors import decode
from shared.engine.names import StateOp
from shared.engine.orchestrations import EngineOptions, RotateResult, TwinOperation
from shared.engine.state import Desired, OutputVersion, RecordApplied, RecordOutput, TwinState
from shared.engine.types import SecretRequest

bp = df.Blueprint()


def _phase(context: df.DurableOrchestrationContext, twin: str, state: TwinState,
           settings: dict[str, dict[str, str | None]], opts: EngineOptions, tag: str) -> Gen:
    # Versions are recorded once, at the end: mid-rotation settings are not those of any version.
    wanted = {c: Desired(s, {}) for c, s in settings.items()}
    done, failed = yield from apply_consumers(context, twin, state, wanted, opts, tag)
    if failed:
        raise OperationFailed(f"[permanent] token rotation {tag} failed for {len(failed)} consumer(s): " + "; ".join(failed[:5]))
    return len(done.changed)


@bp.orchestration_trigger(context_name="context", orchestration=names.ROTATE_TOKEN)
def rotate_token(context: df.DurableOrchestrationContext) -> Gen:
    """Input `TwinOperation`; result `RotateResult`."""
    data = TwinOperation.from_dict(context.get_input())
    twin, opts = data.twin, data.options
    state = yield from acquire(context, twin, "rotate", opts, data.replace)
    status: dict[str, Any] = {"operation": "rotate", "twin": twin, "step": "generating"}
    context.set_custom_status(status)
    error: str | None = None
    result: RotateResult | None = None
    try:
        token = state.outputs.get(names.INTER_CLOUD_TOKEN)
        if token is None:
            raise OperationFailed(f"[permanent] twin {twin} has no {names.INTER_CLOUD_TOKEN}: deploy it first")
        old = token.value
        new = yield context.call_activity(names.SECRET_GENERATE,
                                          SecretRequest(twin, names.INTER_CLOUD_TOKEN).to_dict())
        # Receivers are the consumers wired to the PREVIOUS output (they accept it); the plan has
        # them all in L0, which is the fallback when a plan does not wire PREVIOUS.
        deployed = {rid for rid, r in state.resources.items() if r.state == "deployed"}
        token_wires = [w for w in state.wires if w.output == names.INTER_CLOUD_TOKEN and w.consumer in deployed]
        previous_wired = {w.consumer: w.setting for w in state.wires
                          if w.output == names.INTER_CLOUD_TOKEN_PREVIOUS_OUTPUT}
        receivers: dict[str, dict[str, str | None]] = {}
        senders: dict[str, dict[str, str | None]] = {}
        for wire in token_wires:
            consumer = wire.consumer
            is_receiver = consumer in previous_wired if previous_wired else (
                state.resources[consumer].layer == names.RECEIVER_LAYER)
            (receivers if is_receiver else senders).setdefault(consumer, {})[wire.setting] = new
        previous_setting = {c: previous_wired.get(c, names.INTER_CLOUD_TOKEN_PREVIOUS) for c in receivers}
        # What receivers hold once the rotation is over: the recorded PREVIOUS output (empty), or nothing.
        previous = state.outputs.get(names.INTER_CLOUD_TOKEN_PREVIOUS_OUTPUT)
        previous_after = previous.value if previous is not None else None

        status["step"] = "receivers accept the new token"
        context.set_custom_status(status)
        phase1 = {c: s | {previous_setting[c]: old} for c, s in receivers.items()}
        yield from _phase(context, twin, state, phase1, opts, "accept")

        recorded = OutputVersion.from_dict((yield call_state(
            context, twin, StateOp.RECORD_OUTPUT, RecordOutput(names.INTER_CLOUD_TOKEN, new, token.producer, True))))
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

        versions = {names.INTER_CLOUD_TOKEN: recorded.version}
        signal_state(context, twin, StateOp.RECORD_APPLIED,
                     RecordApplied({c: versions for c in [*receivers, *senders]}))
        yield from publish(context, twin, [output_event(twin, names.INTER_CLOUD_TOKEN, recorded.version,
                                                        token.producer, new, True)])
        result = RotateResult(twin, recorded.version, len(receivers), len(senders))
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
    if error or result is None:
        raise OperationFailed(f"[permanent] {error}")
    return result.to_dict()
