"""The credentials seam against the sandbox: real SDK clients, sandbox endpoints and CA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from activities.clouds import clouds_from_environ
from shared.contracts import ControlPlaneSetting
from shared.engine.errors import PermanentError


def test_real_cloud_mode_without_sandbox_setting() -> None:
    clouds = clouds_from_environ({"AZURE_SUBSCRIPTION_ID": "sub-1"})
    assert not clouds.is_sandbox and clouds.azure_subscription_id() == "sub-1"
    with pytest.raises(PermanentError, match="AZURE_SUBSCRIPTION_ID"):
        clouds_from_environ({}).azure_subscription_id()


def test_bad_sandbox_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="endpoints.json"):
        clouds_from_environ({"TWIN_SANDBOX_DIR": str(tmp_path)})
    (tmp_path / "endpoints.json").write_text("[]")
    with pytest.raises(PermanentError, match="not a JSON object"):
        clouds_from_environ({"TWIN_SANDBOX_DIR": str(tmp_path)})


@pytest.mark.slow
def test_arm_client_reaches_the_sandbox(tmp_path: Path) -> None:
    from azure.mgmt.resource.resources import ResourceManagementClient

    from sandbox.server import Sandbox

    with Sandbox(tmp_path / "sb", with_blob=False, with_aws=False) as sandbox:
        assert json.loads((tmp_path / "sb" / "endpoints.json").read_text()) == sandbox.endpoints
        clouds = clouds_from_environ({"TWIN_SANDBOX_DIR": str(tmp_path / "sb")})
        client = clouds.azure_mgmt_client(ResourceManagementClient)
        client.resource_groups.create_or_update("rg-seam", {"location": "westeurope"})
        assert "rg-seam" in [g.name for g in client.resource_groups.list()]


@pytest.mark.slow
def test_twin_events_reach_a_sandbox_topic_over_https(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """azure-eventgrid drops client-level `connection_verify`; the seam passes it per send."""
    from azure.mgmt.eventgrid import EventGridManagementClient
    from azure.mgmt.eventgrid.models import Topic
    from azure.mgmt.resource.resources import ResourceManagementClient

    from activities import events
    from sandbox.server import Sandbox
    from shared.engine.types import TwinEvent

    with Sandbox(tmp_path / "sb", with_blob=False, with_aws=False):
        clouds = clouds_from_environ({"TWIN_SANDBOX_DIR": str(tmp_path / "sb")})
        clouds.azure_mgmt_client(ResourceManagementClient).resource_groups.create_or_update(
            "rg-events", {"location": "westeurope"}
        )
        grid = clouds.azure_mgmt_client(EventGridManagementClient)
        topic = grid.topics.begin_create_or_update(
            "rg-events", "twin-events", Topic(location="westeurope", input_schema="CloudEventSchemaV1_0"),
            polling_interval=0,
        ).result()
        key = grid.topics.list_shared_access_keys("rg-events", "twin-events").key1
        monkeypatch.setenv("TWIN_SANDBOX_DIR", str(tmp_path / "sb"))
        monkeypatch.setenv(ControlPlaneSetting.EVENTS_ENDPOINT, topic.endpoint)
        monkeypatch.setenv(ControlPlaneSetting.EVENTS_KEY, key)
        sent = events.publish([TwinEvent(type="twin.deployment.completed", twin="t1", id="e-1", data={"ok": True})])
        assert sent == 1
