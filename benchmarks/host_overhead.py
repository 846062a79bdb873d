"""Local host overhead: a fan-out of 1,000 no-op activities and a chain of 500 sequential ones.

Prints (does not assert) wall time, host overhead per activity, and how the chain's replay work
grows with its length. Run: `.venv/bin/python benchmarks/host_overhead.py [--fan-out N] [--chain N]`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from local_host import LocalHost  # noqa: E402
from local_host.durable import history as h  # noqa: E402

APP = ROOT / "tests" / "host" / "apps" / "bench"
KEY = "bench-key"


def _run(host: LocalHost, orchestrator: str, n: int, instance_id: str) -> tuple[float, dict]:
    url = f"{host.base_url}/runtime/webhooks/durabletask/orchestrators/{orchestrator}/{instance_id}?code={KEY}"
    started = time.perf_counter()
    req = urllib.request.Request(url, data=json.dumps(n).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        status_url = json.loads(resp.read())["statusQueryGetUri"]
    while True:
        with urllib.request.urlopen(status_url) as resp:
            status = json.loads(resp.read())
        if status["runtimeStatus"] not in ("Running", "Pending"):
            return time.perf_counter() - started, status
        time.sleep(0.05)


def _dateutil_cost_us() -> float:
    """What the SDK pays per history event on every replay: `dateutil.parser.parse(Timestamp)`."""
    from dateutil.parser import parse

    stamp = h.fmt_ts(h.utc_now())
    rounds = 2000
    started = time.perf_counter()
    for _ in range(rounds):
        parse(stamp)
    return (time.perf_counter() - started) / rounds * 1e6


def _stats_delta(before: dict, after: dict) -> dict:
    return {k: after[k] - before[k] for k in before}


def _suite(args: argparse.Namespace, fast_replay: bool) -> None:
    label = "fast replay (memoised SDK timestamp parsing)" if fast_replay else "default (SDK as is)"
    print(f"== {label}, activity concurrency {args.activity_concurrency}")
    with tempfile.TemporaryDirectory() as state, LocalHost(app_dir=APP, state_dir=Path(state), function_key=KEY,
                                                           activity_concurrency=args.activity_concurrency,
                                                           fast_replay=fast_replay) as host:
        engine = host.engine
        assert engine is not None
        _run(host, "BenchChain", 3, "warm-up")

        before = dict(engine.stats)
        wall, status = _run(host, "BenchFanOut", args.fan_out, "fan-out")
        d = _stats_delta(before, engine.stats)
        print(f"fan-out of {args.fan_out} no-op activities: {status['runtimeStatus']} in {wall:.2f} s "
              f"({wall / args.fan_out * 1000:.2f} ms host overhead per activity)")
        print(f"  episodes {d['episodes']}, history events replayed {d['events_replayed']}, "
              f"time in SDK replay {d['replay_seconds']:.2f} s ({d['replay_seconds'] / wall:.0%} of wall)")

        before = dict(engine.stats)
        wall, status = _run(host, "BenchChain", args.chain, "chain")
        d = _stats_delta(before, engine.stats)
        print(f"chain of {args.chain} sequential no-op activities: {status['runtimeStatus']} in {wall:.2f} s "
              f"({wall / args.chain * 1000:.2f} ms per step)")
        print(f"  episodes {d['episodes']}, history events replayed {d['events_replayed']} "
              f"(quadratic: each episode replays the whole history), time in SDK replay "
              f"{d['replay_seconds']:.2f} s ({d['replay_seconds'] / wall:.0%} of wall)")
        if not fast_replay:
            per_event = _dateutil_cost_us()
            print(f"  of that, ~{d['events_replayed'] * per_event / 1e6:.2f} s is the SDK parsing each event's "
                  f"Timestamp with dateutil ({per_event:.0f} us per event, measured now)")
        done = [h.parse_ts(e["Timestamp"]) for e in engine.history("chain") if e["EventType"] == h.TASK_COMPLETED]
        window = min(100, len(done) // 2)
        if window >= 2:
            first = (done[window - 1] - done[0]).total_seconds() / (window - 1) * 1000
            last = (done[-1] - done[-window]).total_seconds() / (window - 1) * 1000
            print(f"  time per step: first {window} steps {first:.2f} ms, last {window} steps {last:.2f} ms "
                  f"(replayed history then ~{2 * window} vs ~{2 * len(done)} events)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fan-out", type=int, default=1000)
    parser.add_argument("--chain", type=int, default=500)
    parser.add_argument("--activity-concurrency", type=int, default=8)
    parser.add_argument("--mode", choices=["default", "fast", "both"], default="both",
                        help="run with the SDK as is, with --fast-replay, or both (default)")
    args = parser.parse_args()
    logging.getLogger("local_host").setLevel(logging.WARNING)
    logging.getLogger().setLevel(logging.ERROR)
    if args.mode in ("default", "both"):
        _suite(args, fast_replay=False)
    if args.mode in ("fast", "both"):
        _suite(args, fast_replay=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
