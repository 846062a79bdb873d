"""The credentials seam against the sandbox: real SDK clients, sandbox endpoints and CA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from activities.clouds import clouds_from_environ
from activities.errors import PermanentError


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
