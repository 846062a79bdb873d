"""ADT Pusher throughput and burst behaviour in the sandbox (prints; asserts nothing).

Deploys `examples/aws-to-azure` into a local sandbox through the control plane on the local host,
then acts as the AWS persister: POSTs envelopes to the deployed ADT Pusher (Azure L0 Function App,
run by the sandbox in its own local host) with the inter-cloud token, and reads the sandbox's
request log to count the Digital Twins writes (PATCH) they cause.

1. Throughput: `--messages` pushes spread over the example's devices, sequentially and with
   `--concurrency` senders; messages per second and per-push latency percentiles.
2. Burst for one twin: `--burst` pushes for one device sent at once (each a newer timestamp and
   value), `--rounds` times, in ascending, shuffled and newest-first order in turn. Prints per
   burst the twin writes (PATCH) it caused by status, the 429s, the peak writes admitted in any one
   second as the sandbox's Digital Twins counted them (ADT allows 10 writes/s per twin), and
   whether the twin ends with the newest value and its timestamp as `sourceTime` (it must, every
   round: the pusher coalesces per twin and never lets an older reading win).

    python benchmarks/pusher.py [--messages 200] [--concurrency 8] [--burst 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import ssl
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
EXAMPLE = ROOT / "examples" / "aws-to-azure" / "twin.json"
TOKEN_HEADER = "X-Inter-Cloud-Token"


def _stamp(base: datetime, i: int) -> str:
    return (base + timedelta(milliseconds=i)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_SSL: list[Any] = []  # the sandbox CA's context, set once the sandbox is up


def _push(url: str, token: str, device: str, stamp: str, values: dict[str, float]) -> tuple[int, float, float]:
    """(HTTP status, latency, completion time on the perf_counter clock)."""
    from payload_functions.common.envelope import build_envelope
    from shared.contracts import AdtPush

    body = build_envelope({str(AdtPush.DEVICE_ID): device, str(AdtPush.TELEMETRY): values,
                           str(AdtPush.TIMESTAMP): stamp}, "aws", "L4")
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", TOKEN_HEADER: token})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=60, context=_SSL[0] if _SSL else None) as resp:
            resp.read()
            status = resp.status
    except urllib.error.HTTPError as err:
        status = err.code
    end = time.perf_counter()
    return status, end - start, end


def _requests(control: str, since: int) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{control}/requests?since={since}", timeout=60) as resp:
        return list(json.loads(resp.read()))


def _seq(control: str) -> int:
    records = _requests(control, 0)
    return int(records[-1]["seq"]) if records else 0


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="bursts to send (default 3)")
    args = parser.parse_args()

    import boto3
    from azure.digitaltwins.core import DigitalTwinsClient
    from azure.mgmt.digitaltwins import AzureDigitalTwinsManagementClient
    from rich.console import Console

    from sandbox.digitaltwins import backend
    from sandbox.server import Sandbox
    from shared.contracts import adt_property_name
    from twin_cli.commands.engine_client import PROJECT_ROOT, follow, open_target
    from twin_cli.commands.simulate import Azure, Endpoints

    spec = json.loads(EXAMPLE.read_text())
    twin_name = spec["twin"]["name"]
    devices = {d["id"]: [p["name"] for p in d["properties"]] for d in spec["devices"]}
    quiet = Console(file=io.StringIO())
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-pusher-")))
        sandbox = stack.enter_context(Sandbox(tmp / "sandbox", with_blob=False))
        ns = argparse.Namespace(url=None, key=None, app=str(PROJECT_ROOT), state_dir=str(tmp / "host"),
                                sandbox=str(tmp / "sandbox"), no_sandbox=False, json=True)
        target = stack.enter_context(open_target(ns, quiet))
        t0 = time.perf_counter()
        status, body = target.call("POST", "deployments", spec)
        if status != 202:
            print(f"deployment refused: {status} {body}")
            return 1
        _, view = follow(target, body["id"], quiet, True)
        print(f"deployed {twin_name}: {view['runtimeStatus']} in {time.perf_counter() - t0:.1f} s")
        if view["runtimeStatus"] != "Completed":
            print(json.dumps(view.get("errors"), indent=2))
            return 1
        url = view["outputs"]["ADT_PUSHER_URL"]["value"]
        _SSL.append(ssl.create_default_context(cafile=sandbox.endpoints["azure"]["ca_file"]))
        aws = sandbox.endpoints["aws"]
        lam = boto3.client("lambda", endpoint_url=aws["endpoint_url"], region_name=aws["region"],
                           aws_access_key_id="bench", aws_secret_access_key="bench")
        # The token the persister sends (the API redacts it): read where the persister reads it.
        env = lam.get_function_configuration(FunctionName=f"{twin_name}-persister")["Environment"]["Variables"]
        token = env["INTER_CLOUD_TOKEN"]
        control = sandbox.endpoints["control"]
        base = datetime.now(UTC)
        names = list(devices)

        _push(url, token, names[0], _stamp(base, 0), {p: 0.0 for p in devices[names[0]]})  # warm the host
        for label, workers in (("sequential", 1), (f"{args.concurrency} concurrent senders", args.concurrency)):
            mark = _seq(control)
            # Readings observed now, 1 ms apart: each phase's are newer than the previous phase's
            # (the pusher drops a reading older than what the twin holds).
            phase = datetime.now(UTC)
            jobs = [(names[i % len(names)], _stamp(phase, i), float(i)) for i in range(args.messages)]
            t0 = time.perf_counter()
            with ThreadPoolExecutor(workers) as pool:
                results = list(pool.map(lambda j: _push(url, token, j[0], j[1], {p: j[2] for p in devices[j[0]]}),
                                        jobs))
            wall = time.perf_counter() - t0
            codes = Counter(r[0] for r in results)
            lat = [r[1] * 1000 for r in results]
            patches = [r for r in _requests(control, mark) if r["method"] == "PATCH" and "/digitaltwins/" in r["url"]]
            print(f"throughput, {label}: {args.messages} pushes in {wall:.2f} s = {args.messages / wall:.1f} msg/s; "
                  f"latency ms p50 {statistics.median(lat):.0f} p95 {_pct(lat, 95):.0f} max {max(lat):.0f}; "
                  f"statuses {dict(codes)}; twin PATCHes {dict(Counter(r['status'] for r in patches))}")

        device = names[0]
        props = devices[device]
        az = Azure(Endpoints(tmp / "sandbox"), twin_name)
        inst = AzureDigitalTwinsManagementClient(az.cred, az.sub, **az.kw).digital_twins.get(
            az.rg, az.naming.digital_twins())
        twins = DigitalTwinsClient(str(inst.host_name), az.cred, connection_verify=az.ca)
        adt = backend(sandbox.ctx).instance_for_resource(str(inst.id))
        if adt is None:
            print("the Digital Twins instance is not in the sandbox")
            return 1
        orders = ("ascending", "shuffled", "newest first")
        newest_won = 0
        writes_per_burst: list[int] = []
        for round_ in range(1, args.rounds + 1):
            time.sleep(1.5)  # let the per-twin rate window of the previous round pass
            mark = _seq(control)
            before = len(adt.write_attempts(device))
            burst_base = datetime.now(UTC)
            burst_jobs = [(_stamp(burst_base, i), 1000.0 * round_ + i) for i in range(args.burst)]
            order = orders[(round_ - 1) % len(orders)]
            sent = list(burst_jobs)
            if order == "shuffled":
                random.Random(round_).shuffle(sent)
            elif order == "newest first":
                sent.reverse()
            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.burst) as pool:
                results = list(pool.map(lambda j: _push(url, token, device, j[0], {p: j[1] for p in props}), sent))
            wall = time.perf_counter() - t0
            writes = [r for r in _requests(control, mark)
                      if r["method"] == "PATCH" and f"/digitaltwins/{device}" in r["url"]]
            statuses = Counter(r["status"] for r in writes)
            # Attempts as the service counted them (arrival time, admitted or refused with 429).
            attempts = adt.write_attempts(device)[before:]
            admitted = sorted(t for t, ok in attempts if ok)
            peak = max((sum(1 for u in admitted if t <= u < t + 1.0) for t in admitted), default=0)
            newest_stamp, newest = burst_jobs[-1]
            twin = twins.get_digital_twin(device)
            prop = adt_property_name(props[0])
            got = twin.get(prop)
            source_time = (twin.get("$metadata", {}).get(prop) or {}).get("sourceTime")
            won = got == newest and source_time == newest_stamp
            newest_won += won
            writes_per_burst.append(len(writes))
            print(f"burst {round_} ({order}): {args.burst} pushes for twin {device} at once, answered in {wall:.2f} s "
                  f"(statuses {dict(Counter(r[0] for r in results))})")
            print(f"  twin writes: {len(writes)} (by status {dict(statuses)}; 429s: {statuses.get(429, 0)}); "
                  f"peak admitted writes in any second: {peak} (limit 10)")
            print(f"  newest value sent {newest} at {newest_stamp}; twin holds {got} with sourceTime {source_time}: "
                  f"{'newest won' if won else 'NOT the newest'}")
        print(f"summary: {args.burst} pushes per burst -> twin writes per burst {writes_per_burst}; "
              f"the newest value won in {newest_won} of {args.rounds} bursts")
        if newest_won != args.rounds:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
