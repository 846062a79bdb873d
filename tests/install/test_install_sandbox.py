"""`python -m control_plane install --sandbox DIR` end to end (issue 14, items 2-4): the control
plane installs itself into the sandbox through the same engine and providers that deploy twins;
the sandbox runs the zipped package as a Function App (its own host process, seeing only the
package, its app settings and managed identity); a twin deployed through the installed app
closes the change loop there (a recreated Digital Twins instance reaches the ADT Pusher with one
settings write); the app reaches AWS by web identity (STS `AssumeRoleWithWebIdentity`, no key); a
second install writes nothing; an upgrade (new code: the Durable Task Scheduler's package) uploads
once and writes only what changed; uninstall leaves nothing of the control plane; and every ARM
and Digital Twins call of all of it (the install's own resources, the twin deployed through the
installed app) holds to Azure's published OpenAPI documents (`tests/conformance`)."""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shared.contracts import Setting
from shared.engine.infrastructure import RESOURCE_GROUP

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, timeout: float = 600) -> tuple[int, Any, str]:
    """`python -m control_plane ARGS --json` as an operator runs it (nothing TWIN_* inherited)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_")}
    done = subprocess.run([sys.executable, "-m", "control_plane", *args, "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    try:
        out = json.loads(done.stdout) if done.stdout.strip() else None
    except ValueError:
        out = done.stdout
    return done.returncode, out, done.stderr


@dataclass
class Installed:
    sandbox: Any
    sandbox_dir: Path
    url: str
    key: str
    app: str
    ssl: ssl.SSLContext
    install: dict[str, Any]

    @property
    def endpoints(self) -> dict[str, Any]:
        return dict(json.loads((self.sandbox_dir / "endpoints.json").read_text()))

    def api(self, method: str, route: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}/api/{route}", data=data, method=method,
                                     headers={"Content-Type": "application/json", "x-functions-key": self.key})
        try:
            with urllib.request.urlopen(req, timeout=60, context=self.ssl) as resp:
                raw, status = resp.read(), resp.status
        except urllib.error.HTTPError as err:
            raw, status = err.read(), err.code
        return status, json.loads(raw) if raw else None

    def follow(self, instance: str, timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status, view = self.api("GET", f"deployments/{instance}")
            assert status == 200, view
            if view["runtimeStatus"] in ("Completed", "Failed", "Terminated"):
                return dict(view)
            assert time.monotonic() < deadline, json.dumps(view)[:2000]
            time.sleep(0.5)

    def requests(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.endpoints['control']}/requests", timeout=30) as resp:
            return list(json.loads(resp.read()))

    def resources(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.endpoints['control']}/resources", timeout=30) as resp:
            return dict(json.loads(resp.read()))


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    from sandbox.server import Sandbox

    sandbox_dir = (tmp_path_factory.mktemp("install") / "sandbox").resolve()
    with Sandbox(sandbox_dir, with_gcp=False, record_exchanges=True) as sandbox:
        account = json.loads((sandbox_dir / "endpoints.json").read_text())["aws"]["account_id"]
        code, out, err = cli("install", "--sandbox", str(sandbox_dir), "--aws-account", account)
        assert code == 0, err[-3000:]
        yield Installed(sandbox, sandbox_dir, out["url"], out["key"], out["app"],
                        ssl.create_default_context(cafile=str(sandbox_dir / "ca.pem")), out)


def _azure(s: Installed, twin: str) -> Any:
    from twin_cli.commands.simulate import Azure, Endpoints

    return Azure(Endpoints(s.sandbox_dir), twin)


def test_the_installed_package_runs_as_a_function_app_and_is_healthy(installed: Installed) -> None:
    from sandbox.runtime.isolated import FIRST_PARTY

    status, health = installed.api("GET", "health")
    assert status == 200 and health["healthy"], health
    assert installed.install["health"]["healthy"], installed.install["health"]
    # Its own host process, from the unpacked package (not the source tree).
    apps = installed.sandbox_dir / "functionapps" / installed.app.lower()
    (package,) = list((apps / "packages").iterdir())
    assert (package / "function_app.py").is_file() and not (package / "sandbox").exists()
    assert not (package / "twin_cli").exists() and not (package / "tests").exists()
    assert "sandbox" in FIRST_PARTY and "twin_cli" in FIRST_PARTY


def test_a_twin_deployed_through_the_installed_app_closes_the_loop_and_reaches_aws_by_web_identity(
    installed: Installed,
) -> None:
    from azure.mgmt.digitaltwins import AzureDigitalTwinsManagementClient
    from azure.mgmt.digitaltwins.models import DigitalTwinsDescription
    from azure.mgmt.web import WebSiteManagementClient

    spec = json.loads((ROOT / "examples" / "aws-to-azure" / "twin.json").read_text())
    twin = str(spec["twin"]["name"])
    seen = len(installed.requests())
    status, body = installed.api("POST", "deployments", spec)
    assert status == 202, body
    view = installed.follow(body["id"])
    assert view["runtimeStatus"] == "Completed", json.dumps(view)[:3000]
    # The app's AWS calls ran on credentials STS exchanged for its identity's token.
    assert any(r.get("operation") == "AssumeRoleWithWebIdentity" for r in installed.requests()[seen:])

    az = _azure(installed, twin)
    adt = AzureDigitalTwinsManagementClient(az.cred, az.sub, **az.kw)
    web = WebSiteManagementClient(az.cred, az.sub, **az.kw)
    name, pusher = az.naming.digital_twins(), az.naming.function_app("L0")
    old = adt.digital_twins.get(az.rg, name)
    adt.digital_twins.begin_delete(az.rg, name).result()
    recreated_at = len(installed.requests())
    new = adt.digital_twins.begin_create_or_update(az.rg, name, DigitalTwinsDescription(location=old.location)).result()
    wanted = "https://" + str(new.host_name)
    assert new.host_name != old.host_name
    started = time.monotonic()
    while web.web_apps.list_application_settings(az.rg, pusher).properties.get(Setting.ADT_INSTANCE_URL) != wanted:
        assert time.monotonic() - started < 30, f"the Pusher never got {wanted}"
        time.sleep(0.2)
    print(f"\nthe Pusher followed the recreated instance in {time.monotonic() - started:.1f} s")
    settings_writes = [r for r in installed.requests()[recreated_at:]
                       if r["mutating"] and r["url"].lower().split("?")[0].endswith(
                           f"/sites/{pusher}/config/appsettings".lower())]
    assert len(settings_writes) == 1, settings_writes

    # The recreated instance lacks the twin's models, graph and role assignments (made with the
    # old one): a deployment through the installed app puts them back; then the twin goes.
    status, body = installed.api("POST", "deployments", spec)
    assert status == 202, body
    assert installed.follow(body["id"])["runtimeStatus"] == "Completed"
    status, body = installed.api("DELETE", f"twins/{twin}")
    assert status == 202, body
    view = installed.follow(body["id"])
    assert view["runtimeStatus"] == "Completed", json.dumps(view.get("errors"))[:3000]


def test_install_again_writes_nothing(installed: Installed) -> None:
    seen = len(installed.requests())
    code, out, err = cli("install", "--sandbox", str(installed.sandbox_dir), "--aws-account",
                         installed.endpoints["aws"]["account_id"])
    assert code == 0, err[-3000:]
    calls = installed.requests()[seen:]
    mutating = [f"{r['method']} {r['url']} {r.get('operation') or ''}" for r in calls if r["mutating"]]
    assert calls and mutating == [], mutating
    assert out["summary"] == {"created": 0, "updated": 0, "unchanged": out["summary"]["unchanged"], "deleted": 0}
    assert out["url"] == installed.url and out["package_sha256"] == installed.install["package_sha256"]


def test_upgrade_is_install_with_new_code(installed: Installed) -> None:
    """New code (here: the package for the Durable Task Scheduler, whose host.json differs) is one
    upload; what the change needs (scheduler, task hub, its role, settings) is added; the rest of
    the control plane is not written."""
    seen = len(installed.requests())
    code, out, err = cli("install", "--sandbox", str(installed.sandbox_dir), "--aws-account",
                         installed.endpoints["aws"]["account_id"], "--durable-backend", "durable-task-scheduler")
    assert code == 0, err[-3000:]
    assert out["package_sha256"] != installed.install["package_sha256"] and out["health"]["healthy"], out
    mutating = [f"{r['method']} {r['url'].split('?')[0]}" for r in installed.requests()[seen:] if r["mutating"]]
    uploads = [m for m in mutating if m.endswith("/api/publish") or m.endswith("/api/zipdeploy")]
    assert len(uploads) == 1, mutating
    untouched = ("/microsoft.storage/", "/microsoft.keyvault/", "/microsoft.eventgrid/", "/microsoft.insights/",
                 "/microsoft.operationalinsights/", "/microsoft.managedidentity/", "/serverfarms/")
    assert not [m for m in mutating if any(t in m.lower() for t in untouched)], mutating
    assert any("/microsoft.durabletask/schedulers/" in m.lower() and "/taskhubs/" in m.lower() for m in mutating)
    assert out["summary"]["deleted"] == 0 and out["summary"]["created"] >= 3, out["summary"]
    status, health = installed.api("GET", "health")
    assert status == 200 and health["healthy"], health


def test_uninstall_leaves_nothing(installed: Installed) -> None:
    code, out, err = cli("uninstall", "--sandbox", str(installed.sandbox_dir))
    assert code == 0, err[-3000:]
    left = installed.resources()
    azure = [r["id"] for r in left.get("azure", [])]
    assert not any(f"/resourcegroups/{RESOURCE_GROUP}".lower() in rid.lower() for rid in azure), azure
    sub = f"/subscriptions/{installed.endpoints['azure']['subscription_id']}/providers/microsoft.authorization"
    assert not any(rid.lower().startswith(sub) for rid in azure), azure
    aws = json.dumps(left.get("aws", []))
    assert "oidc-provider" not in aws and ":role/twin-control-plane" not in aws, aws
    # Its Function App host is gone with the app.
    deadline = time.monotonic() + 30
    while True:
        try:
            status, _ = installed.api("GET", "health")
        except (urllib.error.URLError, ConnectionError, OSError):
            break
        if status == 404:
            break
        assert time.monotonic() < deadline, "the app still answers after uninstall"
        time.sleep(0.5)


def test_every_call_of_the_install_e2e_holds_to_azures_specification(installed: Installed) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "conformance"))
    try:
        from azure_openapi import Specs
    finally:
        sys.path.remove(str(ROOT / "tests" / "conformance"))
    # The test's own out-of-band recreate (azure-mgmt-digitaltwins' poller, as a user runs it)
    # follows the operation's status monitor, which the published documents do not declare; the
    # control plane itself never polls one (`polling=False`, then a GET of the resource).
    exchanges = [e for e in installed.sandbox.ctx.exchanges.all()
                 if not (e.method == "GET" and re.search(r"/providers/microsoft\.digitaltwins/locations/[^/]+/"
                                                         r"(operationresults|operationstatuses)/", e.path.lower()))]
    report = Specs().report(exchanges)
    print(f"\nconformance of the install e2e: {report.summary()}")
    assert [str(v) for v in report.violations] == []
    install_types = {"Microsoft.OperationalInsights/workspaces", "Microsoft.Insights/components",
                     "Microsoft.KeyVault/vaults", "Microsoft.EventGrid/topics", "Microsoft.DurableTask/schedulers",
                     "Microsoft.DurableTask/schedulers/taskHubs", "Microsoft.EventGrid/systemTopics",
                     "Microsoft.Web/serverfarms", "Microsoft.Web/sites", "Microsoft.Authorization/roleAssignments"}
    assert install_types <= report.resource_types, sorted(install_types - report.resource_types)
