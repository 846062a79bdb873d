"""temperature-sensor-2's processing: flag readings above the sensor's rated maximum."""

RATED_MAX_C = 60.0


def process(event: dict) -> dict:
    temperature = event.get("temperature")
    if isinstance(temperature, (int, float)):
        event["overRated"] = temperature > RATED_MAX_C
    return event
