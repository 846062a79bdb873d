"""The activity functions: thin wrappers that find the provider, call it, classify failures.

None of them blocks on a slow cloud operation: a provider starts it and returns a pending
handle; the orchestrator polls on a durable timer. A failure is raised as text that starts
with `[transient]` or `[permanent]` and names the resource, with secret values redacted,
because that text is all the orchestrator receives.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import azure.durable_functions as df

from activities import events as event_publisher
from activities import secrets
from activities.providers.control import new_secret
from activities.registry import Provider, configured_modules, load_providers, provider_for
from shared.contracts import is_secret_output
from shared.engine import names
from shared.engine.errors import classify, encode
from shared.engine.types import (
    EnsureResult,
    EventBatch,
    Observation,
    Payload,
    Pending,
    ReadResult,
    ResourceCall,
    SecretRequest,
    SettingsApplied,
)

log = logging.getLogger("activities")
bp = df.Blueprint()
R = TypeVar("R", bound=Payload)


# Set once the warm-up below has ended (whether or not it succeeded).
warmed_up = threading.Event()


def _warm_up() -> None:
    """Import the provider modules (and the SDKs they load) and let each create its clients (a
    module's `warm_up()`) while the app is otherwise idle, so the first activity after a cold start
    does not pay for them on a deployment's critical path."""
    try:
        load_providers()
        for name in configured_modules():
            warm = getattr(sys.modules.get(name), "warm_up", None)
            if callable(warm):
                warm()
    except Exception as exc:  # reported again, with its cause, by the first activity that needs them
        log.debug("provider warm-up failed: %s", exc)
    finally:
        # What the imports and clients made lives as long as the process: moved out of the
        # collector's generations (garbage first collected, while the host is idle), a full
        # collection no longer walks those ~200,000 objects (a 100 ms pause of every thread,
        # measured during a deployment on a 2-core host).
        gc.collect()
        gc.freeze()
        warmed_up.set()


threading.Thread(target=_warm_up, name="provider-warm-up", daemon=True).start()


def _secrets(call: ResourceCall) -> list[str]:
    return [v for v in call.settings.values() if v] + [v for v in call.current.values() if v]


def _protected(result: R, call: ResourceCall, recorded: ResourceCall, store: secrets.SecretStore | None) -> R:
    outputs = getattr(result, "outputs", None)
    if isinstance(outputs, dict) and outputs:
        return replace(result, outputs=secrets.protect(call.twin, outputs, recorded.current,  # type: ignore[type-var]
                                                        call.current, store))
    return result


def _run(operation: str, payload: dict[str, Any], fn: Callable[[Provider, ResourceCall], R]) -> R:
    """Run one provider operation. Secrets cross this boundary as Key Vault references when a
    vault is configured (`activities/secrets.py`): resolved for the provider, stored for history."""
    call = recorded = ResourceCall.from_dict(payload)
    started = time.monotonic()
    try:
        store = secrets.configured_store()
        if operation == "ensure" and store is not None:
            recorded = replace(recorded, current=_kept_secrets(recorded, store))
        call = replace(recorded, settings=secrets.resolve(recorded.settings, store),
                       current=secrets.resolve(recorded.current, store, missing_ok=operation == "delete"))
        result = _protected(fn(provider_for(call.resource.provider, call.resource.kind), call), call, recorded, store)
        if operation == "delete" and store is not None and isinstance(result, EnsureResult) and result.done:
            for name in call.resource.produces:
                if secrets.is_ref(recorded.current.get(name)):
                    store.delete(call.twin, name)
    except Exception as exc:
        text = encode(classify(exc), call.resource.id, _secrets(call))
        log.warning("%s %s failed: %s", operation, call.resource.id, text)
        raise RuntimeError(text) from None
    outcome: Any = result
    if isinstance(result, EnsureResult):
        outcome = "pending" if result.pending is not None else result.action
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


@bp.activity_trigger(input_name="payload", activity=names.RESOURCE_ENSURE)
def resource_ensure(payload: dict[str, Any]) -> dict[str, Any]:
    """`ResourceCall` -> `EnsureResult`."""
    return _run("ensure", payload, lambda p, c: p.ensure(c)).to_dict()


@bp.activity_trigger(input_name="payload", activity=names.RESOURCE_POLL)
def resource_poll(payload: dict[str, Any]) -> dict[str, Any]:
    """`ResourceCall` (with `pending`) -> `EnsureResult`."""
    return _run("poll", payload, lambda p, c: p.poll(c)).to_dict()


@bp.activity_trigger(input_name="payload", activity=names.RESOURCE_READ)
def resource_read(payload: dict[str, Any]) -> dict[str, Any]:
    """`ResourceCall` -> `Observation`: what exists now, plus `observed_at` (UTC, taken before the
    read): of two refreshes racing, the state keeps the later observation, whichever finishes last."""
    observed_at = datetime.now(UTC).isoformat()
    seen: ReadResult = _run("read", payload, lambda p, c: p.read(c))
    return Observation(exists=seen.exists, observed_at=observed_at, outputs=dict(seen.outputs)).to_dict()


@bp.activity_trigger(input_name="payload", activity=names.RESOURCE_DELETE)
def resource_delete(payload: dict[str, Any]) -> dict[str, Any]:
    """`ResourceCall` -> `EnsureResult` (`deleted`, `absent` or pending)."""
    return _run("delete", payload, lambda p, c: p.delete(c)).to_dict()


@bp.activity_trigger(input_name="payload", activity=names.SETTINGS_APPLY)
def settings_apply(payload: dict[str, Any]) -> dict[str, Any]:
    """`ResourceCall` -> `SettingsApplied`: a consumer's read-modify-write of its wired settings
    (pending while the cloud rolls them out)."""
    return _run("apply_settings", payload, lambda p, c: _settings_applied(p.apply_settings(c))).to_dict()


def _settings_applied(outcome: bool | Pending) -> SettingsApplied:
    if isinstance(outcome, Pending):
        return SettingsApplied(True, outcome)
    return SettingsApplied(bool(outcome))


@bp.activity_trigger(input_name="payload", activity=names.EVENTS_PUBLISH)
def events_publish(payload: dict[str, Any]) -> int:
    """`EventBatch` -> the number of events sent."""
    try:
        return event_publisher.publish(EventBatch.from_dict(payload).events)
    except Exception as exc:
        raise RuntimeError(encode(classify(exc), "events")) from None


@bp.activity_trigger(input_name="payload", activity=names.SECRET_GENERATE)
def secret_generate(payload: dict[str, Any]) -> str:
    """`SecretRequest` -> a fresh secret (randomness is a side effect: never generated inside an
    orchestrator). With a vault configured, the secret is stored there and its reference
    returned, so the value never enters the orchestration's history."""
    try:
        request = SecretRequest.from_dict(payload)
        store = secrets.configured_store()
        value = new_secret()
        if store is None:
            return value
        return store.put(request.twin, request.output, value)
    except Exception as exc:
        raise RuntimeError(encode(classify(exc), "secret")) from None
