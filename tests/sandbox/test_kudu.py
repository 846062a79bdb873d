"""Kudu deploys through azure-core's PipelineClient (as the research notes' client code), then
`sync_function_triggers` and `list_functions` show exactly the functions in the zip."""

from __future__ import annotations

import io
import json
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from azure.core import PipelineClient
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline.policies import BearerTokenCredentialPolicy, RetryPolicy
from azure.core.rest import HttpRequest
from azure.mgmt.eventgrid import EventGridManagementClient
from azure.mgmt.eventgrid.models import (
    AzureFunctionEventSubscriptionDestination,
    EventSubscription,
    EventSubscriptionFilter,
    SystemTopic,
)
from azure.mgmt.iothub import IotHubClient
from azure.mgmt.iothub.models import IotHubDescription, IotHubSkuInfo
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.web import WebSiteManagementClient
from azure.mgmt.web.models import (
    AppServicePlan,
    CsmPublishingCredentialsPoliciesEntity,
    CsmPublishingCredentialsPoliciesEntityProperties,
    Site,
    SiteConfig,
    SkuDescription,
    StringDictionary,
)

from sandbox.arm.models import arm_backend
from sandbox.core.auth import SandboxCredential
from sandbox.core.profiles import Profile
from sandbox.server import Sandbox

LOC = "westeurope"
ARM_SCOPE = "https://management.azure.com/.default"

FUNCTION_APP = """\
import azure.functions as func
import azure.durable_functions as df

from blueprints.ingest import bp as ingest_bp
from blueprints import timers

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.route(route="deployments", methods=["POST"])
@app.durable_client_input(client_name="client")
async def start_deploy(req, client):
    return None


@app.function_name(name="adt-updater")
@app.event_grid_trigger(arg_name="event")
def adt_updater(event):
    return None


@app.orchestration_trigger(context_name="context")
def deploy_twin(context):
    yield None


@app.activity_trigger(input_name="payload")
def create_resource(payload):
    return payload


def helper_not_a_function():
    return 1


app.register_functions(ingest_bp)
app.register_blueprint(timers.bp)
"""

INGEST = """\
import azure.functions as func

bp = func.Blueprint()


@bp.route(route="ingest")
def ingest(req):
    return None
"""

TIMERS = """\
import azure.functions as func

bp = func.Blueprint()


@bp.timer_trigger(schedule="0 */5 * * * *", arg_name="timer")
def mover(timer):
    return None
"""

EXPECTED = {
    "start_deploy": "httpTrigger",
    "adt-updater": "eventGridTrigger",
    "deploy_twin": "orchestrationTrigger",
    "create_resource": "activityTrigger",
    "ingest": "httpTrigger",
    "mover": "timerTrigger",
}


