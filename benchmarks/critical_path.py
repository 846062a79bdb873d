"""Deployment wall time against the plan's critical path (prints; asserts nothing).

Runs `deploy_twin` on the local host (real Durable SDK replay) for an example spec, with the
engine's test provider sleeping each resource's modelled provisioning time (the plan's typical
seconds per kind, scaled down by SCALE); resources of 20 modelled seconds or more are long
operations, polled on durable timers. Prints wall time / critical path (aim <= 1.15) and wall
time / sum of all steps (what a sequential deployer would take).

    python benchmarks/critical_path.py [SPEC] [--scale 50]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
APP = ROOT / "tests" / "engine" / "app"
KEY = "bench-key"
LONG_MODELLED_SECONDS = 20.0


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _call(method: str, url: str, body: object = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read() or b"null")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", nargs="?", default=str(ROOT / "examples" / "aws-to-azure" / "twin.json"))
    parser.add_argument("--scale", type=float, default=50.0, help="modelled seconds per real second")
    args = parser.parse_args()

    from local_host import LocalHost
    from shared.engine.plan import engine_plan
    from shared.loaders import spec_from_dict
    from shared.plan import DEFAULT_KIND_SECONDS, DEFAULT_SECONDS, build_plan

    spec_data = json.loads(Path(args.spec).read_text())
    plan = build_plan(spec_from_dict(spec_data))
    engine = engine_plan(spec_data)
    modelled = {r.id: DEFAULT_KIND_SECONDS.get(r.kind, DEFAULT_SECONDS) for r in plan.resources}
    seconds = {rid: m / args.scale for rid, m in modelled.items()}
    critical, path = plan.critical_path(seconds)
    total = sum(seconds.values())
    behaviour = {
        rid: ({"long": s, "poll_after": 0.5} if modelled[rid] >= LONG_MODELLED_SECONDS else {"delay": s})
        for rid, s in seconds.items()
    }

    with tempfile.TemporaryDirectory(prefix="bench-critical-") as tmp:
        tmpdir = Path(tmp)
        (tmpdir / "fake.json").write_text(json.dumps({"resources": behaviour}))
        port = _port()
        environ = {
            "TWIN_PROVIDER_MODULES": "activities.providers.control,engine_fake_provider",
            "ENGINE_FAKE_DB": str(tmpdir / "fake.sqlite"),
            "ENGINE_FAKE_CONFIG": str(tmpdir / "fake.json"),
            "ENGINE_EVENTS_LOG": str(tmpdir / "events.jsonl"),
            "TWIN_EVENTS_ENDPOINT": "",
        }
        with LocalHost(app_dir=APP, state_dir=tmpdir / "host", port=port, function_key=KEY, environ=environ) as host:
            base = f"{host.base_url}/runtime/webhooks/durabletask"
            instance = f"twin:{engine['twin']}:deploy:bench"
            started = time.monotonic()
            _call("POST", f"{base}/orchestrators/deploy_twin/{instance}?code={KEY}",
                  {"plan": engine, "options": {"max_parallel": 8}})
            while True:
                status = _call("GET", f"{base}/instances/{instance}?code={KEY}")
                if status["runtimeStatus"] in ("Completed", "Failed", "Terminated"):
                    break
                time.sleep(0.02)
            wall = time.monotonic() - started
            if os.environ.get("BENCH_DEBUG"):
                import sqlite3
                t0 = time.time() - wall
                for row in sqlite3.connect(str(tmpdir / "fake.sqlite")).execute("SELECT op, rid, started, ended FROM calls ORDER BY seq"):
                    print(f"{row[2] - t0:7.3f} {row[3] - t0:7.3f} {row[0]:16} {row[1]}")
    if status["runtimeStatus"] != "Completed":
        raise SystemExit(f"deployment did not complete: {status.get('output')}")
    print(f"spec: {args.spec}")
    print(f"resources: {len(plan.resources)}  (modelled seconds / {args.scale:g}; long operations polled: "
          f"{sum(1 for m in modelled.values() if m >= LONG_MODELLED_SECONDS)})")
    print(f"critical path: {critical:.2f} s over {len(path)} resources: {' -> '.join(path)}")
    print(f"sum of all steps: {total:.2f} s")
    print(f"deployment wall time: {wall:.2f} s")
    print(f"wall / critical path = {wall / critical:.3f}   (aim <= 1.15)")
    print(f"wall / sum of steps  = {wall / total:.3f}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
