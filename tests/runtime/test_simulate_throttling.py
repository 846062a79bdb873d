"""`simulate` against a throttling IoT Hub (issue 12 item 8): the registry read and the telemetry
send are answered 429/503 about half the time (seeded), and the simulator retries them instead of
giving up. Only an IoT Hub is built (through ARM, as the deployer would)."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.mgmt.iothub import IotHubClient
from azure.mgmt.iothub.models import IotHubDescription, IotHubSkuInfo
from azure.mgmt.resource.resources import ResourceManagementClient

from sandbox.core.auth import SandboxCredential
from sandbox.core.profiles import Profile
from sandbox.server import Sandbox
from shared.naming import AzureNaming
from twin_cli.commands import simulate

TWIN = "throttled"
DEVICE = "sensor-1"


@pytest.fixture
def sandbox(tmp_path: Path) -> Any:
    sb = Sandbox(tmp_path / "sb", profile="instant", with_blob=False, with_aws=False)
    sb.start()
    try:
        yield sb
    finally:
        sb.stop()


def _hub_with_device(sb: Sandbox) -> None:
    names = AzureNaming(TWIN)
    cred = SandboxCredential(sb.endpoints["azure"]["deployer_principal_id"])
    sub = sb.endpoints["azure"]["subscription_id"]
    kw: dict[str, Any] = {"base_url": sb.arm_url, "connection_verify": sb.ca_file, "polling_interval": 0}
    ResourceManagementClient(cred, sub, **kw).resource_groups.create_or_update(
        names.resource_group(), {"location": "westeurope"})
    hubs = IotHubClient(cred, sub, **kw)
    hub = hubs.iot_hub_resource.begin_create_or_update(names.resource_group(), names.iot_hub(), IotHubDescription(
        location="westeurope", sku=IotHubSkuInfo(name="S1", capacity=1))).result()
    owner = next(k for k in hubs.iot_hub_resource.list_keys(names.resource_group(), names.iot_hub())
                 if k.key_name == "iothubowner")
    registry_id = names.iot_device(DEVICE)
    r = requests.put(f"https://{hub.properties.host_name}/devices/{urllib.parse.quote(registry_id)}",
                     params={"api-version": simulate.IOT_HUB_API_VERSION}, json={"deviceId": registry_id},
                     verify=sb.ca_file, timeout=30,
                     headers={"Authorization": simulate._sas(hub.properties.host_name, owner.primary_key, "iothubowner")})
    assert r.status_code == 200, r.text


def test_simulate_retries_a_throttled_registry_and_send(sandbox: Sandbox) -> None:
    _hub_with_device(sandbox)
    azure = simulate.Azure(simulate.Endpoints(Path(sandbox.state_dir)), TWIN)
    azure._hub()  # ARM reads before the data plane starts throttling
    faults = sandbox.ctx.faults
    before = sandbox.ctx.request_log.last_seq()
    faults.profile = Profile("throttling", throttle_rate=0.4, unavailable_rate=0.1)
    faults._rng.seed(3)  # the first registry read and several sends are refused
    try:
        messages = simulate.build_messages([{"device_id": DEVICE, "temperature": 20 + i} for i in range(6)])
        for message in messages:
            azure.send(message)
    finally:
        faults.set_profile("instant")
    refused = [r for r in sandbox.ctx.request_log.since(before) if r.status in (429, 503)]
    assert any("/devices/" in r.url and r.method == "GET" for r in refused), refused
    assert any(r.method == "POST" for r in refused), refused
