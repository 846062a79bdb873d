"""Fixtures for the GCP provider tests: one sandbox (its Google Cloud side only) for the session,
the providers pointed at it through the credentials seam (`TWIN_SANDBOX_DIR`); see `gcp_kit`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from gcp_kit import SandboxHandle, Walker, example_spec, plan_for, unique_twin

from activities.clouds import SANDBOX_DIR_SETTING
from activities.registry import PROVIDER_MODULES_SETTING
from sandbox.server import Sandbox


@pytest.fixture(scope="session")
def gcp_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    sb = Sandbox(tmp_path_factory.mktemp("gcp-sandbox"), profile="instant", seed=0, with_blob=False, with_aws=False,
                 with_function_apps=False)
    sb.start()
    try:
        yield SandboxHandle(sb)
    finally:
        sb.stop()


@pytest.fixture
def sandbox(gcp_sandbox: SandboxHandle) -> Iterator[SandboxHandle]:
    """The session sandbox, back on the instant profile after each test."""
    try:
        yield gcp_sandbox
    finally:
        gcp_sandbox.profile("instant")


@pytest.fixture
def walker(sandbox: SandboxHandle) -> Callable[..., Walker]:
    def make(example: str = "gcp-to-azure", twin: str | None = None, **overrides: Any) -> Walker:
        return Walker(plan_for(example_spec(example, twin or unique_twin(), **overrides)))

    return make


@pytest.fixture(autouse=True)
def provider_settings(gcp_sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    """The app settings the providers read, for each test of this folder only."""
    monkeypatch.setenv(SANDBOX_DIR_SETTING, str(gcp_sandbox.sb.state_dir))
    monkeypatch.setenv(PROVIDER_MODULES_SETTING, "activities.providers.control,activities.providers.gcp")
