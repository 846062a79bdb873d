"""The telemetry path inside the twin: dispatcher -> (connector ->) processor -> persister.

The adapters give each step its neighbours as callables (a Lambda invoke by name on AWS, an
HTTP call or an in-process call on Azure), so the order of work and its failure rules live here
once: the persister writes storage first (idempotent), then updates the twin when it owns that
job, and only then acknowledges; a failed twin update fails the call with the reading stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from payload_functions.common.envelope import build_envelope
from payload_functions.common.errors import PayloadError, UpstreamError
from payload_functions.common.http import post_json
from payload_functions.common.settings import InvalidSetting, Settings
from payload_functions.common.telemetry import normalise, values_of
from payload_functions.core.ports import HotStore
from payload_functions.core.usercode import call_process, packaged_processor
from shared.contracts import (
    AdtPush,
    DigitalTwinInfo,
    Function,
    Layer,
    Setting,
    Telemetry,
    TwinUpdatePath,
    twin_update_path,
)

log = logging.getLogger("payload_functions")

class TwinUpdateFailed(PayloadError):
    """The reading is stored, but the twin was not updated: the call fails so it is retried."""

    def __init__(self, stored: str, reason: str) -> None:
        super().__init__(502, f"reading {stored} is stored, but the twin update failed: {reason}")


def target_function(settings: Settings) -> Function:
    raw = settings.require(Setting.TARGET_FUNCTION)
    try:
        target = Function(raw)
    except ValueError:
        target = None
    if target not in (Function.PROCESSOR, Function.CONNECTOR):
        raise InvalidSetting(str(Setting.TARGET_FUNCTION), f"expected {Function.PROCESSOR} or {Function.CONNECTOR}")
    return Function(raw)


def dispatch(
    raw: Any, settings: Settings, call: Mapping[Function, Callable[[dict[str, Any]], Any]], path: str = "body"
) -> dict[str, Any]:
    """L1: normalise and route to the processor (L2 here) or the connector (L2 elsewhere)."""
    reading = normalise(raw, path)
    target = target_function(settings)
    call[target](reading)
    return {"status": "dispatched", "target": str(target), "device_id": reading[Telemetry.DEVICE_ID],
            "timestamp": reading[Telemetry.TIMESTAMP]}


def connect(raw: Any, settings: Settings, source_cloud: str) -> dict[str, Any]:
    """L1 -> remote L2 ingestion, in the envelope, with the token."""
    reading = normalise(raw)
    url = settings.require(Setting.REMOTE_INGESTION_URL)
    token = settings.require(Setting.INTER_CLOUD_TOKEN)
    envelope = build_envelope(reading, source_cloud, str(Layer.L2))
    result = post_json(url, envelope, token=token)
    return {"status": "forwarded", "device_id": reading[Telemetry.DEVICE_ID], "remote_status": result.status,
            "trace_id": envelope["trace_id"]}


UserProcessor = Callable[[str], Callable[[dict[str, Any]], Any] | None]
"""Device id -> how to run that device's own processing, or None (pass through)."""


def user_event(reading: Mapping[str, Any]) -> dict[str, Any]:
    """What a user's `process(event)` gets: the reading, with the original project's names for
    its device and time (`iotDeviceId`, `time`) beside ours (`device_id`, `timestamp`)."""
    return {**reading, "iotDeviceId": reading[Telemetry.DEVICE_ID], "time": reading[Telemetry.TIMESTAMP]}


def process(raw: Any, persist: Callable[[dict[str, Any]], Any], user: UserProcessor = packaged_processor) -> dict[str, Any]:
    """L2: run the device's own processing (default: pass through), then hand on to the
    persister. `user` finds it: in this package by default (AWS: a Lambda per device carries
    it); the Azure processor calls the user-functions app instead. What the user's `process`
    returns is the reading; its device and time stay those of the reading it was given."""
    reading = normalise(raw)
    device = str(reading[Telemetry.DEVICE_ID])
    fn = user(device)
    if fn is not None:
        result = call_process(fn, user_event(reading), device)
        reading = normalise({**result, str(Telemetry.DEVICE_ID): device,
                             str(Telemetry.TIMESTAMP): reading[Telemetry.TIMESTAMP]})
    persist(reading)
    return {"status": "processed", "device_id": reading[Telemetry.DEVICE_ID],
            "timestamp": reading[Telemetry.TIMESTAMP], "custom": fn is not None}


def _placement(info: DigitalTwinInfo, layer: Layer) -> str:
    provider = info.providers.get(str(layer))
    if not provider:
        raise InvalidSetting(str(Setting.DIGITAL_TWIN_INFO), f"providers lacks {layer}")
    return provider


def persist(
    raw: Any,
    settings: Settings,
    provider: str,
    store: Callable[[], HotStore],
    patch_twin: Callable[[str, Mapping[str, Any], str], Mapping[str, Any]] | None = None,
    check_events: Callable[[dict[str, Any]], Any] | None = None,
) -> dict[str, Any]:
    """Store (local hot store, or the remote hot writer), then the twin update this persister owns,
    then the optional event check."""
    reading = normalise(raw)
    info = settings.twin_info()
    key = f"{reading[Telemetry.DEVICE_ID]}@{reading[Telemetry.TIMESTAMP]}"
    hot = _placement(info, Layer.L3_HOT)
    if hot == provider:
        store().put(reading)
        stored = "local"
    else:
        url = settings.require(Setting.REMOTE_WRITER_URL)
        post_json(url, build_envelope(reading, provider, str(Layer.L3_HOT)), token=settings.require(Setting.INTER_CLOUD_TOKEN))
        stored = "remote"
    result: dict[str, Any] = {"status": "stored", "stored": stored, "device_id": reading[Telemetry.DEVICE_ID],
                              "timestamp": reading[Telemetry.TIMESTAMP]}
    path = twin_update_path(_placement(info, Layer.L1), _placement(info, Layer.L2), _placement(info, Layer.L4))
    try:
        if path == TwinUpdatePath.REMOTE_ADT_PUSHER and provider != "azure":
            url = settings.require(Setting.REMOTE_ADT_PUSHER_URL)
            token = settings.require(Setting.INTER_CLOUD_TOKEN)
            body = {str(AdtPush.DEVICE_ID): reading[Telemetry.DEVICE_ID], str(AdtPush.TELEMETRY): values_of(reading),
                    str(AdtPush.TIMESTAMP): reading[Telemetry.TIMESTAMP]}
            answer = post_json(url, build_envelope(body, provider, str(Layer.L4)), token=token)
            result["twin"] = answer.body if isinstance(answer.body, dict) else {"status": answer.status}
        elif path == TwinUpdatePath.PERSISTER_DIRECT and provider == "azure":
            if patch_twin is None:
                raise UpstreamError("no twin patcher is available on this cloud")
            # The reading's time orders writes on the twin (its properties' sourceTime).
            result["twin"] = dict(patch_twin(str(reading[Telemetry.DEVICE_ID]), values_of(reading),
                                             str(reading[Telemetry.TIMESTAMP])))
    except PayloadError as exc:
        raise TwinUpdateFailed(key, exc.message) from None
    if check_events is not None and settings.flag(Setting.USE_EVENT_CHECKING):
        try:
            result["events"] = check_events(reading)
        except Exception as exc:  # events are best effort: the reading and the twin are done
            log.warning("persister: event check for %s failed: %s", key, getattr(exc, "message", type(exc).__name__))
            result["events"] = {"error": getattr(exc, "message", type(exc).__name__)}
    return result
