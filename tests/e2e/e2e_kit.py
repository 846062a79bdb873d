"""One sandbox, one local control plane and one deployed twin, driven through the pieces the CLI
uses: `open_target` (the local host), the HTTP API, `follow`, and `simulate.run`."""

from __future__ import annotations

import argparse
import io
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def example(name: str) -> dict[str, Any]:
    return dict(json.loads((EXAMPLES / name / "twin.json").read_text()))


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         timeout: float = 60) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw, status = resp.read(), resp.status
    except urllib.error.HTTPError as err:
        raw, status = err.read(), err.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode("utf-8", "replace")


class Deployment:
    """A running sandbox + control plane with `spec` deployed (or attempted: see `view`)."""

    def __init__(self, sandbox: Any, sandbox_dir: Path, target: Any, spec_file: Path, spec: dict[str, Any]) -> None:
        self.sandbox = sandbox
        self.sandbox_dir = sandbox_dir
        self.target = target
        self.spec_file = spec_file
        self.spec = spec
        self.twin = str(spec["twin"]["name"])
        self.view: dict[str, Any] = {}
        self._ops = 0

    # --- the control plane (HTTP API, as the CLI calls it) --------------------------------------
    def api(self, method: str, route: str, body: Any = None) -> tuple[int, Any]:
        return self.target.call(method, route, body)  # type: ignore[no-any-return]

    def follow(self, instance: str, timeout: float = 240) -> dict[str, Any]:
        from twin_cli.commands.engine_client import follow

        _, view = follow(self.target, instance, Console(file=io.StringIO()), True, timeout=timeout)
        return dict(view)

    def deploy(self) -> dict[str, Any]:
        status, body = self.api("POST", "deployments", self.spec)
        assert status == 202, body
        return self.follow(body["id"])

    def deploy_bundle(self, folder: Path) -> dict[str, Any]:
        """What `deploy FOLDER` does: the folder (spec and code) zipped and sent as a bundle."""
        from twin_cli.commands.deploy import read_bundle

        status, body = self.target.call("POST", "deployments", raw=read_bundle(str(folder)),
                                        content_type="application/zip")
        assert status == 202, body
        return self.follow(body["id"])

    def idle(self, timeout: float = 120) -> None:
        """Until no operation of the twin (deployment, propagation, rotation) is running."""
        deadline = time.monotonic() + timeout
        while True:
            status, body = http("GET", f"{self.target.base}/runtime/webhooks/durabletask/instances/"
                                       f"?instanceIdPrefix=twin:{self.twin}:&runtimeStatus=Running,Pending"
                                       f"&code={self.target.key}")
            if status == 200 and not body:
                return
            assert time.monotonic() < deadline, f"twin {self.twin} still busy: {body}"
            time.sleep(0.2)

    # --- the sandbox ----------------------------------------------------------------------------
    @property
    def control(self) -> str:
        return str(self.sandbox.endpoints["control"])

    def requests(self, since: int = 0, **query: str) -> list[dict[str, Any]]:
        q = urllib.parse.urlencode({"since": since, **query})
        status, body = http("GET", f"{self.control}/requests?{q}")
        assert status == 200, body
        return list(body)

    def seq(self) -> int:
        records = self.requests()
        return int(records[-1]["seq"]) if records else 0

    def resources(self) -> dict[str, list[dict[str, Any]]]:
        status, body = http("GET", f"{self.control}/resources")
        assert status == 200, body
        return dict(body)

    def sites(self) -> list[str]:
        """The twin's Function Apps (ARM resource ids, lower case) that exist in the sandbox."""
        return [str(r["id"]).lower() for r in self.resources().get("azure", [])
                if str(r.get("type", "")).lower() == "microsoft.web/sites" and self.twin in str(r["id"])]

    def wait_for_function_hosts(self, timeout: float = 60) -> None:
        """Until every Function App of the twin runs in a local host. The deployment is complete once
        ARM has the package; the sandbox starts its host a moment later, and its Event Grid gives up
        on a subscription whose host is not up after a few quick retries (real Event Grid retries
        for 24 hours), so telemetry sent before that would be dead-lettered."""
        deadline = time.monotonic() + timeout
        while True:
            sites = set(self.sites())
            status, hosts = http("GET", f"{self.control}/hosts")
            running = {str(k).lower() for k in (hosts or {})} if status == 200 else set()
            if sites <= running:
                return
            assert time.monotonic() < deadline, f"Function hosts not running: {sorted(sites - running)}"
            time.sleep(0.2)

    def diagnose(self, since: int = 0) -> str:
        """Why a message did not arrive: the calls answered with an error since `since` (URLs without
        their query, which may hold a key) and the warnings the Function hosts and Lambdas logged."""
        lines = [f"{r['cloud']} {r['method']} {r['url'].split('?')[0]} -> {r['status']}"
                 for r in self.requests(since) if r["status"] >= 400]
        for log in sorted(self.sandbox_dir.glob("**/*.log")):
            for line in log.read_text(errors="replace").splitlines():
                if " ERROR " in line or " WARNING " in line or "Traceback" in line:
                    lines.append(f"{log.parent.name}: {line[:400]}")
        return "\n".join(lines[-60:])

    def simulate(self, count: int = 1, devices: list[str] | None = None, timeout: float = 30,
                 feedback_wait: float = 0.0) -> dict[str, Any]:
        """`python -m control_plane simulate SPEC --sandbox DIR --json`, in process."""
        from twin_cli.commands import simulate

        args = argparse.Namespace(spec=str(self.spec_file), sandbox=self.sandbox_dir, device=devices, count=count,
                                  payloads=None, timeout=timeout, feedback_wait=feedback_wait, json=True)
        out, err = io.StringIO(), io.StringIO()
        code = simulate.run(args, out=out, err=err)
        assert out.getvalue(), f"simulate exited {code} without a report: {err.getvalue()}"
        report = dict(json.loads(out.getvalue()))
        report["exit_code"] = code
        report["stderr"] = err.getvalue()
        return report

    def aws_client(self, service: str) -> Any:
        import boto3
        from botocore.config import Config

        aws = self.sandbox.endpoints["aws"]
        # No `api.`/`data.` host prefix (TwinMaker, IoT data): the sandbox is one host, 127.0.0.1.
        return boto3.client(service, endpoint_url=aws["endpoint_url"], region_name=aws["region"],
                            aws_access_key_id="e2e", aws_secret_access_key="e2e",
                            config=Config(inject_host_prefix=False))

    def azure(self) -> Any:
        """The simulator's Azure reader (ARM-discovered Cosmos container and Digital Twins client)."""
        from twin_cli.commands.simulate import Azure, Endpoints

        return Azure(Endpoints(self.sandbox_dir), self.twin)

    def digital_twin(self, twin_id: str) -> dict[str, Any]:
        """The twin as Azure Digital Twins serves it (instance found through ARM)."""
        from azure.digitaltwins.core import DigitalTwinsClient
        from azure.mgmt.digitaltwins import AzureDigitalTwinsManagementClient

        az = self.azure()
        mgmt = AzureDigitalTwinsManagementClient(az.cred, az.sub, **az.kw)
        inst = mgmt.digital_twins.get(az.rg, az.naming.digital_twins())
        client = DigitalTwinsClient(str(inst.host_name), az.cred, connection_verify=az.ca)
        return dict(client.get_digital_twin(twin_id))


