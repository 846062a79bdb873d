"""pressure-sensor-1's processing: its density channel reports negative values when idle; store 0."""


def process(event: dict) -> dict:
    density = event.get("density")
    if isinstance(density, (int, float)) and density < 0:
        event["density"] = 0
    return event
