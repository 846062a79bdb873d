"""How `build_plan` scales with the number of devices.

Prints the plan build time for 10, 100, 1,000 and 10,000 devices and the ratio between
consecutive sizes. Each size grows tenfold, so linear growth shows as a ratio near 10 (fixed
per-plan work makes the smaller ratios lower). A baseline column times plain allocation of the
same number of small dicts, so a machine whose memory system grows superlinearly shows it there
too. Placement: the mixed case of the reference
template with AWS L4 (so per-device IoT things, processors and TwinMaker component types are all
planned) and two properties per device. Each figure is the best of several runs, each started
after a full garbage collection, which filters out scheduler noise; the spec is validated once, outside the timed region.

Run: `.venv/bin/python benchmarks/plan_scale.py`
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.plan import build_plan  # noqa: E402
from shared.spec import TwinSpec  # noqa: E402

SIZES = (10, 100, 1_000, 10_000)


def spec_with(devices: int) -> TwinSpec:
    data: dict[str, Any] = {
        "twin": {"name": "bench-twin"},
        "providers": {
            "layer_1_provider": "aws",
            "layer_2_provider": "azure",
            "layer_3_hot_provider": "aws",
            "layer_3_cold_provider": "gcp",
            "layer_3_archive_provider": "azure",
            "layer_4_provider": "aws",
            "layer_5_provider": "azure",
        },
        "devices": [
            {
                "id": f"sensor-{i:05d}",
                "properties": [
                    {"name": "temperature", "dataType": "DOUBLE", "initValue": 20.0},
                    {"name": "humidity", "dataType": "DOUBLE"},
                ],
                "constProperties": [{"name": "serial", "dataType": "STRING", "value": f"SN-{i}"}],
            }
            for i in range(devices)
        ],
    }
    return TwinSpec.model_validate(data)


def best_time(spec: TwinSpec, repeats: int) -> tuple[float, int, int]:
    best = float("inf")
    resources = wires = 0
    for _ in range(repeats):
        # Start each run from a clean heap so one run's garbage is not billed to the next.
        gc.collect()
        start = time.perf_counter()
        plan = build_plan(spec)
        plan.topological_order()
        best = min(best, time.perf_counter() - start)
        resources, wires = len(plan.resources), len(plan.wires)
    return best, resources, wires


def baseline_time(size: int, repeats: int) -> float:
    """Building `2 * size` small dicts (the plan's per-device allocation, without its logic).
    On a small, shared machine even this grows faster than linearly once the working set leaves
    the CPU caches, so the plan's ratio is best read next to this one."""
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        table = {}
        for i in range(2 * size):
            table[f"aws/L1/device-{i}"] = {"name": f"d-{i}", "config": {"i": i, "l": [i]}, "needs": ["x"]}
        best = min(best, time.perf_counter() - start)
        del table
    return best


def main() -> int:
    print(f"{'devices':>8} {'resources':>10} {'wires':>8} {'plan (ms)':>10} {'us/device':>10} {'ratio':>7}"
          f" {'baseline (ms)':>14} {'baseline ratio':>15}")
    previous: tuple[float, float] | None = None
    for size in SIZES:
        spec = spec_with(size)
        repeats = 15 if size <= 1_000 else 5
        seconds, resources, wires = best_time(spec, repeats)
        base = baseline_time(size, repeats)
        ratio = base_ratio = ""
        if previous is not None:
            ratio, base_ratio = f"{seconds / previous[0]:.2f}", f"{base / previous[1]:.2f}"
        per_device = seconds / size * 1e6
        print(f"{size:>8} {resources:>10} {wires:>8} {seconds * 1000:>10.2f} {per_device:>10.1f} {ratio:>7}"
              f" {base * 1000:>14.2f} {base_ratio:>15}")
        previous = (seconds, base)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
