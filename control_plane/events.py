"""Event-triggered propagation: `twin.output.changed` starts `propagate_outputs` for that twin.

Level-triggered: the orchestration re-reads the latest outputs, so the event only says *which
twin* and *which output* to look at; duplicates, late and reordered events converge. If a
mutating operation holds the twin's lock, `propagate_outputs` notes the change in the state
entity and that operation applies it before it unlocks (see `orchestrators/propagate.py`).

Accepts CloudEvents 1.0 (what the control plane publishes) and Event Grid schema events.
"""

from __future__ import annotations

import logging
from typing import Any

import azure.durable_functions as df

from activities import names
from control_plane.operations import engine_options, instance_id
from shared.contracts import EVENT_SOURCE_PREFIX, OutputChangedData

log = logging.getLogger("control_plane.events")
bp = df.Blueprint()


def twin_of(source: str, data: dict[str, Any]) -> str | None:
    """The twin an event is about: from `source` (`/twins/{twin}`) or the data's `twin`."""
    if source.startswith(EVENT_SOURCE_PREFIX) and len(source) > len(EVENT_SOURCE_PREFIX):
        return source[len(EVENT_SOURCE_PREFIX):].split("/", 1)[0]
    twin = data.get("twin")
    return twin if isinstance(twin, str) and twin else None


def _fields(event: Any) -> tuple[str, str, dict[str, Any]]:
    """(type, source, data) of a `func.CloudEvent` or `func.EventGridEvent`."""
    event_type = getattr(event, "type", None) or getattr(event, "event_type", None) or ""
    source = getattr(event, "source", None) or getattr(event, "subject", None) or ""
    try:
        data = event.get_json()
    except (ValueError, TypeError):
        data = None
    return str(event_type), str(source), data if isinstance(data, dict) else {}


@bp.event_grid_trigger(arg_name="event")
@bp.durable_client_input(client_name="client")
async def twin_events(event: Any, client: df.DurableOrchestrationClient) -> None:
    event_type, source, data = _fields(event)
    if event_type != names.EVENT_OUTPUT_CHANGED:
        return
    twin = twin_of(source, data)
    output = data.get(OutputChangedData.OUTPUT)
    if twin is None or not isinstance(output, str):
        log.warning("ignoring %s without a twin or output name (source %r)", event_type, source)
        return
    instance = await client.start_new(
        names.PROPAGATE_OUTPUTS,
        instance_id(twin, "propagate"),
        {"twin": twin, "outputs": [output], "options": engine_options()},
    )
    log.info("output %s of twin %s changed (v%s): propagation %s", output, twin,
             data.get(OutputChangedData.VERSION), instance)