def make_zip(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


GOOD_ZIP = {
    "function_app.py": FUNCTION_APP,
    "host.json": json.dumps({"version": "2.0"}),
    "requirements.txt": "azure-functions\nazure-functions-durable\n",
    "blueprints/__init__.py": "",
    "blueprints/ingest.py": INGEST,
    "blueprints/timers.py": TIMERS,
}


class App:
    def __init__(self, sb: Sandbox, web: WebSiteManagementClient, rg: str, name: str, site: Any) -> None:
        self.sb, self.web, self.rg, self.name, self.site = sb, web, rg, name, site
        self.scm = "https://" + next(s.name for s in site.host_name_ssl_states if s.host_type == "Repository")
        self.cred = SandboxCredential(sb.endpoints["azure"]["deployer_principal_id"])

    def client(self, policies: list[Any] | None = None) -> PipelineClient:
        return PipelineClient(
            self.scm,
            policies=policies or [RetryPolicy(), BearerTokenCredentialPolicy(self.cred, ARM_SCOPE)],
            connection_verify=self.sb.ca_file,
        )

    def deploy(
        self, data: bytes, endpoint: str = "zipdeploy", client: PipelineClient | None = None
    ) -> tuple[Any, list[dict[str, Any]]]:
        client = client or self.client()
        params = (
            {"isAsync": "true"} if endpoint == "zipdeploy" else {"RemoteBuild": "false", "Deployer": "az_cli"}
        )
        r = client.send_request(
            HttpRequest(
                "POST",
                f"{self.scm}/api/{endpoint}",
                params=params,
                content=data,
                headers={"Content-Type": "application/zip"},
            )
        )
        assert r.status_code == 202, r.text()
        loc = r.headers["Location"]
        seen = []
        for _ in range(200):
            j = client.send_request(HttpRequest("GET", loc)).json()
            seen.append(j)
            if j.get("complete") or j.get("status") in (3, 4):
                return r, seen
            time.sleep(0.02)
        raise AssertionError(f"deployment did not finish: {seen[-1]}")


def _make_app(sb: Sandbox, flex: bool = False) -> App:
    cred = SandboxCredential(sb.endpoints["azure"]["deployer_principal_id"])
    kw = {"base_url": sb.arm_url, "connection_verify": sb.ca_file, "polling_interval": 0}
    ResourceManagementClient(cred, sb.ctx.subscription_id, **kw).resource_groups.create_or_update(
        "rg-k", {"location": LOC}
    )
    web = WebSiteManagementClient(cred, sb.ctx.subscription_id, **kw)
    sku = (
        SkuDescription(name="FC1", tier="FlexConsumption")
        if flex
        else SkuDescription(name="EP1", tier="ElasticPremium")
    )
    plan = web.app_service_plans.begin_create_or_update(
        "rg-k",
        "plan-flex" if flex else "plan-ep",
        AppServicePlan(location=LOC, kind="functionapp", reserved=True, sku=sku),
    ).result()
    name = "func-flex" if flex else "func-ep"
    site = web.web_apps.begin_create_or_update(
        "rg-k",
        name,
        Site(
            location=LOC,
            kind="functionapp,linux",
            reserved=True,
            server_farm_id=plan.id,
            site_config=SiteConfig(linux_fx_version="Python|3.11"),
        ),
    ).result()
    return App(sb, web, "rg-k", name, site)


@pytest.fixture
def app(sandbox_factory: Any) -> App:
    return _make_app(sandbox_factory())


def test_zipdeploy_then_sync_lists_exactly_the_zip_functions(app: App) -> None:
    r, seen = app.deploy(make_zip(GOOD_ZIP))
    assert "/api/deployments/latest" in r.headers["Location"]
    # Status 1 (Building) is seen before 4 (Success), as Kudu reports it.
    assert [s["status"] for s in seen] == [1, 4]
    assert seen[-1]["complete"] is True and seen[-1]["deployer"] == "ZipDeploy"
    # Nothing is indexed until the triggers are synced.
    assert list(app.web.web_apps.list_functions(app.rg, app.name)) == []
    app.web.web_apps.sync_function_triggers(app.rg, app.name)
    functions = list(app.web.web_apps.list_functions(app.rg, app.name))
    got = {f.name.split("/", 1)[1]: f.properties.config["bindings"][0]["type"] for f in functions}
    assert got == EXPECTED
    by_name = {f.name.split("/", 1)[1]: f for f in functions}
    assert (
        by_name["ingest"].properties.invoke_url_template == f"https://{app.site.default_host_name}/api/ingest"
    )
    assert by_name["adt-updater"].properties.config["bindings"][0]["name"] == "event"
    keys = app.web.web_apps.list_host_keys(app.rg, app.name)
    assert "eventgrid_extension" in keys.system_keys and "durabletask_extension" in keys.system_keys
    assert app.web.web_apps.list_function_keys(app.rg, app.name, "ingest").properties["default"]
    assert app.web.web_apps.get_function(app.rg, app.name, "ingest").name.endswith("/ingest")
    # A new deployment without the blueprint changes the list only after the next sync.
    smaller = dict(GOOD_ZIP)
    smaller["function_app.py"] = FUNCTION_APP.replace("app.register_functions(ingest_bp)\n", "")
    app.deploy(make_zip(smaller))
    assert "ingest" in {f.name.split("/", 1)[1] for f in app.web.web_apps.list_functions(app.rg, app.name)}
    app.web.web_apps.sync_function_triggers(app.rg, app.name)
    assert {f.name.split("/", 1)[1] for f in app.web.web_apps.list_functions(app.rg, app.name)} == set(
        EXPECTED
    ) - {"ingest"}
    # The deployments list and the package on disk.
    listed = app.client().send_request(HttpRequest("GET", f"{app.scm}/api/deployments")).json()
    assert [d["status"] for d in listed] == [4, 4]
    stored = list((app.sb.state_dir / "kudu" / app.name).glob("*.zip"))
    assert len(stored) == 2


def test_event_subscription_to_a_function_needs_it_indexed(app: App) -> None:
    cred = app.cred
    kw = {"base_url": app.sb.arm_url, "connection_verify": app.sb.ca_file, "polling_interval": 0}
    hub = (
        IotHubClient(cred, app.sb.ctx.subscription_id, **kw)
        .iot_hub_resource.begin_create_or_update(
            app.rg, "iot-k", IotHubDescription(location=LOC, sku=IotHubSkuInfo(name="S1", capacity=1))
        )
        .result()
    )
    eg = EventGridManagementClient(cred, app.sb.ctx.subscription_id, **kw)
    eg.system_topics.begin_create_or_update(
        app.rg, "st-k", SystemTopic(location=LOC, source=hub.id, topic_type="Microsoft.Devices.IoTHubs")
    ).result()
    sub = EventSubscription(
        destination=AzureFunctionEventSubscriptionDestination(
            resource_id=f"{app.site.id}/functions/adt-updater",
            max_events_per_batch=1,
            preferred_batch_size_in_kilobytes=64,
        ),
        filter=EventSubscriptionFilter(included_event_types=["Microsoft.Devices.DeviceTelemetry"]),
    )
    # Before the function is deployed and indexed, ARM refuses the subscription.
    with pytest.raises(HttpResponseError) as err:
        eg.system_topic_event_subscriptions.begin_create_or_update(app.rg, "st-k", "to-fn", sub).result()
    assert err.value.status_code == 400 and "Destination endpoint not found" in err.value.error.message
    app.deploy(make_zip(GOOD_ZIP))
    with pytest.raises(HttpResponseError):  # deployed but not yet synced
        eg.system_topic_event_subscriptions.begin_create_or_update(app.rg, "st-k", "to-fn", sub).result()
    app.web.web_apps.sync_function_triggers(app.rg, app.name)
    seq = app.sb.ctx.request_log.last_seq()
    created = eg.system_topic_event_subscriptions.begin_create_or_update(
        app.rg, "st-k", "to-fn", sub
    ).result()
    assert app.sb.ctx.request_log.since(seq)[0].status == 201
    assert created.provisioning_state == "Succeeded"
    assert created.destination.resource_id == f"{app.site.id}/functions/adt-updater"


def test_bad_packages_fail_with_a_reason(app: App) -> None:
    nested = {f"app/{k}": v for k, v in GOOD_ZIP.items()}
    _, seen = app.deploy(make_zip(nested))
    assert seen[-1]["status"] == 3 and seen[-1]["complete"] is True
    log = app.client().send_request(HttpRequest("GET", seen[-1]["log_url"])).json()
    assert any(
        "missing function_app.py" in line["message"] and "app/function_app.py" in line["message"]
        for line in log
    )
    _, seen = app.deploy(b"this is not a zip")
    log = app.client().send_request(HttpRequest("GET", seen[-1]["log_url"])).json()
    assert seen[-1]["status"] == 3 and any("not a valid zip" in line["message"] for line in log)
    broken = dict(GOOD_ZIP)
    broken["function_app.py"] = "def broken(:\n"
    _, seen = app.deploy(make_zip(broken))
    log = app.client().send_request(HttpRequest("GET", seen[-1]["log_url"])).json()
    assert seen[-1]["status"] == 3 and any(
        "SyntaxError in function_app.py line 1" in line["message"] for line in log
    )
    # A failed deployment does not change what is indexed.
    app.web.web_apps.sync_function_triggers(app.rg, app.name)
    assert list(app.web.web_apps.list_functions(app.rg, app.name)) == []


def test_basic_auth_needs_scm_basic_auth_allowed(app: App) -> None:
    creds = app.web.web_apps.begin_list_publishing_credentials(app.rg, app.name).result()
    basic = requests.auth.HTTPBasicAuth(creds.publishing_user_name, creds.publishing_password)
    url = f"{app.scm}/api/zipdeploy?isAsync=true"
    r = requests.post(url, data=make_zip(GOOD_ZIP), auth=basic, verify=app.sb.ca_file, timeout=10)
    assert r.status_code == 401 and "disabled" in r.json()["Message"]
    app.web.web_apps.update_scm_allowed(
        app.rg,
        app.name,
        CsmPublishingCredentialsPoliciesEntity(
            properties=CsmPublishingCredentialsPoliciesEntityProperties(allow=True)
        ),
    )
    wrong = requests.post(
        url, data=b"x", auth=(creds.publishing_user_name, "wrong"), verify=app.sb.ca_file, timeout=10
    )
    assert wrong.status_code == 401 and creds.publishing_password not in wrong.text
    r = requests.post(url, data=make_zip(GOOD_ZIP), auth=basic, verify=app.sb.ca_file, timeout=10)
    assert r.status_code == 202
    for _ in range(10):
        status = requests.get(r.headers["Location"], auth=basic, verify=app.sb.ca_file, timeout=10).json()
        if status["complete"]:
            break
    assert status["status"] == 4
    assert requests.post(url, data=b"x", verify=app.sb.ca_file, timeout=10).status_code == 401


def test_synchronous_zipdeploy(app: App) -> None:
    r = app.client().send_request(
        HttpRequest(
            "POST",
            f"{app.scm}/api/zipdeploy",
            content=make_zip(GOOD_ZIP),
            headers={"Content-Type": "application/zip"},
        )
    )
    assert r.status_code == 200
    bad = app.client().send_request(HttpRequest("POST", f"{app.scm}/api/zipdeploy", content=b"nope"))
    assert bad.status_code == 400 and "not a valid zip" in bad.json()["Message"]


def test_flex_uses_publish_and_refuses_zipdeploy(sandbox_factory: Any) -> None:
    app = _make_app(sandbox_factory(), flex=True)
    r = app.client().send_request(
        HttpRequest(
            "POST", f"{app.scm}/api/zipdeploy", params={"isAsync": "true"}, content=make_zip(GOOD_ZIP)
        )
    )
    assert r.status_code == 404 and "isn't available in this environment" in r.json()["Message"]
    _, seen = app.deploy(make_zip(GOOD_ZIP), endpoint="publish")
    assert seen[-1]["status"] == 4 and seen[-1]["deployer"] == "OneDeploy"
    app.web.web_apps.sync_function_triggers(app.rg, app.name)
    assert {f.name.split("/", 1)[1] for f in app.web.web_apps.list_functions(app.rg, app.name)} == set(
        EXPECTED
    )
    status = app.web.web_apps.get_one_deploy_status(app.rg, app.name)
    assert status["properties"]["status"] == 4 and status["properties"]["complete"] is True


def test_conflict_while_a_deployment_runs(sandbox_factory: Any) -> None:
    app = _make_app(sandbox_factory())
    # A deployment takes 60 s * 0.03 = 1.8 s here: long enough to collide with, even on a busy machine.
    app.sb.ctx.faults.profile = Profile("slow-deploy", delay_scale=0.03)
    client = app.client()
    first = client.send_request(
        HttpRequest(
            "POST", f"{app.scm}/api/zipdeploy", params={"isAsync": "true"}, content=make_zip(GOOD_ZIP)
        )
    )
    assert first.status_code == 202
    second = client.send_request(
        HttpRequest(
            "POST", f"{app.scm}/api/zipdeploy", params={"isAsync": "true"}, content=make_zip(GOOD_ZIP)
        )
    )
    assert second.status_code == 409
    deadline = time.time() + 10
    while time.time() < deadline:
        j = client.send_request(HttpRequest("GET", first.headers["Location"])).json()
        if j["complete"]:
            break
        time.sleep(0.05)
    assert j["status"] == 4
    third = client.send_request(
        HttpRequest(
            "POST", f"{app.scm}/api/zipdeploy", params={"isAsync": "true"}, content=make_zip(GOOD_ZIP)
        )
    )
    assert third.status_code == 202


def test_unknown_site_and_missing_auth(app: App) -> None:
    base = app.sb.arm_url
    r = requests.get(f"{base}/kudu/no-such-site/api/deployments/latest", verify=app.sb.ca_file, timeout=10)
    assert r.status_code == 404
    r = requests.get(f"{app.scm}/api/deployments/latest", verify=app.sb.ca_file, timeout=10)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")


@pytest.fixture
def local_host() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            out = json.dumps(
                {
                    "path": self.path,
                    "got": body.decode(),
                    "key": self.headers.get("x-functions-key"),
                    "prefix": self.headers.get("X-Forwarded-Prefix"),
                }
            ).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


def test_default_host_name_proxies_to_the_registered_local_host(app: App, local_host: str) -> None:
    url = f"https://{app.site.default_host_name}/api/ingest?code=abc"
    r = requests.post(url, json={"a": 1}, verify=app.sb.ca_file, timeout=10)
    assert r.status_code == 503 and r.json()["error"]["code"] == "FunctionHostNotRunning"
    reg = requests.post(
        app.sb.control_url + "/hosts",
        json={"site": app.site.id, "base_url": local_host, "master_key": "mk"},
        timeout=10,
    )
    assert reg.status_code == 201
    r = requests.post(
        url, json={"a": 1}, headers={"x-functions-key": "k1"}, verify=app.sb.ca_file, timeout=10
    )
    assert r.status_code == 201
    assert r.json() == {
        "path": "/api/ingest?code=abc",
        "got": '{"a": 1}',
        "key": "k1",
        "prefix": f"/sites/{app.name}",
    }
    # The function key in the query never reaches the request log.
    logged = [rec.url for rec in app.sb.ctx.request_log.since(0) if "/api/ingest" in rec.url]
    assert logged and all("code=REDACTED" in u and "abc" not in u for u in logged)
    # The registered master key is the app's master key.
    assert app.web.web_apps.list_host_keys(app.rg, app.name).master_key == "mk"


def test_site_listener_hears_deployments_settings_and_deletes(sandbox_factory: Any) -> None:
    """A `Microsoft.Web/sites` hook object with `on_deployed` / `on_settings_changed` is told, and
    a deployment nobody polls still finishes (the local Function-app runtime relies on both)."""
    sb: Sandbox = sandbox_factory()
    events: list[tuple[str, str]] = []

    class SiteListener:
        def on_put(self, resource_id: str, resource: dict[str, Any]) -> None:
            events.append(("put", resource_id.rsplit("/", 1)[-1]))

        def on_delete(self, resource_id: str) -> None:
            events.append(("delete", resource_id.rsplit("/", 1)[-1]))

        def on_deployed(self, site_key: str) -> None:
            events.append(("deployed", site_key.rsplit("/", 1)[-1]))

        def on_settings_changed(self, site_key: str) -> None:
            events.append(("settings", site_key.rsplit("/", 1)[-1]))

    sb.ctx.register_hooks("Microsoft.Web/sites", SiteListener())
    app = _make_app(sb)
    assert events == [("put", "func-ep")]
    r = app.client().send_request(
        HttpRequest(
            "POST", f"{app.scm}/api/zipdeploy", params={"isAsync": "true"}, content=make_zip(GOOD_ZIP)
        )
    )
    assert r.status_code == 202
    deadline = time.time() + 5
    while ("deployed", "func-ep") not in events:
        assert time.time() < deadline, events
        time.sleep(0.05)
    state = arm_backend(app.sb.ctx).sites[app.site.id.lower()]
    assert state.deployments[-1].status == 4 and state.deployed_functions
    app.web.web_apps.update_application_settings(app.rg, app.name, StringDictionary(properties={"A": "1"}))
    assert events[-1] == ("settings", "func-ep")
    app.web.web_apps.delete(app.rg, app.name)
    assert events[-1] == ("delete", "func-ep")
