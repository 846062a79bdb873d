"""What the Google Cloud side adds to `python -m sandbox serve`'s start.

Starts `python -m sandbox serve` as a subprocess, alternately with and without `--no-gcp`, and times
from launch to the moment endpoints.json appears (the sandbox is serving), then stops it with
SIGTERM. Prints each run, the median of each variant and their difference and ratio. Runs
alternate so that a busy machine slows both variants alike.

Run: `.venv/bin/python benchmarks/sandbox_startup.py [RUNS]` (default 5 of each).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_seconds(extra: list[str]) -> float:
    with tempfile.TemporaryDirectory() as state:
        endpoints = Path(state) / "endpoints.json"
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "sandbox", "serve", "--state-dir", state, *extra], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            while not endpoints.exists():
                if proc.poll() is not None:
                    raise RuntimeError(f"sandbox exited with {proc.returncode}")
                if time.perf_counter() - started > 120:
                    raise TimeoutError("the sandbox did not start within 120 s")
                time.sleep(0.01)
            return time.perf_counter() - started
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with_gcp: list[float] = []
    without: list[float] = []
    for i in range(runs):
        without.append(start_seconds(["--no-gcp"]))
        with_gcp.append(start_seconds([]))
        print(f"run {i + 1}: without GCP {without[-1]:.2f} s, with GCP {with_gcp[-1]:.2f} s", flush=True)
    a, b = statistics.median(without), statistics.median(with_gcp)
    print(f"median start: without GCP {a:.2f} s, with GCP {b:.2f} s; GCP adds {b - a:+.2f} s (ratio {b / a:.2f})")


if __name__ == "__main__":
    main()
