"""Publishing the twin's CloudEvents to the Event Grid topic named by configuration.

App settings:
- `TWIN_EVENTS_ENDPOINT`: the topic endpoint. On Azure, the custom topic's
  `https://<topic>.<region>-1.eventgrid.azure.net/api/events`; locally, this same app's Event Grid
  webhook on the local host (`http://127.0.0.1:PORT/runtime/webhooks/eventgrid?functionName=...`)
  or the sandbox's topic. Several endpoints may be given, comma-separated (each gets every event).
- `TWIN_EVENTS_KEY`: the topic access key; without it the control plane's identity is used.
Unset endpoint means events are not published (logged once), so a bare local run still works.

The client is the real `azure-eventgrid` `EventGridPublisherClient` in every case.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from activities.clouds import clouds_from_environ
from shared.contracts import ControlPlaneSetting
from shared.engine.names import event_source
from shared.engine.types import TwinEvent

log = logging.getLogger("activities.events")
_warned = False


def configured_endpoints(environ: dict[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    return [e.strip() for e in (env.get(ControlPlaneSetting.EVENTS_ENDPOINT) or "").split(",") if e.strip()]


def publish(events: Iterable[TwinEvent]) -> int:
    """Send the events as one CloudEvents batch to each configured endpoint; returns events sent."""
    global _warned
    from azure.core.messaging import CloudEvent

    batch = [
        CloudEvent(source=event_source(e.twin), type=e.type, data=e.data, id=e.id) for e in events
    ]
    if not batch:
        return 0
    endpoints = configured_endpoints()
    if not endpoints:
        if not _warned:
            log.warning("%s is not set: twin events are not published", ControlPlaneSetting.EVENTS_ENDPOINT)
            _warned = True
        return 0
    clouds = clouds_from_environ()
    key = os.environ.get(ControlPlaneSetting.EVENTS_KEY) or None
    for endpoint in endpoints:
        client = clouds.event_grid_publisher(endpoint, key)
        try:
            client.send(batch, **clouds.per_call_kwargs(endpoint))
        finally:
            client.close()
    return len(batch)
