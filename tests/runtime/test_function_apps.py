"""A Function App package deployed through Kudu runs in its own host process; settings changes
restart it; deleting the site stops it. All through the real azure-mgmt-web client and HTTPS."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
import requests

from payload_functions.packaging import build_azure_app_package

pytestmark = pytest.mark.slow


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _post(env: Any, host: str, token: str) -> requests.Response:
    return requests.post(f"https://{host}/api/adt-pusher", json={"device_id": "dev-1", "telemetry": {"temperature": 1}},
                         headers={"X-Inter-Cloud-Token": token}, verify=env.sb.ca_file, timeout=30)


def test_deployed_package_runs_restarts_on_settings_and_stops_on_delete(azure_env: Any) -> None:
    env = azure_env
    env.group("rg-fa")
    site = env.function_app("rg-fa", "fa-pusher", {"FUNCTIONS_WORKER_RUNTIME": "python", "INTER_CLOUD_TOKEN": "tok-1"})
    assert env.runtime.status("fa-pusher") is None  # nothing runs before a deployment
    env.zip_deploy(site, build_azure_app_package("fa-pusher", ["adt-pusher"]).data)
    first = env.runtime.wait_running("fa-pusher")
    assert _alive(first["pid"]) and first["pid"] != os.getpid()

    # The site's defaultHostName URL reaches the function in that process; it reads its settings.
    assert _post(env, site.default_host_name, "wrong").status_code == 401
    r = _post(env, site.default_host_name, "tok-1")
    assert r.status_code == 503, r.text  # authorised; ADT_INSTANCE_URL is not configured yet
    assert "ADT_INSTANCE_URL" in r.text

    # A settings change through ARM restarts the host; the function sees the new value.
    env.set_settings("rg-fa", "fa-pusher", {"INTER_CLOUD_TOKEN": "tok-2"})
    second = env.runtime.wait_running("fa-pusher", after_pid=first["pid"])
    assert not _alive(first["pid"])
    assert _post(env, site.default_host_name, "tok-1").status_code == 401
    assert _post(env, site.default_host_name, "tok-2").status_code == 503

    # A new package restarts it too, running the new code (one more function).
    status = env.zip_deploy(site, build_azure_app_package("fa-pusher", ["adt-pusher", "hot-writer"]).data)
    third = env.runtime.wait_running("fa-pusher", after_pid=second["pid"])
    assert third["deployment_id"] == status["id"] and not _alive(second["pid"])
    r = requests.post(f"https://{site.default_host_name}/api/hot-writer", json={}, verify=env.sb.ca_file, timeout=30,
                      headers={"X-Inter-Cloud-Token": "wrong"})
    assert r.status_code == 401  # the new function answers (its token check), not a 404

    # Deleting the site stops its process and unregisters it.
    second = third
    env.web.web_apps.delete("rg-fa", "fa-pusher")
    deadline = time.monotonic() + 15
    while _alive(second["pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(second["pid"])
    assert env.sb.ctx.function_hosts == {}


class _Receiver:
    """A real HTTP endpoint standing in for the L2 processor: records what the dispatcher posts."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.calls: list[tuple[dict[str, str], dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.calls.append(({k.lower(): v for k, v in self.headers.items()}, json.loads(body)))
                data = b'{"status": "processed"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/processor"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def test_event_grid_delivers_iot_telemetry_to_the_dispatcher_in_its_host(azure_env: Any) -> None:
    from azure.mgmt.eventgrid import EventGridManagementClient
    from azure.mgmt.eventgrid.models import (
        AzureFunctionEventSubscriptionDestination,
        EventSubscription,
        EventSubscriptionFilter,
        SystemTopic,
    )
    from azure.mgmt.iothub import IotHubClient
    from azure.mgmt.iothub.models import IotHubDescription, IotHubSkuInfo

    from sandbox import eventgrid
    from shared.contracts import DigitalTwinInfo

    env = azure_env
    receiver = _Receiver()
    try:
        env.group("rg-eg")
        info = DigitalTwinInfo("twin", "standard", 30, 90, {"L1": "azure", "L2": "azure"}).to_json()
        site = env.function_app("rg-eg", "fa-dispatcher", {
            "DIGITAL_TWIN_INFO": info, "TARGET_FUNCTION": "processor",
            "PROCESSOR_URL": receiver.url, "PROCESSOR_KEY": "processor-key"})
        env.zip_deploy(site, build_azure_app_package("fa-dispatcher", ["dispatcher"]).data)
        env.web.web_apps.sync_function_triggers("rg-eg", "fa-dispatcher")
        env.runtime.wait_running("fa-dispatcher")
        hub = IotHubClient(env.cred, env.sub, **env.kw).iot_hub_resource.begin_create_or_update(
            "rg-eg", "hub-eg", IotHubDescription(location="westeurope", sku=IotHubSkuInfo(name="S1", capacity=1))
        ).result()
        eg = EventGridManagementClient(env.cred, env.sub, **env.kw)
        eg.system_topics.begin_create_or_update(
            "rg-eg", "st-eg", SystemTopic(location="westeurope", source=hub.id, topic_type="Microsoft.Devices.IoTHubs")
        ).result()
        eg.system_topic_event_subscriptions.begin_create_or_update("rg-eg", "st-eg", "to-dispatcher", EventSubscription(
            destination=AzureFunctionEventSubscriptionDestination(
                resource_id=f"{site.id}/functions/dispatcher", max_events_per_batch=1),
            filter=EventSubscriptionFilter(included_event_types=["Microsoft.Devices.DeviceTelemetry"]),
        )).result()

        eventgrid.publish_device_telemetry(env.sb.ctx, hub.id, "twin-dev-1",
                                           {"iotDeviceId": "dev-1", "time": "2026-01-01T00:00:00Z", "temperature": 21})
        delivered = eventgrid.wait_for_deliveries(env.sb.ctx, "st-eg", 1, timeout=30)
        assert delivered[0]["status"] == 200, delivered
        assert len(receiver.calls) == 1
        headers, reading = receiver.calls[0]
        assert headers["x-functions-key"] == "processor-key"
        assert reading["device_id"] == "dev-1" and reading["temperature"] == 21
    finally:
        receiver.close()


