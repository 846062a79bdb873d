"""The activity functions: thin wrappers that find the provider, call it, classify failures.

None of them blocks on a slow cloud operation: a provider starts it and returns a pending
handle; the orchestrator polls on a durable timer. A failure is raised as text that starts
with `[transient]` or `[permanent]` and names the resource, with secret values redacted,
because that text is all the orchestrator receives.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df

from activities import events as event_publisher
from activities import secrets
from activities.providers.control import new_secret
from activities.registry import Provider, provider_for
from shared.contracts import is_secret_output
from shared.engine import names
from shared.engine.errors import classify, encode
from shared.engine.plan import engine_plan
from shared.engine.types import EnsureResult, ResourceCall, TwinEvent

log = logging.getLogger("activities")
bp = df.Blueprint()


def _secrets(call: ResourceCall) -> list[str]:
    return [v for v in call.settings.values() if v] + [v for v in call.current.values() if v]


def _run(operation: str, payload: dict[str, Any], fn: Callable[[Provider, ResourceCall], Any]) -> Any:
    """Run one provider operation. Secrets cross this boundary as Key Vault references when a
    vault is configured (`activities/secrets.py`): resolved for the provider, stored for history."""
    call = recorded = ResourceCall.from_dict(payload)
    started = time.monotonic()
    try:
        store = secrets.configured_store()
        if operation == "ensure" and store is not None:
            recorded = replace(recorded, current=_kept_secrets(recorded, store))
        call = replace(recorded, settings=secrets.resolve(recorded.settings, store),
                       current=secrets.resolve(recorded.current, store))
        result = fn(provider_for(call.resource.provider, call.resource.kind), call)
        if isinstance(result, dict) and isinstance(result.get("outputs"), dict):
            result["outputs"] = secrets.protect(call.twin, result["outputs"], recorded.current, call.current, store)
        if operation == "delete" and store is not None and isinstance(result, dict) and not result.get("pending"):
            for name in call.resource.produces:
                if secrets.is_ref(recorded.current.get(name)):
                    store.delete(call.twin, name)
    except Exception as exc:
        text = encode(classify(exc), call.resource.id, _secrets(call))
        log.warning("%s %s failed: %s", operation, call.resource.id, text)
        raise RuntimeError(text) from None
    outcome = result.get("action") if isinstance(result, dict) else result
    if isinstance(result, dict) and result.get("pending"):
        outcome = "pending"
    log.info("%s %s -> %s (%.0f ms)", operation, call.resource.id, outcome, (time.monotonic() - started) * 1000)
    return result


def _kept_secrets(call: ResourceCall, store: secrets.SecretStore) -> dict[str, str]:
    """The recorded outputs, plus the vault's latest value of each secret output the state has no
    record of (the control-plane state was lost or recreated): a token the clouds already hold is
    kept rather than replaced, so a re-run writes nothing."""
    current = dict(call.current)
    for name in call.resource.produces:
        if is_secret_output(name) and not current.get(name):
            kept = store.latest(call.twin, name)
            if kept is not None:
                current[name] = kept[0]
    return current


def _done(result: EnsureResult) -> dict[str, Any]:
    return result.to_dict()


@bp.activity_trigger(input_name="payload", activity=names.PLAN_BUILD)
def plan_build(payload: dict[str, Any]) -> dict[str, Any]:
    """Input {"spec": {...}}: the engine's plan (resources, outputs, wires, problems)."""
    try:
        return engine_plan(payload.get("spec"))
    except Exception as exc:
        raise RuntimeError(encode(classify(exc), "plan")) from None


@bp.activity_trigger(input_name="payload", activity=names.RESOURCE_ENSURE)
def resource_ensure(payload: dict[str, Any]) -> dict[str, Any]:
    return _run("ensure", payload, lambda p, c: _done(p.ensure(c)))


@bp.activity_trigger(input_name="payload", activity=names.RESOURCE_POLL)
def resource_poll(payload: dict[str, Any]) -> dict[str, Any]:
    return _run("poll", payload, lambda p, c: _done(p.poll(c)))


@bp.activity_trigger(input_name="payload", activity=names.RESOURCE_READ)
def resource_read(payload: dict[str, Any]) -> dict[str, Any]:
    """What exists now, plus `observed_at` (UTC, taken before the read): of two refreshes racing,
    the state keeps the later observation, whichever finishes last."""
    observed_at = datetime.now(UTC).isoformat()
    return {**_run("read", payload, lambda p, c: p.read(c).to_dict()), "observed_at": observed_at}


@bp.activity_trigger(input_name="payload", activity=names.RESOURCE_DELETE)
def resource_delete(payload: dict[str, Any]) -> dict[str, Any]:
    return _run("delete", payload, lambda p, c: _done(p.delete(c)))


@bp.activity_trigger(input_name="payload", activity=names.SETTINGS_APPLY)
def settings_apply(payload: dict[str, Any]) -> dict[str, Any]:
    """A consumer's read-modify-write of its wired settings; {"changed": bool}."""
    return _run("apply_settings", payload, lambda p, c: {"changed": bool(p.apply_settings(c))})


@bp.activity_trigger(input_name="payload", activity=names.EVENTS_PUBLISH)
def events_publish(payload: list[dict[str, Any]]) -> int:
    try:
        return event_publisher.publish(TwinEvent.from_dict(e) for e in payload)
    except Exception as exc:
        raise RuntimeError(encode(classify(exc), "events")) from None


@bp.activity_trigger(input_name="payload", activity=names.SECRET_GENERATE)
def secret_generate(payload: dict[str, Any]) -> str:
    """A fresh secret (randomness is a side effect: never generated inside an orchestrator).
    Input {"twin", "output"}: with a vault configured, the secret is stored there and its
    reference returned, so the value never enters the orchestration's history."""
    try:
        store = secrets.configured_store()
        value = new_secret()
        if store is None:
            return value
        return store.put(str(payload["twin"]), str(payload.get("output") or names.INTER_CLOUD_TOKEN), value)
    except Exception as exc:
        raise RuntimeError(encode(classify(exc), "secret")) from None
