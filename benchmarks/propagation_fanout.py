"""Fan-out propagation: re-applying N consumers of one changed output (prints; asserts nothing).

For N = 1, 10, 100 consumers of one output, the output's value changes in the twin's state and
`propagate_outputs` re-applies every consumer, each a read-modify-write that takes
`--update-seconds` in the (test) cloud. Prints the wall time over one consumer's update time
(aim <= 1.5 at N = 100), and where the time beyond one update went: from the start to the first
consumer's update starting, how far apart the updates started and ended (one GIL runs them all),
and from the last update to the end. The host runs activities with `--activity-concurrency` (settings
updates are I/O-bound; on Azure, `maxConcurrentActivityFunctions` and scale-out play this role).

    python benchmarks/propagation_fanout.py [--update-seconds 1.0] [--activity-concurrency 128] [--runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
APP = ROOT / "tests" / "engine" / "app"
KEY = "bench-key"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _call(method: str, url: str, body: object = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        raw = resp.read()
        return json.loads(raw) if raw else None


def _wait(base: str, instance: str) -> dict:
    while True:
        status = _call("GET", f"{base}/instances/{instance}?code={KEY}")
        assert isinstance(status, dict)
        if status["runtimeStatus"] in ("Completed", "Failed", "Terminated"):
            if status["runtimeStatus"] != "Completed":
                raise SystemExit(f"{instance}: {status.get('output')}")
            return status
        time.sleep(0.02)


def run(n: int, update: float, concurrency: int) -> tuple[float, int, Spread | None]:
    from local_host import LocalHost

    twin = f"fan{n}"
    consumers = [f"aws/L2/consumer-{i:03d}" for i in range(n)]
    plan = {
        "twin": twin,
        "resources": [{"id": "azure/L4/adt", "layer": "L4", "provider": "azure", "kind": "digital-twins",
                       "needs": [], "produces": ["ADT_INSTANCE_URL"], "config": {}}]
        + [{"id": c, "layer": "L2", "provider": "aws", "kind": "lambda", "needs": ["azure/L4/adt"], "produces": [],
            "config": {}} for c in consumers],
        "outputs": [{"name": "ADT_INSTANCE_URL", "producer": "azure/L4/adt", "secret": False}],
        "wires": [{"output": "ADT_INSTANCE_URL", "producer": "azure/L4/adt", "consumer": c,
                   "setting": "REMOTE_ADT_INSTANCE_URL"} for c in consumers],
        "problems": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        tmpdir = Path(tmp)
        (tmpdir / "fake.json").write_text(json.dumps({"default": {"apply_delay": update}}))
        environ = {
            "TWIN_PROVIDER_MODULES": "activities.providers.control,engine_fake_provider",
            "ENGINE_FAKE_DB": str(tmpdir / "fake.sqlite"),
            "ENGINE_FAKE_CONFIG": str(tmpdir / "fake.json"),
            "TWIN_EVENTS_ENDPOINT": "",
        }
        with LocalHost(app_dir=APP, state_dir=tmpdir / "host", port=_port(), function_key=KEY,
                       activity_concurrency=concurrency, environ=environ) as host:
            base = f"{host.base_url}/runtime/webhooks/durabletask"
            _call("POST", f"{base}/orchestrators/deploy_twin/twin:{twin}:deploy:1?code={KEY}",
                  {"plan": plan, "options": {"max_parallel": 64}})
            _wait(base, f"twin:{twin}:deploy:1")
            # The output changes outside a deployment (e.g. the instance was recreated).
            _call("POST", f"{base}/entities/twin_state/{twin}?op=record_output&code={KEY}",
                  {"name": "ADT_INSTANCE_URL", "value": "https://recreated.example", "producer": "azure/L4/adt",
                   "secret": False})
            time.sleep(0.3)  # let the signal land before propagation reads the state
            started, started_at = time.monotonic(), time.time()
            _call("POST", f"{base}/orchestrators/propagate_outputs/twin:{twin}:propagate:1?code={KEY}",
                  {"twin": twin, "outputs": ["ADT_INSTANCE_URL"]})
            status = _wait(base, f"twin:{twin}:propagate:1")
            wall = time.monotonic() - started
        with contextlib.closing(sqlite3.connect(str(tmpdir / "fake.sqlite"))) as db:
            # The fake cloud logs each update: when its activity began and when its write ended.
            updates = db.execute("SELECT started, ended FROM calls WHERE op = 'apply-write' AND started >= ?",
                                 (started_at,)).fetchall()
    output = status["output"]
    assert isinstance(output, dict)
    begins = sorted(b - started_at for b, _ in updates)
    ends = sorted(e - started_at for _, e in updates)
    spread = Spread(begins[0], begins[-1] - begins[0], ends[-1] - ends[0], wall - ends[-1]) if updates else None
    return wall, len(output["changed"]), spread


@dataclass(frozen=True)
class Spread:
    """Seconds after the propagation started: to the first update's start; between the first and
    the last update's start; between the first and last update's end; from the last end to the end."""

    first_start: float
    starts: float
    ends: float
    tail: float


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--update-seconds", type=float, default=1.0)
    parser.add_argument("--activity-concurrency", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3, help="runs of N = 100 (the machine's noise moves it by "
                        "+-0.2); the median is summarised")
    args = parser.parse_args()
    print(f"one consumer update: {args.update_seconds:.2f} s; host activity concurrency {args.activity_concurrency}")
    ratios: list[float] = []
    for n in (1, 10, *([100] * args.runs)):
        wall, changed, spread = run(n, args.update_seconds, args.activity_concurrency)
        print(f"N = {n:3d}: {changed:3d} consumers re-applied in {wall:6.2f} s;"
              f" wall / one update = {wall / args.update_seconds:5.2f}" + ("   (aim <= 1.5)" if n == 100 else ""))
        if spread is not None:
            print(f"         first update began after {spread.first_start:.3f} s; updates began over {spread.starts:.3f} s"
                  f" and ended over {spread.ends:.3f} s; the end {spread.tail:.3f} s after the last")
        if n == 100:
            ratios.append(wall / args.update_seconds)
    if len(ratios) > 1:
        print(f"N = 100 over {len(ratios)} runs: {', '.join(f'{r:.2f}' for r in ratios)}; "
              f"median {statistics.median(ratios):.2f} (aim <= 1.5)")


if __name__ == "__main__":
    main()
