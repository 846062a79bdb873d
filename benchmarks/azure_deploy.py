"""Azure deployment through the real providers against the sandbox (prints; asserts nothing).

Starts a sandbox with the `realistic` profile (provisioning delays in proportion to the real
services), runs the engine's `deploy_twin` on the local host with the Azure providers for the
Azure part of a spec, then a second (no-op) deploy. Prints:
- wall time / critical path (the plan's longest chain, each resource weighted by the sandbox's
  modelled provisioning time for its ARM type(s)): how close the deployment is to its floor;
- the number of ARM calls by verb for both deploys (reads, writes, LRO polls, Kudu), and those made
  after the graph walk (wiring consumers, then releasing the twin): the reads there are consumers
  re-read by the post-deployment propagation.

Only Azure (and control-plane) resources are deployed; resources on other clouds and anything
that needs them are left out.

    python benchmarks/azure_deploy.py [SPEC] [--profile realistic]
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
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
APP = ROOT / "tests" / "engine" / "app"

KEY = "bench-key"
# deploy_twin's custom status steps while it walks the graph (anything else: the walk is over).
WALKING = (None, "starting", "waiting for the twin's lock", "deploying")
OPTIONS = {"retry_first_seconds": 0.2, "retry_max_seconds": 1.0, "poll_timeout_seconds": 300, "grace_seconds": 0.5,
           "lock_wait_seconds": 60}
# The Grafana data plane is served once the sandbox mounts `sandbox.grafana`.
# Plan kind -> the sandbox's provisioning-time keys it spends (sandbox.core.profiles).
KIND_COSTS = {
    "resource-group": ["microsoft.resources/resourcegroups"],
    "identity": ["microsoft.managedidentity/userassignedidentities"],
    "storage-account": ["microsoft.storage/storageaccounts"],
    "app-service-plan": ["microsoft.web/serverfarms"],
    "function-app": ["microsoft.web/sites", "kudu/deployment"],
    "iot-hub": ["microsoft.devices/iothubs"],
    "eventgrid-system-topic": ["microsoft.eventgrid/systemtopics"],
    "event-subscription": ["microsoft.eventgrid/eventsubscriptions"],
    "role-assignment": ["microsoft.authorization/roleassignments"],
    "cosmos-account": ["microsoft.documentdb/databaseaccounts"],
    "cosmos-container": ["microsoft.documentdb/databaseaccounts/sqldatabases",
                         "microsoft.documentdb/databaseaccounts/sqldatabases/containers"],
    "digital-twins": ["microsoft.digitaltwins/digitaltwinsinstances"],
    "grafana": ["microsoft.dashboard/grafana"],
}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _call(method: str, url: str, body: object = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        raw = resp.read()
        return json.loads(raw) if raw else None


def deployable(plan: dict[str, Any]) -> dict[str, Any]:
    drop = {r["id"] for r in plan["resources"] if r["provider"] not in ("azure", "control")}
    grew = True
    while grew:
        grew = False
        for r in plan["resources"]:
            if r["id"] not in drop and any(n in drop for n in r["needs"]):
                drop.add(r["id"])
                grew = True
    plan["resources"] = [r for r in plan["resources"] if r["id"] not in drop and r["provider"] in ("azure", "control")]
    kept = {r["id"] for r in plan["resources"]}
    plan["outputs"] = [o for o in plan["outputs"] if o["producer"] in kept]
    plan["wires"] = [w for w in plan["wires"] if w["producer"] in kept and w["consumer"] in kept]
    plan["problems"] = []
    return plan


def verbs(records: list[dict[str, Any]]) -> dict[str, int]:
    out: Counter[str] = Counter()
    for r in records:
        if r["cloud"] != "azure":
            continue
        path = r["url"].split("?", 1)[0]
        if "/kudu/" in path:
            out[f"kudu {r['method']}"] += 1
        elif "/operationStatuses/" in path or "/operationResults/" in path:
            out["LRO poll GET"] += 1
        elif "/digitaltwins-instances/" in path:
            out[f"ADT data plane {r['method']}"] += 1
        else:
            out[r["method"]] += 1
    return dict(sorted(out.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", nargs="?", default=str(ROOT / "examples" / "azure-only" / "twin.json"))
    parser.add_argument("--profile", default="realistic")
    args = parser.parse_args()

    from local_host import LocalHost
    from sandbox.core.profiles import PROFILES, REAL_PROVISIONING_SECONDS
    from sandbox.server import Sandbox
    from shared.loaders import load_spec
    from shared.plan import build_plan

    plan_obj = build_plan(load_spec(args.spec))
    plan = deployable(plan_obj.to_json(include_config=True))
    kept = {r["id"] for r in plan["resources"]}
    scale = PROFILES[args.profile].delay_scale

    def modelled(r: Any) -> float:
        if r.id not in kept:
            return 0.0
        return sum(REAL_PROVISIONING_SECONDS.get(k, 0.0) for k in KIND_COSTS.get(r.kind, [])) * scale

    critical, path = plan_obj.critical_path(modelled)
    total = sum(modelled(r) for r in plan_obj.resources)

    with tempfile.TemporaryDirectory(prefix="azure-bench-") as tmp:
        sb = Sandbox(Path(tmp) / "sandbox", profile=args.profile, seed=0, with_blob=False, with_aws=False)
        sb.start()
        port = _port()
        webhook = f"http://127.0.0.1:{port}/runtime/webhooks/eventgrid?code={KEY}&functionName="
        environ = {
            "TWIN_PROVIDER_MODULES": "activities.providers.control,activities.providers.azure",
            "TWIN_SANDBOX_DIR": str(sb.state_dir),
            "ENGINE_EVENTS_LOG": str(Path(tmp) / "events.jsonl"),
            "TWIN_EVENTS_ENDPOINT": f"{webhook}twin_events,{webhook}record_event",
            "TWIN_ENGINE_OPTIONS": json.dumps(OPTIONS),
        }
        host = LocalHost(app_dir=APP, state_dir=Path(tmp) / "host", port=port, function_key=KEY, environ=environ)
        host.start()
        # The app imports its provider modules (and the SDKs they load) in the background when it
        # loads; wait for that once here, so the walls below are a warm control plane's.
        from activities.registry import load_providers

        warming = time.monotonic()
        load_providers()
        warm_up = time.monotonic() - warming
        base = f"{host.base_url}/runtime/webhooks/durabletask"
        try:
            results = []
            for n in (1, 2):
                mark = sb.ctx.request_log.last_seq()
                instance = f"twin:{plan['twin']}:deploy:{n}"
                started = time.monotonic()
                _call("POST", f"{base}/orchestrators/deploy_twin/{instance}?code={KEY}", {"plan": plan, "options": OPTIONS})
                walked: int | None = None  # request-log position when the walk ended
                while True:
                    status = _call("GET", f"{base}/instances/{instance}?code={KEY}")
                    if walked is None and (status.get("customStatus") or {}).get("step") not in WALKING:
                        walked = sb.ctx.request_log.last_seq()
                    if status["runtimeStatus"] in ("Completed", "Failed", "Terminated"):
                        break
                    time.sleep(0.02)
                wall = time.monotonic() - started
                records = [r.to_json() for r in sb.ctx.request_log.since(mark)]
                after = [r.to_json() for r in sb.ctx.request_log.since(walked if walked is not None else mark)]
                results.append((n, status["runtimeStatus"], wall, verbs(records), verbs(after)))
                # Let event-triggered propagation settle before the next deploy.
                time.sleep(1.0)
        finally:
            host.stop()
            sb.stop()

    print(f"spec: {args.spec}  profile: {args.profile}  resources deployed: {len(kept)} "
          f"(left out: {len(plan_obj.resources) - len(kept)})")
    print(f"critical path (modelled): {critical:.2f} s over {len(path)} resources: {' -> '.join(path)}")
    print(f"sum of all modelled steps (a sequential deployer): {total:.2f} s")
    print(f"provider modules still importing after the host started: {warm_up:.2f} s (once per process; not in the walls)")
    for n, status, wall, calls, after in results:
        label = "first deploy" if n == 1 else "second deploy"
        ratio = f"{wall / critical:.2f}" if critical else "n/a"
        per_step = f", control-plane time per critical step {(wall - critical) / len(path):.2f} s" if path else ""
        print(f"{label}: {status}, wall {wall:.2f} s, wall/critical path {ratio}, wall/sum {wall / total:.2f}{per_step}"
              if total else f"{label}: {status}, wall {wall:.2f} s")
        print(f"  ARM calls by verb: {json.dumps(calls)}")
        print(f"  after the walk (propagation, release): {json.dumps(after)}")
    return 0 if all(status == "Completed" for _, status, *_ in results) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    raise SystemExit(main())
