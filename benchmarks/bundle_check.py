"""What checking a bundle costs the API, before anything is stored or started.

Prints, for bundles of 10, 100 and 999 devices (the most the 2,000-entry limit allows), each with
its own processor folder (two Python files, about 1 KB): the zip's size,
the time `open_bundle` takes (reading every entry, parsing every Python file with `ast`, the
spec, the canonical zip and its digest), the time `build_plan` takes with the bundle's code
next to the same plan without it, and their ratio. Each figure is the best of several runs.

Run: `.venv/bin/python benchmarks/bundle_check.py`
"""

from __future__ import annotations

import gc
import io
import json
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.bundle import MAX_ENTRIES, open_bundle  # noqa: E402
from shared.plan import build_plan  # noqa: E402

PROCESS = """from .calibration import corrected


def process(event: dict) -> dict:
    if isinstance(event.get("temperature"), (int, float)):
        event["rawTemperature"] = event["temperature"]
        event["temperature"] = corrected(event["temperature"])
    return event
"""
CALIBRATION = """OFFSET_C = {offset}


def corrected(celsius: float) -> float:
    return round(celsius + OFFSET_C, 3)
"""


def bundle(devices: int) -> bytes:
    spec: dict[str, Any] = {
        "twin": {"name": "bench-twin"},
        "providers": {"layer_1_provider": "aws", "layer_2_provider": "aws", "layer_3_hot_provider": "aws",
                      "layer_3_cold_provider": "aws", "layer_3_archive_provider": "aws",
                      "layer_4_provider": "azure", "layer_5_provider": "aws"},
        "devices": [{"id": f"sensor-{i:05d}", "properties": [{"name": "temperature", "dataType": "DOUBLE"}]}
                    for i in range(devices)],
        "hierarchy": {"azure": {"models": [], "twins": [], "relationships": []}},
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("twin.json", json.dumps(spec))
        for i in range(devices):
            folder = f"lambda_functions/processors/sensor-{i:05d}"
            archive.writestr(f"{folder}/process.py", PROCESS)
            archive.writestr(f"{folder}/calibration.py", CALIBRATION.format(offset=i / 100))
    return buffer.getvalue()


def best(work: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    largest = (MAX_ENTRIES - 1) // 2  # twin.json and two files per device
    print(f"{'devices':>8} {'entries':>8} {'zip KB':>8} {'check ms':>9} {'plan ms':>8} {'plan+code ms':>13} "
          f"{'ratio':>6}")
    for devices in (10, 100, largest):
        data = bundle(devices)
        entries = len(zipfile.ZipFile(io.BytesIO(data)).namelist())
        runs = 5 if devices <= 100 else 3
        check = best(lambda data=data: open_bundle(data), runs)
        opened = open_bundle(data)
        plain = best(lambda opened=opened: build_plan(opened.spec), runs)
        with_code = best(lambda opened=opened: build_plan(opened.spec, opened.code), runs)
        print(f"{devices:>8,} {entries:>8,} {len(data) / 1024:>8.0f} {check * 1000:>9.1f} {plain * 1000:>8.1f} "
              f"{with_code * 1000:>13.1f} {with_code / plain:>6.2f}")


if __name__ == "__main__":
    main()
