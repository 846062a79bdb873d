"""L4 ADT Updater (all-Azure path): IoT Hub telemetry from Event Grid -> the device's twin, with
the reading's timestamp as the properties' `sourceTime` (merged and paced per twin, newest wins)."""

from __future__ import annotations

from typing import Any

import azure.functions as func

from payload_functions.azure.digitaltwins import ADT_READS, TwinPatcher
from payload_functions.azure.runtime import telemetry_of, triggered
from payload_functions.common.settings import Settings
from payload_functions.common.telemetry import normalise, values_of
from shared.contracts import Function, Setting, Telemetry

FUNCTION = Function.ADT_UPDATER
READS = frozenset({Setting.DIGITAL_TWIN_INFO, *ADT_READS})

bp = func.Blueprint()


def update(event: func.EventGridEvent, settings: Settings) -> dict[str, Any]:
    reading = normalise(telemetry_of(event, lambda: settings.twin_info().twin_name), "event.data.body")
    return TwinPatcher(settings).patch(
        str(reading[Telemetry.DEVICE_ID]), values_of(reading), str(reading[Telemetry.TIMESTAMP])
    ).to_json()


@bp.function_name(name="adt-updater")
@bp.event_grid_trigger(arg_name="event")
def adt_updater_function(event: func.EventGridEvent) -> None:
    settings = Settings(READS)
    triggered(str(FUNCTION), lambda: update(event, settings))
