"""temperature-sensor-1's processing: correct its reading before it is stored and reaches the twin.

Called with the reading (`iotDeviceId`, `time` and the values, plus `device_id`, `timestamp`);
returns the reading to store. Its sibling module is imported relatively: the folder is a package.
"""

from .calibration import OFFSET_C, corrected


def process(event: dict) -> dict:
    if isinstance(event.get("temperature"), (int, float)):
        event["rawTemperature"] = event["temperature"]
        event["temperature"] = corrected(event["temperature"])
        event["calibrationOffset"] = OFFSET_C
    return event