def test_managed_identity_endpoint_gives_the_site_identity_its_roles(azure_env: Any) -> None:
    """The ADT Pusher in its host reaches Digital Twins as the site's user-assigned identity:
    refused until that identity holds the Data Owner role, then the twin is patched."""
    import uuid

    from azure.digitaltwins.core import DigitalTwinsClient
    from azure.mgmt.authorization import AuthorizationManagementClient
    from azure.mgmt.authorization.models import RoleAssignmentCreateParameters
    from azure.mgmt.digitaltwins import AzureDigitalTwinsManagementClient
    from azure.mgmt.digitaltwins.models import DigitalTwinsDescription

    data_owner = "bcd981a7-7f74-457b-83e1-cceb9e632ffe"
    env = azure_env
    env.group("rg-mi")
    ident = env.identity("rg-mi", "twin-identity")
    adt = AzureDigitalTwinsManagementClient(env.cred, env.sub, **env.kw).digital_twins.begin_create_or_update(
        "rg-mi", "adt-mi", DigitalTwinsDescription(location="westeurope")).result()
    auth = AuthorizationManagementClient(env.cred, env.sub, **env.kw)

    def grant(principal: str) -> None:
        auth.role_assignments.create(adt.id, str(uuid.uuid4()), RoleAssignmentCreateParameters(
            role_definition_id=f"/subscriptions/{env.sub}/providers/Microsoft.Authorization/roleDefinitions/{data_owner}",
            principal_id=principal, principal_type="ServicePrincipal"))

    grant(env.sb.endpoints["azure"]["deployer_principal_id"])
    twins = DigitalTwinsClient(adt.host_name, env.cred, connection_verify=env.sb.ca_file)
    twins.create_models([{"@id": "dtmi:rt:Sensor;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2",
                          "contents": [{"@type": "Property", "name": "lastTemperature", "schema": "double"}]}])
    twins.upsert_digital_twin("dev-1", {"$metadata": {"$model": "dtmi:rt:Sensor;1"}})

    site = env.function_app("rg-mi", "fa-mi", {
        "INTER_CLOUD_TOKEN": "tok", "ADT_INSTANCE_URL": f"https://{adt.host_name}",
        "AZURE_CLIENT_ID": ident.client_id}, identity_id=ident.id)
    env.zip_deploy(site, build_azure_app_package("fa-mi", ["adt-pusher"]).data)
    env.runtime.wait_running("fa-mi")
    refused = _post(env, site.default_host_name, "tok")
    # Authenticated as the identity (the token endpoint answered) but not yet authorised on the instance.
    assert refused.status_code == 502 and "403" in refused.text, refused.text

    grant(ident.principal_id)
    r = _post(env, site.default_host_name, "tok")
    assert r.status_code == 200, r.text
    assert twins.get_digital_twin("dev-1")["lastTemperature"] == 1


def test_a_crashed_host_restarts_and_stopping_the_runtime_stops_every_host(tmp_path: Any, make_azure_env: Any) -> None:
    from sandbox.runtime import FunctionAppRuntime
    from sandbox.server import Sandbox

    sb = Sandbox(tmp_path / "sb", profile="instant", with_blob=False, with_aws=False)
    sb.start()
    runtime: FunctionAppRuntime = sb.function_apps
    try:
        env = make_azure_env(sb, runtime)
        env.group("rg-stop")
        pids = []
        for name in ("fa-stop-1", "fa-stop-2"):
            site = env.function_app("rg-stop", name, {"INTER_CLOUD_TOKEN": "t"})
            env.zip_deploy(site, build_azure_app_package(name, ["adt-pusher"]).data)
            pids.append(runtime.wait_running(name)["pid"])
        assert all(_alive(p) for p in pids) and len(sb.ctx.function_hosts) == 2
        # A host that dies on its own is started again, as App Service restarts a crashed worker.
        import signal

        os.kill(pids[0], signal.SIGKILL)
        pids.append(runtime.wait_running("fa-stop-1", after_pid=pids[0])["pid"])
        assert _alive(pids[-1])
    finally:
        runtime.stop()
        sb.stop()
    assert not any(_alive(p) for p in pids)
    assert sb.ctx.function_hosts == {}
