"""Event triggers: the twin's own events, and Azure Resource Manager's.

`twin_events`: `twin.output.changed` starts `propagate_outputs` for that twin.

Level-triggered: the orchestration re-reads the latest outputs, so the event only says *which
twin* and *which output* to look at; duplicates, late and reordered events converge. While a
deploy, destroy or rotation holds the twin's lock no propagation is started: the holder may not
unlock while a consumer is behind (`orchestrators/twin_state.py`), so it applies the change.

Accepts CloudEvents 1.0 (what the control plane publishes) and Event Grid schema events.

`azure_resource_events`: `Microsoft.Resources.ResourceWriteSuccess` / `ResourceDeleteSuccess`
(an Event Grid system topic on the subscription or a twin's resource group delivers them) for a
resource that produces a twin's outputs start `refresh_outputs` for that resource: a change made
outside a deployment (the Digital Twins instance recreated with a new host name) is read,
recorded and propagated. Our own deployments raise these events too; the refresh then waits for
the deployment and finds nothing changed.
"""

from __future__ import annotations

import logging
from typing import Any

import azure.durable_functions as df

from control_plane.operations import BLOCKING, engine_options, instance_id, read_state
from shared.contracts import EVENT_SOURCE_PREFIX, ArmEventType, OutputChangedData
from shared.engine import names
from shared.engine.infrastructure import WATCH_FUNCTION
from shared.engine.orchestrations import PropagateInput, RefreshInput
from shared.engine.state import TwinState
from shared.naming import AzureNaming

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
    state = TwinState.from_dict(await read_state(client, twin) or {})
    if state.lock is not None and state.lock.operation in BLOCKING:
        log.info("output %s of twin %s changed during %s %s, which applies it", output, twin,
                 state.lock.operation, state.lock.instance)
        return
    instance = await client.start_new(
        names.PROPAGATE_OUTPUTS,
        instance_id(twin, "propagate"),
        PropagateInput(twin, (output,), engine_options()).to_dict(),
    )
    log.info("output %s of twin %s changed (v%s): propagation %s", output, twin,
             data.get(OutputChangedData.VERSION), instance)


def resource_group_of(resource_id: str) -> tuple[str, list[str]] | None:
    """(resource group, the path after `providers/`) of an ARM resource id, or None."""
    parts = resource_id.strip("/").split("/")
    lower = [p.lower() for p in parts]
    if len(parts) < 4 or lower[0] != "subscriptions" or lower[2] != "resourcegroups":
        return None
    rest = parts[5:] if len(parts) > 4 and lower[4] == "providers" else []
    return parts[3], rest


def producers_of(state: TwinState, group: str, provider_path: list[str]) -> list[str]:
    """Recorded Azure producers that are this ARM resource (same resource group and name; the
    resource itself, not one of its children such as `sites/x/config/appsettings`)."""
    if len(provider_path) != 3:  # Namespace/type/name: a top-level resource
        return []
    name = provider_path[2].lower()
    return sorted(
        rid for rid, entry in state.resources.items()
        if entry.provider == "azure" and entry.produces
        and str(entry.config.get("resource_group", "")).lower() == group.lower()
        and str(entry.config.get("name", "")).lower() == name
    )


@bp.function_name(WATCH_FUNCTION)
@bp.event_grid_trigger(arg_name="event")
@bp.durable_client_input(client_name="client")
async def azure_resource_events(event: Any, client: df.DurableOrchestrationClient) -> None:
    event_type, _, data = _fields(event)
    subject = str(getattr(event, "subject", None) or data.get("resourceUri") or "")
    if event_type not in set(ArmEventType):
        return
    located = resource_group_of(subject)
    twin = AzureNaming.twin_of_resource_group(located[0]) if located else None
    if located is None or twin is None:
        return
    rids = producers_of(TwinState.from_dict(await read_state(client, twin) or {}), *located)
    if not rids:
        return
    instance = await client.start_new(
        names.REFRESH_OUTPUTS,
        instance_id(twin, "refresh"),
        RefreshInput(twin, tuple(rids), f"{event_type} {subject}", engine_options()).to_dict(),
    )
    log.info("%s for %s (twin %s): refresh %s", event_type.rsplit(".", 1)[-1], subject, twin, instance)