@contextmanager
def deployment(spec: dict[str, Any], tmp: Path, deploy: bool = True, with_blob: bool = False,
               spec_file: Path | None = None) -> Iterator[Deployment]:
    """Sandbox + local host; deploys `spec`. `with_blob`: run Azurite, so the storage accounts the
    deployment creates through ARM have a working Blob data plane (Azure cold/archive storage) and
    the control plane has its bundle store. `spec_file`: where the spec is (a project folder for a
    bundle; default: `spec` written to `tmp/twin.json`)."""
    from sandbox.server import Sandbox
    from twin_cli.commands.engine_client import PROJECT_ROOT, open_target

    if spec_file is None:
        spec_file = tmp / "twin.json"
        spec_file.write_text(json.dumps(spec, indent=2))
    sandbox_dir = (tmp / "sandbox").resolve()
    with ExitStack() as stack:
        sandbox = stack.enter_context(Sandbox(sandbox_dir, with_blob=with_blob))
        args = argparse.Namespace(url=None, key=None, app=str(PROJECT_ROOT), state_dir=str(tmp / "host"),
                                  sandbox=str(sandbox_dir), no_sandbox=False, json=True)
        target = stack.enter_context(open_target(args, Console(file=io.StringIO())))
        d = Deployment(sandbox, sandbox_dir, target, spec_file, spec)
        if deploy:
            d.view = d.deploy()
            d.idle()
            d.wait_for_function_hosts()
        yield d


def failed_messages(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in report["messages"] if m["errors"] or m["stored_at"] is None]


def mutating_calls(records: list[dict[str, Any]]) -> list[str]:
    """Method, URL and status of each mutating call: what a failed no-op assertion shows."""
    return [f"{r['cloud']} {r['method']} {r['url']} {r['status']} {r.get('operation') or ''}".strip()
            for r in records if r.get("mutating")]
