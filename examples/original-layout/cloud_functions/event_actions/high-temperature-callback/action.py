"""Event action `high-temperature-callback`: runs when temperature-sensor-1 reads 30 degrees.

Called with `{"e": the fired rule, "reading": the reading}`; what it returns is logged by the twin.
"""

import logging

log = logging.getLogger(__name__)


def action(event: dict) -> dict:
    reading = event.get("reading", {})
    log.warning("high temperature on %s: %s", reading.get("device_id"), reading.get("temperature"))
    return {"handled": "high-temperature", "device": reading.get("device_id"), "temperature": reading.get("temperature")}
