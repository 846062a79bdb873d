"""L1 device identities through the IoT Hub registry REST API with a SAS token computed here."""

from __future__ import annotations

from typing import Any

from activities.providers.azure.iot_device import sas_token

HUB = "azure/L1/iot-hub"
DEVICE = "azure/L1/device-climate-sensor-1"


def test_device_identity_ensure_read_twice_delete(walker: Any, sandbox: Any) -> None:
    w = walker()
    first = w.ensure_all(upto=DEVICE)
    assert first[DEVICE].action == "created"
    conn = w.outputs[DEVICE]["DEVICE_CREDENTIALS:climate-sensor-1"]
    name = w.plan.resource(DEVICE).config.name
    assert conn.startswith("HostName=") and f";DeviceId={name};SharedAccessKey=" in conn
    read = w.read(DEVICE)
    assert read.exists and read.outputs == w.outputs[DEVICE] and read.details["status"] == "enabled"

    mark = sandbox.seq()
    assert w.ensure(DEVICE).action == "unchanged"
    assert w.outputs[DEVICE]["DEVICE_CREDENTIALS:climate-sensor-1"] == conn  # keys are kept, not regenerated
    assert sandbox.mutations(mark) == []

    assert w.delete(DEVICE).action == "deleted"
    assert not w.read(DEVICE).exists
    assert w.delete(DEVICE).action == "absent"
    w.delete(HUB)
    assert w.delete(DEVICE).action == "absent"  # the hub is gone, and its devices with it
    w.delete("azure/setup/resource-group")


def test_sas_token_shape() -> None:
    token = sas_token("Hub.Azure-Devices.net", "registryReadWrite", "c2VjcmV0", expiry=1700000000)
    assert token.startswith("SharedAccessSignature sr=hub.azure-devices.net&sig=")
    assert token.endswith("&se=1700000000&skn=registryReadWrite")
    assert token != sas_token("Hub.Azure-Devices.net", "registryReadWrite", "b3RoZXI=", expiry=1700000000)
